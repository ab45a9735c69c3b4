"""The speculative strategy is lossless on a toy attention model, for chain and tree drafts.

Target: a random :class:`~decodekit.testing.AttentionModel` over 5 tokens, whose logits
depend on positions and on every token a slot attends to, so the tree attention mask,
the node positions and the KV-cache commit of accepted paths are all part of what is
checked; drafters draw from a random Markov chain (``decodekit_speculative.testing``):
sampled chains, sampled trees (i.i.d. root children, or without replacement) and
deterministic argmax chains and trees. The empirical distribution of 3-token outputs over 3000 independent rows (one
seed per row, derived from ``seed``) is compared with the exact target distribution after the same warpers
(``exact_sequence_distribution``) by a chi-square test at alpha = 1e-4; outputs of
probability zero must never appear. Hypothesis (profile "ci": derandomized, so the test
always passes or always fails) draws chains, draft lengths and temperature/top-k/top-p.
"""

from __future__ import annotations

import pytest
from decodekit_speculative.testing import ToyDrafters
from hypothesis import given, settings
from hypothesis import strategies as st

from decodekit.testing import (
    AttentionModel,
    MarkovModel,
    assert_matches_distribution,
    exact_sequence_distribution,
    registered_plugin,
    sample_sequences,
)

SAMPLES = 3000
ALPHA = 1e-4

warpers = st.fixed_dictionaries(
    {
        "temperature": st.sampled_from([0.7, 1.0, 1.3]),
        "top_k": st.sampled_from([0, 3]),
        "top_p": st.sampled_from([1.0, 0.85]),
    }
)


@pytest.fixture(scope="module", autouse=True)
def toy_drafters():
    with registered_plugin(ToyDrafters()):
        yield


def check(model_seed, draft_seed, draft_length, settings_, **params):
    options = {"seed": draft_seed, **params.pop("drafter_options", {})}
    model = AttentionModel.random(5, seed=model_seed)
    exact = exact_sequence_distribution(model, [0], 3, **settings_)
    counts = sample_sequences(
        model, [0], length=3, n=SAMPLES, strategy="speculative", seed=model_seed,
        draft_length=draft_length, drafter_options=options, **settings_, **params,
    )
    assert_matches_distribution(counts, exact, alpha=ALPHA)


@settings(max_examples=4)
@given(
    model_seed=st.integers(0, 1000),
    draft_seed=st.integers(1001, 2000),
    draft_length=st.integers(1, 3),
    warp=warpers,
    drafter=st.sampled_from(["markov", "markov_argmax"]),
    adaptive=st.booleans(),
)
def test_chain_verification_is_lossless(model_seed, draft_seed, draft_length, warp, drafter,
                                        adaptive):
    check(model_seed, draft_seed, draft_length, warp, drafter=drafter, verify="chain",
          adaptive=adaptive)


@settings(max_examples=4)
@given(
    model_seed=st.integers(0, 1000),
    draft_seed=st.integers(1001, 2000),
    draft_length=st.integers(1, 2),
    warp=warpers,
    drafter=st.sampled_from(["markov", "markov_argmax"]),
    branches=st.integers(2, 3),
    replacement=st.booleans(),
)
def test_tree_verification_is_lossless(model_seed, draft_seed, draft_length, warp, drafter,
                                       branches, replacement):
    options = {"branches": branches}
    if drafter == "markov":
        options["replacement"] = replacement
    check(model_seed, draft_seed, draft_length, warp, drafter=drafter, verify="tree",
          drafter_options=options)


def test_penalties_stay_lossless():
    """Penalties depend on the history: target logits at draft nodes must see the draft."""
    warp = {"temperature": 1.0, "repetition_penalty": 1.5, "presence_penalty": 0.5}
    check(3, 1003, 2, warp, drafter="markov", verify="chain")


def test_greedy_settings_give_greedy_tokens():
    """Exact match: tokens equal plain greedy's on prompts of different lengths (padding)."""
    from decodekit import Engine

    engine = Engine(AttentionModel.random(5, seed=4))
    prompts = [[0], [1, 2], [3], [4, 4, 1]]
    plain = engine.generate(prompts, strategy="greedy", max_new_tokens=12)
    configs = [("markov", "chain", {"seed": 4}), ("markov", "tree", {"branches": 2}),
               ("markov_argmax", "tree", {"branches": 3})]
    for drafter, verify, options in configs:
        spec = engine.generate(prompts, strategy="speculative", drafter=drafter, verify=verify,
                               temperature=0.0, draft_length=3, drafter_options=options,
                               max_new_tokens=12)
        assert [c.token_ids for c in spec] == [c.token_ids for c in plain]
        assert sum(c.stats.accepted_draft_tokens for c in spec) > 0  # drafts were verified


def test_a_draft_chain_equal_to_the_target_is_always_accepted():
    """Drafter plumbing: at temperature 0 the ``markov`` drafter seeded like a Markov target
    drafts the target's argmax, so every draft token is accepted (3 per step, 9 in all)."""
    from decodekit import Engine

    engine = Engine(MarkovModel.random(5, seed=4))
    prompts = [[0], [1, 2], [3], [4, 4, 1]]
    plain = engine.generate(prompts, strategy="greedy", max_new_tokens=12)
    spec = engine.generate(prompts, strategy="speculative", drafter="markov", verify="chain",
                           temperature=0.0, draft_length=3, drafter_options={"seed": 4},
                           max_new_tokens=12)
    assert [c.token_ids for c in spec] == [c.token_ids for c in plain]
    assert all(c.stats.accepted_draft_tokens == 9 for c in spec)


@pytest.mark.parametrize(
    ("model_seed", "draft_length", "warp"),
    [(11, 3, {"temperature": 1.0}), (12, 2, {"temperature": 0.7, "top_k": 3, "top_p": 0.85})],
)
def test_a_model_drafter_on_its_own_substate_is_lossless(model_seed, draft_length, warp):
    """The model drafters' machinery (sync to the target's rows, the loop's step over the
    draft model, kernel-layer sampling, reported proposals) on a toy draft chain."""
    check(model_seed, 1500 + model_seed, draft_length, warp, drafter="markov_model",
          verify="chain")

