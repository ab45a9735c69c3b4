"""decodekit strategies inside transformers' generate, and transformers processors inside decodekit."""

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor, SuppressTokensLogitsProcessor

import decodekit.hf
from decodekit import Engine
from decodekit.errors import UnknownComponentError


def test_custom_generate_greedy_equals_transformers_greedy(tiny):
    model = tiny.hf
    input_ids = torch.tensor([[5, 6, 7, 8]])
    expected = model.generate(input_ids, max_new_tokens=12, do_sample=False)
    got = model.generate(input_ids, max_new_tokens=12, do_sample=False,
                         custom_generate=decodekit.hf.custom_generate("greedy"))
    assert got.tolist() == expected.tolist()


def test_custom_generate_batch_with_left_padding(tiny):
    model = tiny.hf
    input_ids = torch.tensor([[0, 0, 5, 6], [9, 10, 11, 12]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    out = model.generate(input_ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                         pad_token_id=0, custom_generate=decodekit.hf.custom_generate("greedy"))
    engine = Engine(tiny)
    rows = engine.generate([[5, 6], [9, 10, 11, 12]], strategy="greedy", max_new_tokens=6)
    assert out[:, :4].tolist() == input_ids.tolist()
    for r, completion in enumerate(rows):
        assert out[r, 4 : 4 + len(completion.token_ids)].tolist() == completion.token_ids


def test_custom_generate_sampling_is_seeded(tiny):
    fn = decodekit.hf.custom_generate("sample", temperature=0.9, seed=3)
    input_ids = torch.tensor([[5, 6, 7]])
    first = tiny.hf.generate(input_ids, max_new_tokens=8, custom_generate=fn)
    second = tiny.hf.generate(input_ids, max_new_tokens=8, custom_generate=fn)
    assert first.tolist() == second.tolist()
    assert first.shape == (1, 11)


def test_custom_generate_unknown_strategy():
    with pytest.raises(UnknownComponentError, match="greedy"):
        decodekit.hf.custom_generate("gredy")


def test_transformers_processor_runs_inside_decodekit(tiny):
    """A transformers repetition penalty gives transformers' own penalized greedy tokens."""
    model = tiny.hf
    prompt = [20, 21, 22, 20]  # plain greedy repeats token 62 here
    expected = model.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                              repetition_penalty=1.5)[0, len(prompt):].tolist()
    engine = Engine(tiny)
    plain = engine.generate(prompt, strategy="greedy", max_new_tokens=10)
    got = engine.generate(prompt, strategy="greedy", max_new_tokens=10,
                          logits_processors=[RepetitionPenaltyLogitsProcessor(1.5)])
    assert got.token_ids == expected
    assert got.token_ids != plain.token_ids  # the penalty changed something


def test_transformers_processor_suppresses_tokens_on_any_strategy(tiny):
    engine = Engine(tiny)
    plain = engine.generate([5, 6, 7], strategy="greedy", max_new_tokens=8)
    banned = sorted(set(plain.token_ids))
    out = engine.generate([5, 6, 7], strategy="sample", seed=0, max_new_tokens=8,
                          logits_processors=[SuppressTokensLogitsProcessor(banned)])
    assert not set(out.token_ids) & set(banned)
