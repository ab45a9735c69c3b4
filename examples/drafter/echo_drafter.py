"""An example drafter plugin: propose what followed the last n-gram's previous occurrence.

The code of the drafter tutorial (docs/tutorial.md, "A drafter"); its tests are in
tests/docs/test_drafter_tutorial.py.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import Field

import decodekit
from decodekit import BuildContext, DecodeView, Drafter, DraftTree, StrategyParams, Warper


# --8<-- [start:options]
class EchoOptions(StrategyParams):
    """Options of the ``echo`` drafter (given as ``drafter_options``)."""

    n: int = Field(2, ge=1, le=8, description="Length of the n-gram looked up.")
# --8<-- [end:options]


# --8<-- [start:drafter]
class EchoDrafter(Drafter):
    """Drafts the tokens that followed the previous occurrence of the row's last n-gram.

    Deterministic: every draft is one-hot, so any verifier keeps the target's
    distribution (and exact match keeps greedy decoding's tokens).
    """

    name = "echo"
    deterministic = True
    Options = EchoOptions
    #: a longer draft begins with the shorter one (adaptive draft lengths rely on it)
    prefix_consistent = True

    def __init__(
        self,
        options: EchoOptions,
        *,
        context: BuildContext,
        draft_length: int,
        max_nodes: int | None,
        warper: Warper | None,
    ) -> None:
        self.n = options.n
        self.draft_length = draft_length

    def draft(self, view: DecodeView) -> DraftTree | None:
        """One chain per row; ``-1`` pads rows with a shorter (or no) continuation."""
        rows = [self._continuation(sequence) for sequence in view.sequences]
        if not any(rows):
            return None  # an ordinary one-token step
        tokens = torch.full((len(rows), self.draft_length), -1, dtype=torch.long)
        for r, continuation in enumerate(rows):
            tokens[r, : len(continuation)] = torch.tensor(continuation, dtype=torch.long)
        return DraftTree.chain(tokens)

    def _continuation(self, sequence: list[int]) -> list[int]:
        """What followed the most recent earlier occurrence of the last ``n`` tokens."""
        n = self.n
        if len(sequence) <= n:
            return []
        suffix = sequence[-n:]
        for start in range(len(sequence) - n - 1, -1, -1):
            if sequence[start : start + n] == suffix:
                follow = sequence[start + n : start + n + self.draft_length]
                return follow[: len(sequence) - n - start]
        return []
# --8<-- [end:drafter]


# --8<-- [start:hooks]
@decodekit.hookimpl
def register_drafters(register: Callable[[type[Drafter]], None]) -> None:
    """Register the ``echo`` drafter."""
    register(EchoDrafter)
# --8<-- [end:hooks]
