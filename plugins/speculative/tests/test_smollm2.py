"""Greedy equivalence of every drafter on the real SmolLM2-135M-Instruct (float32).

Under greedy settings the speculative strategy verifies by exact match, so its tokens
must equal plain greedy decoding token for token, whatever the drafter: checked for 64
new tokens, on one prompt (batch 1) and on four prompts in one batch (rows accept
different numbers of draft tokens, so the KV cache holds holes).
"""

from __future__ import annotations

import pytest

from decodekit import Engine, get_registry
from decodekit.errors import ConfigError

pytestmark = pytest.mark.smollm2

PROMPTS = [
    "Repeat this code exactly:\ndef add(a, b):\n    return a + b\n",
    "Name three colours.",
    "What is 2 + 2?",
    "Write one sentence about the sea.",
]
TOKENS = 64

# (drafter options, draft length): kept cheap, since a forward of SmolLM2 is the cost unit
DRAFTERS = {
    "draft_model": ({"dtype": "float32"}, 4),
    "layer_skip": ({"layers": 4, "confidence_threshold": 0.0}, 2),
    "prompt_lookup": ({}, 4),
    "token_recycling": ({}, 4),
}


@pytest.fixture(scope="module")
def plain(smollm2):
    return [c.token_ids for c in smollm2.generate(PROMPTS, strategy="greedy",
                                                  max_new_tokens=TOKENS)]


@pytest.mark.parametrize("drafter", list(DRAFTERS))
def test_every_drafter_is_greedy_equivalent(smollm2, plain, drafter):
    if drafter not in get_registry().drafters:
        pytest.skip(f"drafter {drafter!r} is not installed")
    options, length = DRAFTERS[drafter]
    settings = dict(strategy="speculative", drafter=drafter, temperature=0.0,
                    draft_length=length, drafter_options=options, max_new_tokens=TOKENS)
    batch = smollm2.generate(PROMPTS, **settings)
    assert [c.token_ids for c in batch] == plain
    single = smollm2.generate(PROMPTS[0], **settings)
    assert single.token_ids == plain[0]
    assert sum(c.stats.drafted_tokens for c in batch) > 0


def test_draft_model_with_another_vocabulary_is_refused(tiny):
    with pytest.raises(ConfigError, match=r"drafter_options.model: the draft model's vocabulary "
                                          r"has 49152 tokens but the target's has 97"):
        Engine(tiny).generate([1, 2, 3], strategy="speculative", drafter="draft_model",
                              max_new_tokens=4)
