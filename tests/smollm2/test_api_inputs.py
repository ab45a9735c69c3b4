"""The Python API on the real model: a transformers model object and tensor prompts."""

import pytest
import torch

from decodekit import Engine


@pytest.mark.smollm2
def test_transformers_model_and_tokenizer_objects_generate_like_the_engine(smollm2):
    loaded = smollm2.model
    engine = Engine(loaded.hf, tokenizer=loaded.tokenizer)  # the bare transformers objects
    expected = smollm2.generate("Name a colour.", strategy="greedy", max_new_tokens=6)
    got = engine.generate("Name a colour.", strategy="greedy", max_new_tokens=6)
    assert got.text == expected.text and got.token_ids == expected.token_ids


@pytest.mark.smollm2
def test_tensor_of_token_ids_from_the_tokenizer(smollm2):
    ids = smollm2.model.tokenizer("The sky is", return_tensors="pt").input_ids  # [1, n]
    rows = smollm2.generate(ids, strategy="greedy", max_new_tokens=4)
    one = smollm2.generate(ids[0], strategy="greedy", max_new_tokens=4)
    assert isinstance(rows, list) and len(rows) == 1
    assert rows[0].token_ids == one.token_ids
    assert ids.dtype == torch.long
