"""Both lookup drafters under exact-match verification give exactly plain greedy tokens.

The drafters run in the real decode loop (tree attention, KV-cache commits, rows that
finish early and leave the batch) through the test strategy ``draft_greedy`` of
:mod:`decodekit_lookup.testing`; once the ``speculative`` strategy is installed the same checks run
through it too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from decodekit_lookup.testing import DraftGreedyPlugin

import decodekit
from decodekit import Engine
from decodekit.testing import registered_plugin

DRAFTERS = [
    ("prompt_lookup", {}),
    ("prompt_lookup", {"max_ngram": 2, "num_candidates": 3}),
    ("token_recycling", {}),
    ("token_recycling", {"top_k": 4, "max_depth": 3}),
]


@pytest.fixture(scope="module", autouse=True)
def draft_greedy() -> Iterator[None]:
    with registered_plugin(DraftGreedyPlugin(), name="lookup-tests"):
        yield


def has_speculative() -> bool:
    return "speculative" in decodekit.get_registry().strategies


# tiny random Llama: repetitive prompts of different lengths; eos_token_id 2 may end rows
TINY_PROMPTS = [
    [1, 5, 6, 7, 8, 5, 6, 7, 8, 5, 6],
    [1, 40, 41, 42],
    [1, 9, 10, 11, 12, 13, 14, 9, 10, 11, 12, 13, 14, 9, 10, 11, 3],
]


@pytest.fixture(scope="module")
def tiny_greedy(tiny) -> list:
    return Engine(tiny).generate(TINY_PROMPTS, strategy="greedy", max_new_tokens=48)


@pytest.mark.parametrize(("drafter", "options"), DRAFTERS)
def test_greedy_equivalent_on_tiny_llama(tiny, tiny_greedy, drafter, options):
    engine = Engine(tiny)
    plain = tiny_greedy
    drafted = engine.generate(TINY_PROMPTS, strategy="draft_greedy", drafter=drafter,
                              drafter_options=options, draft_length=6, max_nodes=24,
                              max_new_tokens=48)
    assert [c.token_ids for c in drafted] == [c.token_ids for c in plain]
    assert [c.finish_reason for c in drafted] == [c.finish_reason for c in plain]
    assert sum(c.stats.accepted_draft_tokens for c in drafted) > 0  # drafts were used
    assert sum(c.stats.forward_passes for c in drafted) < sum(
        c.stats.forward_passes for c in plain
    )


@pytest.mark.parametrize("drafter", ["prompt_lookup", "token_recycling"])
def test_greedy_equivalent_through_speculative(tiny, tiny_greedy, drafter):
    if not has_speculative():
        pytest.skip("the speculative strategy (plugins/speculative) is not installed")
    drafted = Engine(tiny).generate(TINY_PROMPTS, strategy="speculative", drafter=drafter,
                                    temperature=0.0, draft_length=6, max_new_tokens=48)
    assert [c.token_ids for c in drafted] == [c.token_ids for c in tiny_greedy]
    assert sum(c.stats.accepted_draft_tokens for c in drafted) > 0


SMOL_PROMPTS = [
    "Repeat this code exactly:\ndef add(a, b):\n    return a + b\n\ndef sub(a, b):\n"
    "    return a - b\n",
    "Write a short story about a robot who learns to paint.",
]


@pytest.mark.smollm2
def test_greedy_equivalent_on_smollm2(smollm2):
    """64 new tokens, 2 prompts: batch of 4 (each prompt twice) and batch 1, both drafters."""
    prompts = SMOL_PROMPTS + SMOL_PROMPTS[::-1]
    plain = [c.token_ids for c in smollm2.generate(prompts, strategy="greedy",
                                                   max_new_tokens=64)]
    assert plain[0] == plain[3] and plain[1] == plain[2]
    for drafter in ("prompt_lookup", "token_recycling"):
        batch = smollm2.generate(prompts, strategy="draft_greedy", drafter=drafter,
                                 max_new_tokens=64)
        assert [c.token_ids for c in batch] == plain, drafter
        assert sum(c.stats.accepted_draft_tokens for c in batch) > 0, drafter
        single = smollm2.generate([SMOL_PROMPTS[0]], strategy="draft_greedy",
                                  drafter=drafter, max_new_tokens=64)
        assert single[0].token_ids == plain[0], drafter
