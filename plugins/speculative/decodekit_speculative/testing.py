"""Toy drafters over a Markov chain, for lossless tests of verifiers and drafter plumbing.

They draft from a *different* :class:`decodekit.testing.MarkovModel` than the target, so
acceptance is partial and every branch of the verifiers is exercised, and they report
their proposals exactly:

- :class:`MarkovDrafter` samples ``branches`` children of the root (i.i.d. or without
  replacement) and continues each with a sampled chain: a tree, or a chain for one
  branch. Proposals are its warped distributions.
- :class:`ArgmaxMarkovDrafter` is deterministic: the root's ``branches`` most likely
  tokens, each continued by argmax.
- :class:`MarkovModelDrafter` is the model drafter (:class:`ModelDrafter`) over a
  Markov chain: it drafts through its own sub-state, with the loop's step function.

Both follow the protocol's row-independence rules: one kernel seed per row and step,
counter-based uniforms per (branch, depth), the branch count fixed at construction, so
the first ``k`` levels of a deeper draft are the draft of depth ``k``
(``prefix_consistent``).

Register them in a test with :class:`ToyDrafters`::

    with registered_plugin(ToyDrafters()):
        engine.generate([0], strategy="speculative", drafter="markov", ...)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import decodekit_kernels as kernels
import torch
from pydantic import Field

from decodekit import BuildContext, hookimpl
from decodekit.config import StrategyParams
from decodekit.contracts import DecodeView, Drafter, DraftTree
from decodekit.sampling import Warper, inverse_cdf
from decodekit.testing import MarkovModel
from decodekit_speculative.drafters import ModelDrafter

__all__ = [
    "ArgmaxMarkovDrafter",
    "FailingDrafter",
    "MarkovDrafter",
    "MarkovModelDrafter",
    "ToyDrafters",
]


class MarkovOptions(StrategyParams):
    """Options of the toy drafters."""

    seed: int = Field(1, description="Seed of the draft Markov chain.")
    spread: float = Field(1.5, gt=0.0, description="Logit spread of the draft chain.")
    branches: int = Field(1, ge=1, description="Children of the root.")
    replacement: bool = Field(True, description="Root children i.i.d. (else without replacement).")


#: Counter stride between branches: a node's noise depends on (branch, depth) only.
_BRANCH_STRIDE = 1 << 16


class _MarkovBase(Drafter):
    Options = MarkovOptions
    prefix_consistent = True

    def __init__(
        self,
        options: MarkovOptions,
        *,
        context: BuildContext,
        draft_length: int,
        max_nodes: int | None,
        warper: Warper,
    ) -> None:
        vocab = context.model.vocab_size
        self.chain = MarkovModel.random(vocab, seed=options.seed, spread=options.spread)
        self.options = options
        self.draft_length = draft_length
        self.max_nodes = max_nodes
        self.warper = warper
        self.calls = 0
        self._q_table: torch.Tensor | None = None
        # fixed here, not per step: an adaptive draft_length must not change the branching
        self.branches = self.branch_count(options, draft_length=draft_length,
                                          max_nodes=max_nodes)

    @staticmethod
    def branch_count(options: MarkovOptions, *, draft_length: int, max_nodes: int | None) -> int:
        """Children of the root: ``branches``, within the node budget."""
        branches = options.branches
        if max_nodes is not None:
            branches = max(1, min(branches, max_nodes // max(draft_length, 1)))
        return branches

    @classmethod
    def drafts_trees(
        cls, options: MarkovOptions, *, draft_length: int, max_nodes: int | None
    ) -> bool:
        """Trees when the root has more than one child."""
        return cls.branch_count(options, draft_length=draft_length, max_nodes=max_nodes) > 1

    def _branches(self) -> int:
        return self.branches

    def _table(self) -> torch.Tensor:
        """The drafter's warped distribution after every token: float32 ``[V, V]``."""
        if self._q_table is None:
            self._q_table = self.warper.probs(self.chain.log_probs)
        return self._q_table


