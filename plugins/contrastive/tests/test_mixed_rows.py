"""Contrastive search stays contrastive for every row when other rows have pending tokens.

A constraint that forces tokens on one row gives that row pending tokens for the next
forward while the others have none. Each row must still choose among its top-k
candidates: its tokens alone and in the batch must be the same. (Before the loop kept
root logits per row, the rows without pending tokens got no draft in such a step and
committed their argmax: contrastive search silently turned into greedy for them.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from decodekit import Engine, hookimpl
from decodekit.contracts import CompiledConstraint, ConstraintFactory, DraftTree
from decodekit.testing import registered_plugin, tiny_llama

FORCED = [7, 8]


class ForceAfterMultiplesOfFive(CompiledConstraint):
    """Allows every token; after a row commits a multiple of 5 it forces ``FORCED``.

    The rule reads only the row's own tokens, so a row is forced at the same points alone
    and in a batch, while rows of one batch are forced at different steps.
    """

    def __init__(self) -> None:
        self.rows: list[list[int]] = []

    def start(self, rows: int) -> None:
        self.rows = [[] for _ in range(rows)]

    def fill_bitmask(self, bitmask: torch.Tensor, draft: DraftTree | None) -> None:
        """Everything allowed (the loop filled the mask with ones)."""

    def advance(self, row: int, tokens: Sequence[int]) -> None:
        self.rows[row].extend(int(t) for t in tokens)

    def forced_tokens(self, row: int) -> list[int]:
        history = self.rows[row]
        return list(FORCED) if history and history[-1] % 5 == 0 else []

    def is_finished(self, row: int) -> bool:
        return False

    def select_rows(self, rows: torch.Tensor) -> None:
        self.rows = [list(self.rows[i]) for i in rows.tolist()]


class ForceFactory(ConstraintFactory):
    name = "force_after_multiples_of_five"

    def compile(self, spec, tokenizer) -> CompiledConstraint:
        return ForceAfterMultiplesOfFive()


class Plugin:
    @staticmethod
    @hookimpl
    def register_constraints(register: Callable[[type[ConstraintFactory]], None]) -> None:
        register(ForceFactory)


PROMPTS = [[11, 12, 13, 14, 15, 16], [21, 22], [40, 41, 42], [50, 51, 52, 53, 54]]


def test_rows_beside_a_forced_row_still_choose_by_contrastive_score():
    engine = Engine(tiny_llama())
    settings = {"strategy": "contrastive", "top_k": 4, "alpha": 0.8, "max_new_tokens": 24,
                "constraint": {"type": ForceFactory.name}}
    with registered_plugin(Plugin()):
        batch = engine.generate(PROMPTS, **settings)
        alone = [engine.generate(prompt, **settings) for prompt in PROMPTS]
    forced = [
        [i for i, t in enumerate(c.token_ids[:-2]) if t % 5 == 0] for c in alone
    ]  # where each row was forced
    assert all(c.token_ids[i + 1 : i + 3] == FORCED for c, at in zip(alone, forced, strict=True)
               for i in at)
    assert all(forced) and len({tuple(at) for at in forced}) == len(forced)  # different steps
    assert [c.token_ids for c in batch] == [c.token_ids for c in alone]
