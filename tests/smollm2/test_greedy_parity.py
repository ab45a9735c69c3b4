"""On SmolLM2, ``greedy`` equals transformers' greedy ``generate``; ``sample`` is reproducible."""

import pytest
import torch

PROMPTS = [
    "Write a short poem about the sea.",
    "What is the capital of France? Answer in one sentence.",
    "List three uses of a paperclip.",
    "Explain recursion to a ten-year-old.",
]
NEW_TOKENS = 64


def hf_greedy(engine, prompts):
    model = engine.model
    ids = [model.encode(p) for p in prompts]
    width = max(map(len, ids))
    input_ids = torch.tensor([[0] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    out = model.hf.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=NEW_TOKENS,
                            do_sample=False, pad_token_id=2)
    rows = []
    for row in out[:, width:].tolist():
        eos = next((i for i, t in enumerate(row) if t in model.eos_token_ids), None)
        rows.append(row if eos is None else row[: eos + 1])
    return rows


@pytest.mark.smollm2
def test_greedy_equals_transformers_batch_1(smollm2):
    for prompt in PROMPTS:
        ours = smollm2.generate(prompt, strategy="greedy", max_new_tokens=NEW_TOKENS)
        assert ours.token_ids == hf_greedy(smollm2, [prompt])[0]


@pytest.mark.smollm2
def test_greedy_equals_transformers_batch_4(smollm2):
    ours = smollm2.generate(PROMPTS, strategy="greedy", max_new_tokens=NEW_TOKENS)
    theirs = hf_greedy(smollm2, PROMPTS)
    assert [c.token_ids for c in ours] == theirs
    assert any(len(t) == NEW_TOKENS for t in theirs)  # at least one row runs the full 64


@pytest.mark.smollm2
def test_sample_with_a_seed_is_reproducible(smollm2):
    settings = dict(strategy="sample", temperature=0.9, top_p=0.95, max_new_tokens=24, seed=7)
    first = smollm2.generate(PROMPTS[:2], **settings)
    again = smollm2.generate(PROMPTS[:2], **settings)
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    other = smollm2.generate(PROMPTS[:2], **{**settings, "seed": 8})
    assert [c.token_ids for c in other] != [c.token_ids for c in first]


@pytest.mark.smollm2
def test_stop_string_and_streaming_text(smollm2):
    full = smollm2.generate(PROMPTS[2], strategy="greedy", max_new_tokens=40)
    words = full.text.split()
    stop = words[3]
    cut = smollm2.generate(PROMPTS[2], strategy="greedy", max_new_tokens=40, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.find(stop)]
    streamed = "".join(chunk.text for chunk in smollm2.stream(PROMPTS[2], strategy="greedy", max_new_tokens=40))
    assert streamed == full.text
