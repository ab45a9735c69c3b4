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
from decodekit.tree import node_histories


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

    Built like every registered component (``processors = [{name = "penalties",
    options = {repetition_penalty = 1.2}}]`` in a config). With every penalty off it
    returns the logits as they are, without building any history.

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
        histories, prompt_lengths = node_histories(view, draft)
        ids, mask = pad_histories(histories)
        out = kernels.penalties(
            logits.reshape(rows * nodes, vocab),
            ids.to(logits.device),
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            history_mask=mask.to(logits.device),
            prompt_lengths=torch.tensor(prompt_lengths, device=logits.device),
        )
        return out.view(rows, nodes, vocab)


@hookimpl
def register_samplers(register: Callable[[type[LogitsProcessor]], None]) -> None:
    """Register the ``penalties`` processor."""
    register(PenaltiesProcessor)


__all__ = ["PenaltiesProcessor", "pad_histories"]
