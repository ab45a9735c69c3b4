"""Loading models: the embedded default (converted once, then fast) and local directories."""

import time

import pytest
import torch

from decodekit.embedded import prepare_embedded_model
from decodekit.errors import ModelLoadError
from decodekit.model import load_model


@pytest.mark.smollm2
def test_embedded_model_loads_from_the_cache_quickly():
    """After the one-time conversion a load takes <= 3 s.

    Timed after the Python imports of torch and transformers (about 2 s once per process,
    whatever the model): the conversion cache is what this checks.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM  # noqa: F401

    first = prepare_embedded_model()  # converts on a fresh machine, reuses afterwards
    start = time.perf_counter()
    assert prepare_embedded_model() == first  # no second conversion
    model = load_model()
    seconds = time.perf_counter() - start
    assert seconds <= 3.0, f"cached load took {seconds:.1f}s"
    assert model.vocab_size == 49152 and model.context_length == 8192
    assert 2 in model.eos_token_ids
    assert model.tokenizer.chat_template


@pytest.mark.smollm2
def test_local_directory_and_dtype():
    model = load_model(prepare_embedded_model(), dtype="bfloat16")
    assert model.dtype == torch.bfloat16


def test_bad_model_paths(tmp_path):
    with pytest.raises(ModelLoadError, match="Model path not found"):
        load_model(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="not a Hugging Face model directory"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "nonsense"}')
    with pytest.raises(ModelLoadError, match="Could not load a causal LM"):
        load_model(tmp_path)
    with pytest.raises(ModelLoadError, match="dtype must be one of"):
        load_model(tmp_path, dtype="int8")
