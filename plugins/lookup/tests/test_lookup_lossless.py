"""Lossless under sampling: the lookup drafters inside ``speculative`` on a toy attention model.

Both drafters are deterministic (one-hot proposals); rejection sampling must then commit
tokens that follow exactly the target distribution. The target is a 4-token
:class:`~decodekit.testing.AttentionModel`, whose logits depend on positions and on every
attended token, so tree masks, node positions and cache commits are checked too. Each
test draws n = 4000 sequences of 3 tokens (64 outcomes) with fixed seeds and runs a
chi-square goodness-of-fit test against the exact sequence distribution at significance
alpha = 1e-4 (a correct implementation fails with probability 1e-4; being derandomized
by fixed seeds it either always passes or always fails).
"""

from __future__ import annotations

import pytest

import decodekit
from decodekit import Engine
from decodekit.testing import (
    AttentionModel,
    assert_matches_distribution,
    exact_sequence_distribution,
    sample_sequences,
)

pytestmark = pytest.mark.skipif(
    "speculative" not in decodekit.get_registry().strategies,
    reason="the speculative strategy (plugins/speculative) is not installed",
)

CASES = [
    ("prompt_lookup", "chain", {}),
    ("prompt_lookup", "tree", {"num_candidates": 3, "max_ngram": 2}),
    ("token_recycling", "tree", {"top_k": 2, "max_depth": 3}),
]


@pytest.mark.parametrize(("drafter", "verify", "options"), CASES)
def test_lossless_on_an_attention_model(drafter, verify, options):
    model = AttentionModel.random(4, seed=7)
    prompt = [0, 1, 2, 3, 0, 1, 2, 3, 0]  # repeated pattern: prompt lookup always matches
    settings = {"temperature": 0.9, "top_p": 0.95}
    exact = exact_sequence_distribution(model, prompt, 3, **settings)
    counts = sample_sequences(
        model, prompt, length=3, n=4000, strategy="speculative", seed=11,
        drafter=drafter, verify=verify, drafter_options=options, draft_length=3,
        max_nodes=12, **settings,
    )
    assert_matches_distribution(counts, exact, alpha=1e-4)
    # and the drafts were really verified (not a plain one-token decode)
    rows = Engine(model).generate(
        [prompt] * 64, strategy="speculative", seed=3, max_new_tokens=3, drafter=drafter,
        verify=verify, drafter_options=options, draft_length=3, max_nodes=12, **settings,
    )
    assert sum(row.stats.accepted_draft_tokens for row in rows) > 20


# Coupling: one-hot drafts under sampling commit the tokens `sample` draws with the same
# seeds, so what a drafter proposes (or has learned: a shared or persistent table) changes
# speed, never tokens. On the tiny random Llama (real attention; repeated prompts so
# prompt lookup matches).
TINY_PROMPTS = [
    [1, 5, 6, 7, 8, 5, 6, 7, 8, 5, 6],
    [1, 40, 41, 42],
    [1, 9, 10, 11, 12, 13, 14, 9, 10, 11, 12, 13, 14, 9, 10, 11, 3],
]
TINY_SEEDS = [3, 5, 8]
# prompt lookup: colder, so that the random model repeats its prompt now and then
COUPLED = [
    ("prompt_lookup", "chain", {}, {"temperature": 0.4}),
    ("prompt_lookup", "tree", {"num_candidates": 3},
     {"temperature": 0.4, "repetition_penalty": 1.1}),
    ("token_recycling", "tree", {}, {}),
    ("token_recycling", "tree", {"top_k": 4, "max_depth": 3}, {"top_k": 20}),
]


@pytest.mark.parametrize(("drafter", "verify", "options", "warp"), COUPLED)
def test_sampling_commits_the_tokens_of_sample_whatever_the_draft(tiny, drafter, verify,
                                                                  options, warp):
    engine = Engine(tiny)
    settings = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 24, "seed": TINY_SEEDS,
                **warp}
    plain = engine.generate(TINY_PROMPTS, strategy="sample", **settings)
    spec = engine.generate(TINY_PROMPTS, strategy="speculative", drafter=drafter,
                           verify=verify, drafter_options=options, draft_length=4,
                           adaptive=drafter == "prompt_lookup", **settings)
    assert [c.token_ids for c in spec] == [c.token_ids for c in plain]
    assert sum(c.stats.accepted_draft_tokens for c in spec) > 0  # drafts were verified


def test_a_persistent_recycling_table_changes_speed_not_tokens(tiny):
    from decodekit_lookup.token_recycling import _PERSISTENT

    _PERSISTENT.pop(tiny, None)  # a cold start, whatever ran before
    engine = Engine(tiny)
    settings = {"strategy": "speculative", "drafter": "token_recycling", "temperature": 0.8,
                "max_new_tokens": 24, "seed": TINY_SEEDS,
                "drafter_options": {"persistent": True}}
    cold = engine.generate(TINY_PROMPTS, **settings)
    warm = engine.generate(TINY_PROMPTS, **settings)  # the table learned from `cold`
    assert [c.token_ids for c in warm] == [c.token_ids for c in cold]
    assert [c.stats.drafted_tokens for c in warm] != [c.stats.drafted_tokens for c in cold]
