"""A decode state of a drafter's own model, driven with the loop's step function.

A drafter that runs a model (a small draft model, the target's first layers) does not
write a second decode loop: it keeps a :class:`SubState`, brings it in line with the
target's rows at every target step (:meth:`SubState.sync`) and advances it with
:func:`decodekit.loop.decode_step`, the same draft, forward, select and commit as the
loop's, through a pipeline of its own (usually one verifier that samples with the
kernel layer). The sub-state's rows never stop: they end when the target's rows do.

>>> sub = SubState(draft_model, DraftSampler(warper), rows=2)
>>> sub.sync(view.sequences)          # roll back to what the target committed
>>> tokens = sub.step()               # one draft token per row
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from decodekit.contracts import LanguageModel, Verifier
from decodekit.loop import DecodeState, decode_step, reorder_rows, start
from decodekit.strategy import Pipeline

__all__ = ["SubState"]

#: A sub-state row's token budget: it never ends by length (a draft near the end of the
#: target's budget is cut by the target, which accepts no token past its own limit).
_UNLIMITED = 1 << 62


class SubState:
    """A drafter's decode state over its own model.

    Parameters
    ----------
    model : LanguageModel
        The model the drafter runs.
    verifier : Verifier
        Chooses each sub-step's token per row (e.g. a sampler that records the draft
        distribution it sampled from).
    rows : int
        Rows of the target batch.

    Attributes
    ----------
    forwards : int
        Forwards of ``model`` so far.
    """

    def __init__(self, model: LanguageModel, verifier: Verifier, rows: int) -> None:
        self.model = model
        self.pipeline = Pipeline(verifier=verifier)
        # rows never stop here: no stop check runs, and sync lifts their budgets
        self.state: DecodeState = start(
            model, [[] for _ in range(rows)], max_new_tokens=model.context_length,
            seeds=[0] * rows,
        )

    @property
    def rows(self) -> int:
        """Number of rows."""
        return len(self.state.rows)

    @property
    def forwards(self) -> int:
        """Forwards of the model so far."""
        return self.state.forward_passes

    def sync(self, sequences: Sequence[Sequence[int]]) -> None:
        """Bring every row in line with the target's committed tokens.

        Each row keeps the cache of its longest common prefix with ``sequences[r]`` (at
        least one token is fed again, to get the logits after the last one) and the rest
        becomes its pending tokens.
        """
        state = self.state
        if len(sequences) != self.rows:
            raise ValueError(f"sync: {len(sequences)} sequences for {self.rows} rows")
        counts = []
        for r, target in enumerate(sequences):
            mine = state.sequences[r]
            cached = len(mine) - len(state.pending[r])
            common = _common_prefix(mine[:cached], target)
            if common == len(target):
                common -= 1  # the last token is fed again for the logits after it
            counts.append(cached - common)
            state.sequences[r] = list(target)
            state.pending[r] = list(target[common:])
            state.budgets[r] = _UNLIMITED  # the target's budget bounds what it accepts
            state.rows[r].token_ids.clear()  # the target's rows hold the output
        if any(counts):
            state.cache.rollback(torch.tensor(counts))

    def step(self) -> list[list[int]]:
        """One sub-step for every row: the tokens each row gained (one per row)."""
        _, appended = decode_step(self.state, self.pipeline)
        self.state.step += 1
        return appended

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep, fork or reorder rows like the target: new row ``r`` is old ``rows[r]``."""
        reorder_rows(self.state, self.pipeline, None, rows)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
