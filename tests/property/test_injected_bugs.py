"""Injected bugs: each must make the lossless or greedy-equivalence check guarding it fail.

Every case runs one check twice: on the code as it is (it must pass) and with one bug
injected by ``monkeypatch`` where the caller looks the function up (it must fail):

1. **Sibling attention** (``decodekit.tree._tree_ancestors``, which ``build_step`` calls):
   every draft node also attends to its earlier siblings.
2. **Position off by one** (``decodekit.loop.build_step``, as the loop calls it): draft
   nodes sit one position further than their depth says.
3. **Rejected node left valid** (``decodekit.loop.commit``): the cache commit keeps
   every draft node, rejected ones included.
4. **Penalties without the draft** (``decodekit.builtin.processors.node_paths``, which
   ``PenaltiesProcessor`` calls): a node's history is the row's sequence only, without
   the node's draft ancestors.
5. **Sampling from p after a rejection** (``decodekit_kernels.verify_chain.vectorized
   .verify_chain``, the path the chain verifier's kernel takes for CPU tensors): the
   correction token is drawn from the target ``p`` instead of ``norm(max(0, p - q))``.

The target is the default :class:`~decodekit.testing.AttentionModel` (its logits depend on
positions and on every attended token); on a :class:`~decodekit.testing.MarkovModel`,
bugs 1 to 3 change nothing, so no check could see them.

Why a failure is certain, not likely:

- **Greedy checks** (:func:`~decodekit.testing.assert_greedy_equivalent`: argmax
  verification, a deterministic drafter, fixed prompts) involve no randomness at all: the
  outcome is a property of the code. With each bug the drafted run's tokens differ from
  plain greedy's on the given prompts, so the check fails on every run.
- **Chi-square checks** (:func:`~decodekit.testing.assert_lossless`: 2,000 outputs of
  3 tokens, chi-square at alpha = 1e-4) use fixed seeds, so their outcome is fixed too:
  with each bug the p-value is below 1e-30. With fresh seeds they would still fail
  except with the probability ``miss`` noted at each case: one minus the noncentral
  chi-square power of the test (59 or 60 degrees of freedom), with the noncentrality
  ``n * sum((q - p)^2 / p)`` measured from 100,000 outputs of the buggy code (``q``)
  against the exact law (``p``) over the bins the test forms, less its sampling bias.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import pytest
import torch
from decodekit_speculative.testing import ToyDrafters

import decodekit.builtin.processors as processors
import decodekit.loop as loop
import decodekit.tree as tree
from decodekit.testing import assert_greedy_equivalent, assert_lossless, registered_plugin

#: Prompts of different lengths, so rows are left-padded and sit at different positions.
PROMPTS = ((0,), (1, 2), (3, 1, 4), (2, 2, 0, 1, 3))
SAMPLES = 2000


@pytest.fixture(scope="module", autouse=True)
def toy_drafters():
    with registered_plugin(ToyDrafters()):
        yield


# ------------------------------------------------------------------ the bugs


def sibling_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tree._tree_ancestors

    def buggy(slot_valid: torch.Tensor, width_p: int, draft: Any) -> torch.Tensor:
        allowed = real(slot_valid, width_p, draft).clone()
        if draft is not None and draft.num_nodes > 1:
            valid = draft.tokens >= 0
            siblings = draft.parents.unsqueeze(2) == draft.parents.unsqueeze(1)
            earlier = torch.ones(draft.num_nodes, draft.num_nodes, dtype=torch.bool).tril(-1)
            extra = siblings & earlier & valid.unsqueeze(1) & valid.unsqueeze(2)
            allowed[:, width_p:, width_p:] |= extra
        return allowed

    monkeypatch.setattr(tree, "_tree_ancestors", buggy)


def position_off_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    real = loop.build_step

    def buggy(*args: Any, **kwargs: Any) -> Any:
        step = real(*args, **kwargs)
        positions = step.positions.clone()
        nodes = step.slot_valid[:, step.num_pending :]
        positions[:, step.num_pending :] += nodes.long()
        return dataclasses.replace(step, positions=positions)

    monkeypatch.setattr(loop, "build_step", buggy)


def rejected_node_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    real = loop.commit

    def buggy(state: Any, step: Any, *args: Any, **kwargs: Any) -> Any:
        cache_commit = state.cache.commit

        def keep_every_node(keep: torch.Tensor) -> None:
            cache_commit(keep | step.slot_valid.to(keep.device))

        state.cache.commit = keep_every_node
        try:
            return real(state, step, *args, **kwargs)
        finally:
            del state.cache.commit

    monkeypatch.setattr(loop, "commit", buggy)


def penalties_without_draft(monkeypatch: pytest.MonkeyPatch) -> None:
    def buggy(draft: Any, rows: int) -> list[list[int]]:
        per_row = 1 + (0 if draft is None else draft.num_nodes)
        return [[] for _ in range(rows * per_row)]  # every node's history: the row's alone

    monkeypatch.setattr(processors, "node_paths", buggy)


def residual_is_p(monkeypatch: pytest.MonkeyPatch) -> None:
    vectorized = importlib.import_module("decodekit_kernels.verify_chain.vectorized")
    real = vectorized.verify_chain

    def buggy(target_probs, draft_probs, draft_tokens, uniforms, seeds, greedy):
        accepted, token = real(target_probs, draft_probs, draft_tokens, uniforms, seeds, greedy)
        if greedy:
            return accepted, token
        rows = torch.arange(target_probs.shape[0], device=target_probs.device)
        p_n = target_probs[rows, accepted].float()  # p itself, even after a rejection
        return accepted, vectorized.gumbel_max(p_n, seeds, accepted)

    monkeypatch.setattr(vectorized, "verify_chain", buggy)


# ------------------------------------------------------------------ the checks


def greedy(**params: Any) -> Callable[[], None]:
    def check() -> None:
        assert_greedy_equivalent("speculative", temperature=0.0, prompts=PROMPTS,
                                 max_new_tokens=12, **params)

    return check


def lossless(**params: Any) -> Callable[[], None]:
    def check() -> None:
        assert_lossless("speculative", samples=SAMPLES, seed=0, temperature=1.0, **params)

    return check


ARGMAX_TREE = {"drafter": "markov_argmax", "verify": "tree", "draft_length": 2,
               "drafter_options": {"branches": 3}}
ARGMAX_CHAIN = {"drafter": "markov_argmax", "verify": "tree", "draft_length": 3}
SAMPLED_CHAIN = {"drafter": "markov", "verify": "chain"}

#: (bug, check); "miss": the probability that the check would pass with fresh seeds
CASES = [
    pytest.param(sibling_attention, greedy(**ARGMAX_TREE), id="sibling-greedy"),
    # the coupled verification of one-hot drafts; miss < 1e-9 (noncentrality 208)
    pytest.param(sibling_attention, lossless(drafter="markov_argmax", verify="tree",
                                             draft_length=1, drafter_options={"branches": 4}),
                 id="sibling-sampling"),
    pytest.param(position_off_by_one, greedy(**ARGMAX_CHAIN), id="position-greedy"),
    # miss < 1e-20 (noncentrality 324)
    pytest.param(position_off_by_one, lossless(**SAMPLED_CHAIN, draft_length=3),
                 id="position-sampling"),
    pytest.param(rejected_node_kept, greedy(**ARGMAX_CHAIN), id="rejected-greedy"),
    # miss < 1e-100 (noncentrality 999)
    pytest.param(rejected_node_kept, lossless(**SAMPLED_CHAIN, draft_length=3),
                 id="rejected-sampling"),
    # as test_penalties_stay_lossless; miss < 1e-9 (noncentrality 213)
    pytest.param(penalties_without_draft,
                 lossless(**SAMPLED_CHAIN, draft_length=2, repetition_penalty=1.5,
                          presence_penalty=0.5), id="penalties-sampling"),
    # miss < 1e-40 (noncentrality 501)
    pytest.param(residual_is_p, lossless(**SAMPLED_CHAIN, draft_length=2),
                 id="residual-sampling"),
]


@pytest.mark.parametrize(("bug", "check"), CASES)
def test_the_check_passes_and_fails_with_the_bug_injected(monkeypatch, bug, check):
    check()  # the code as it is
    bug(monkeypatch)
    with pytest.raises(AssertionError):
        check()
