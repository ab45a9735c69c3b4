"""Built-in logits processors: repetition, presence and frequency penalties."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import decodekit_kernels as kernels
import torch
from pydantic import Field

from decodekit.config import SamplingParams, StrategyParams
from decodekit.contracts import DecodeView, DraftTree, LogitsProcessor
from decodekit.hookspecs import hookimpl
from decodekit.tree import node_paths


def pad_histories(histories: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad histories: LongTensor ``[n, T]`` and its validity mask ``[n, T]``."""
    width = max((len(h) for h in histories), default=0)
    ids = torch.zeros((len(histories), max(width, 1)), dtype=torch.long)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, history in enumerate(histories):
        if history:
            ids[i, : len(history)] = torch.tensor(history, dtype=torch.long)
            mask[i, : len(history)] = True
    return ids, mask


class PenaltiesProcessor(LogitsProcessor):
    """Repetition (CTRL), presence and frequency penalties, exact on draft trees.

    The repetition penalty counts prompt and generated tokens; presence and frequency
    penalties count generated tokens only (vLLM's convention). At a draft node the
    history includes the node's draft ancestors, so speculative strategies stay lossless.

    Each row's token counts live in two ``[rows, V]`` tensors, brought up to date with the
    tokens the row gained since the last step, so a step's cost does not grow with the
    rows' length; a draft node adds only its path from the root. The counts follow the
    loop's rows through :meth:`select_rows` and start over at a call's first step. Like
    every component that keeps per-row state, an instance serves one generation at a
    time: two streams of one request must not run interleaved (it raises when it sees
    rows it did not count).

    Built like every registered component (``processors = [{name = "penalties",
    options = {repetition_penalty = 1.2}}]`` in a config). With every penalty off it
    returns the logits as they are, without counting anything.

    Parameters
    ----------
    options : PenaltiesProcessor.Options, optional
        The penalties; None: all off.
    context : BuildContext, optional
        Unused (the component contract passes it).
    """

    class Options(StrategyParams):
        """Options of the ``penalties`` processor."""

        repetition_penalty: float = Field(
            1.0, gt=0.0, description="CTRL repetition penalty; 1 is off."
        )
        presence_penalty: float = Field(0.0, description="Presence penalty; 0 is off.")
        frequency_penalty: float = Field(0.0, description="Frequency penalty; 0 is off.")

    name = "penalties"

    def __init__(self, options: Options | None = None, *, context: Any = None) -> None:
        options = options if options is not None else self.Options()
        self.repetition_penalty = options.repetition_penalty
        self.presence_penalty = options.presence_penalty
        self.frequency_penalty = options.frequency_penalty
        self._counts: TokenCounts | None = None

    @classmethod
    def from_params(cls, params: SamplingParams) -> PenaltiesProcessor:
        """The penalties of a strategy's sampling settings."""
        return cls(cls.Options(
            repetition_penalty=params.repetition_penalty,
            presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
        ))

    @property
    def active(self) -> bool:
        """Whether any penalty is on."""
        return (self.repetition_penalty != 1.0 or self.presence_penalty != 0.0
                or self.frequency_penalty != 0.0)

    def __call__(
        self, logits: torch.Tensor, view: DecodeView, draft: DraftTree | None
    ) -> torch.Tensor:
        """Penalize ``logits [rows, 1 + N, V]`` by each node's history."""
        if not self.active:
            return logits
        rows, nodes, vocab = logits.shape
        if view.step == 0 or self._counts is None:  # a new call starts from its prompts
            self._counts = TokenCounts(rows, vocab, logits.device)
        self._counts.update(view)
        paths, mask = pad_histories(node_paths(draft, rows))
        count_rows = None
        if nodes > 1:
            count_rows = torch.arange(rows, device=logits.device).repeat_interleave(nodes)
        out = kernels.penalties(
            logits.reshape(rows * nodes, vocab),
            paths.to(logits.device),
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            history_mask=mask.to(logits.device),
            seen_counts=self._counts.seen,
            generated_counts=self._counts.generated,
            count_rows=count_rows,
        )
        return out.view(rows, nodes, vocab)

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep each row's counts with the row: new row ``r`` is old row ``rows[r]``."""
        if self._counts is not None:
            self._counts.select_rows(rows)


class TokenCounts:
    """Per row: occurrences of each token in its sequence, and in its generated part.

    Parameters
    ----------
    rows, vocab : int
    device : torch.device

    Attributes
    ----------
    seen : IntTensor ``[rows, V]``
        Occurrences in the prompt and the generated tokens.
    generated : IntTensor ``[rows, V]``
        Occurrences among the generated tokens.
    """

    def __init__(self, rows: int, vocab: int, device: torch.device) -> None:
        self.seen = torch.zeros((rows, vocab), dtype=torch.int32, device=device)
        self.generated = torch.zeros_like(self.seen)
        self.counted = [0] * rows  # tokens of each row's sequence counted so far
        self.row_ids: list[int] | None = None

    def update(self, view: DecodeView) -> None:
        """Count the tokens each row gained since the last update (one scatter)."""
        if self.row_ids is not None and view.row_ids != self.row_ids:
            raise RuntimeError(
                f"penalties: the rows are {view.row_ids}, the counts follow {self.row_ids}; "
                "a component reordered rows without the loop's select_rows"
            )
        vocab = self.seen.shape[1]
        rows, tokens, generated = [], [], []
        for r, sequence in enumerate(view.sequences):
            start, prompt = self.counted[r], view.prompt_lengths[r]
            if len(sequence) < start:
                raise RuntimeError(
                    f"penalties: row {r} has {len(sequence)} tokens, fewer than the {start} "
                    "counted; one processor is serving two generations at once"
                )
            new = sequence[start:]
            if new and not (min(new) >= 0 and max(new) < vocab):
                bad = min(new) if min(new) < 0 else max(new)
                raise ValueError(
                    f"penalties: row {r} has token {bad}, outside the logits' 0..{vocab - 1}"
                )
            rows.extend([r] * len(new))
            tokens.extend(new)
            generated.extend(start + i >= prompt for i in range(len(new)))
            self.counted[r] = len(sequence)
        self.row_ids = list(view.row_ids)
        if not tokens:
            return
        device = self.seen.device
        index = (torch.tensor(rows, device=device), torch.tensor(tokens, device=device))
        flags = torch.tensor(generated, dtype=torch.int32, device=device)
        self.seen.index_put_(index, torch.ones_like(flags), accumulate=True)
        self.generated.index_put_(index, flags, accumulate=True)

    def select_rows(self, rows: torch.Tensor) -> None:
        """New row ``r`` is old row ``rows[r]``."""
        index = rows.to(self.seen.device)
        self.seen = self.seen.index_select(0, index)
        self.generated = self.generated.index_select(0, index)
        order = rows.tolist()
        self.counted = [self.counted[i] for i in order]
        if self.row_ids is not None:
            self.row_ids = [self.row_ids[i] for i in order]


@hookimpl
def register_samplers(register: Callable[[type[LogitsProcessor]], None]) -> None:
    """Register the ``penalties`` processor."""
    register(PenaltiesProcessor)


__all__ = ["PenaltiesProcessor", "TokenCounts", "pad_histories"]