class MarkovDrafter(_MarkovBase):
    """Samples a tree (or chain) from a toy draft chain; reports exact proposals."""

    name = "markov"
    deterministic = False

    def draft(self, view: DecodeView) -> DraftTree | None:
        """``branches`` sampled chains of ``draft_length`` tokens from the root."""
        self.calls += 1
        table = self._table()
        branches, length = self._branches(), self.draft_length
        rows, vocab = len(view.sequences), self.chain.vocab_size
        nodes = branches * length
        seeds = kernels.seeds_from_generators(view.generators).unsqueeze(1)
        counters = torch.tensor([b * _BRANCH_STRIDE + d for b in range(branches)
                                 for d in range(length)], dtype=torch.long).unsqueeze(0)
        uniforms = kernels.uniforms(seeds, counters, torch.zeros_like(counters))
        last = torch.tensor([sequence[-1] for sequence in view.sequences])
        tokens = torch.full((rows, nodes), -1, dtype=torch.long)
        parents = torch.full((rows, nodes), -1, dtype=torch.long)
        proposals = torch.zeros((rows, nodes, vocab))
        used = torch.zeros((rows, vocab), dtype=torch.bool)
        for b in range(branches):
            q = table[last]
            if not self.options.replacement:  # the root's distribution without earlier siblings
                q = torch.where(used, 0.0, q)
                mass = q.sum(-1, keepdim=True)
                if not bool((mass > 0).all()):
                    break
                q = q / mass
            for d in range(length):
                c = b * length + d
                token = inverse_cdf(q, uniforms[:, c])
                tokens[:, c], proposals[:, c] = token, q
                parents[:, c] = -1 if d == 0 else c - 1
                if d == 0:
                    used[torch.arange(rows), token] = True
                q = table[token]
        return DraftTree(tokens=tokens, parents=parents, proposals=proposals)


class ArgmaxMarkovDrafter(_MarkovBase):
    """Deterministic: the root's ``branches`` most likely draft tokens, then argmax chains."""

    name = "markov_argmax"
    deterministic = True

    def draft(self, view: DecodeView) -> DraftTree | None:
        """``branches`` argmax chains of ``draft_length`` tokens."""
        self.calls += 1
        branches, length = self._branches(), self.draft_length
        rows = len(view.sequences)
        log_probs = self.chain.log_probs
        last = torch.tensor([sequence[-1] for sequence in view.sequences])
        top = log_probs[last].argsort(-1, descending=True)[:, :branches]
        tokens = torch.full((rows, branches * length), -1, dtype=torch.long)
        parents = torch.full_like(tokens, -1)
        for b in range(top.shape[1]):
            token = top[:, b]
            for d in range(length):
                c = b * length + d
                tokens[:, c] = token
                parents[:, c] = -1 if d == 0 else c - 1
                token = log_probs[token].argmax(-1)
        return DraftTree(tokens=tokens, parents=parents)


class FailingOptions(StrategyParams):
    """Options of :class:`FailingDrafter`."""

    fail_at_step: int = Field(2, ge=0, description="Raise at this step.")


class FailingDrafter(Drafter):
    """Drafts like ``markov_argmax`` with one branch, and raises at ``fail_at_step``."""

    name = "failing"
    deterministic = True
    Options = FailingOptions

    def __init__(self, options: FailingOptions, *, context: BuildContext, draft_length: int,
                 max_nodes: int | None, warper: Warper) -> None:
        self.options = options
        self.draft_length = draft_length

    def draft(self, view: DecodeView) -> DraftTree | None:
        """Repeat the last token ``draft_length`` times, or raise."""
        if view.step == self.options.fail_at_step:
            raise RuntimeError(f"failing drafter: deliberate error at step {view.step}")
        last = torch.tensor([s[-1] for s in view.sequences])
        return DraftTree.chain(last.unsqueeze(1).repeat(1, self.draft_length))


class MarkovModelDrafter(ModelDrafter):
    """A :class:`ModelDrafter` over a random Markov chain: a model drafter on toy models.

    It drafts through its own :class:`~decodekit.substate.SubState` (the loop's step
    function over the draft chain), so the lossless tests cover the model drafters'
    sync, sampling and proposals exactly.
    """

    name = "markov_model"
    Options = MarkovOptions

    def __init__(self, options: MarkovOptions, *, context: BuildContext, draft_length: int,
                 max_nodes: int | None, warper: Warper) -> None:
        chain = MarkovModel.random(context.model.vocab_size, seed=options.seed,
                                   spread=options.spread)
        super().__init__(chain, draft_length=draft_length, warper=warper)


class ToyDrafters:
    """A plugin object registering the toy drafters (``markov``, ``markov_argmax``, ``failing``)."""

    @hookimpl
    def register_drafters(self, register: Callable[[Any], None]) -> None:
        """Register the toy drafters."""
        register(MarkovDrafter)
        register(ArgmaxMarkovDrafter)
        register(MarkovModelDrafter)
        register(FailingDrafter)
