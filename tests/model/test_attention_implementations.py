"""Every supported attention implementation masks padding, cache holes and tree nodes.

transformers' ``sdpa`` reads the step's 4D mask as booleans, ``eager`` adds it to the
scores; :class:`~decodekit.HFModel` builds it in the form each one needs. For each
implementation: a tree forward equals plain cache-free forwards, batched greedy equals
each row alone token for token (float32), and ``sample`` over a batch of mixed prompt
lengths matches the exact distribution (chi-square at alpha = 1e-4; against the 0.37
total-variation error of an unmasked batch the test has power ~1 at 3,000 samples per
prompt). Other implementations are refused with a clear error.
"""

from collections import Counter

import pytest
import torch

from decodekit import Engine
from decodekit.contracts import DraftTree
from decodekit.errors import ModelLoadError
from decodekit.model import ATTENTION_IMPLEMENTATIONS, HFModel
from decodekit.testing import (
    assert_matches_distribution,
    exact_sequence_distribution,
    next_token_logits,
    tiny_llama,
)
from decodekit.tree import build_step

IMPLEMENTATIONS = pytest.mark.parametrize("attention", ATTENTION_IMPLEMENTATIONS)
PROMPTS = [[5, 6, 7, 8, 9, 3], [4, 10], [7, 3, 9]]


@IMPLEMENTATIONS
def test_tree_forward_with_padding_equals_plain_forwards(attention):
    model = tiny_llama(attn_implementation=attention)
    prompts = [[5, 6, 7, 8, 9], [20, 21]]  # different lengths: left padding in the prefill
    cache = model.new_cache(2)
    step = build_step([p[:-1] for p in prompts], [0, 0], None)
    model.forward(step, cache)
    cache.commit(step.slot_valid)
    draft = DraftTree(
        tokens=torch.tensor([[30, 31, 32], [40, -1, -1]]),
        parents=torch.tensor([[-1, -1, 0], [-1, -1, -1]]),
    )
    step = build_step([[p[-1]] for p in prompts], cache.next_positions.tolist(), draft)
    out = model.forward(step, cache)
    paths = {0: {0: [], 1: [30], 2: [31], 3: [30, 32]}, 1: {0: [], 1: [40]}}
    for r, row_paths in paths.items():
        for index, path in row_paths.items():
            expected = torch.tensor(next_token_logits(model, prompts[r] + path), dtype=torch.float64)
            torch.testing.assert_close(out.logits[r, index].double(), expected, atol=2e-4, rtol=0)


@IMPLEMENTATIONS
def test_batched_greedy_equals_each_row_alone(attention):
    engine = Engine(tiny_llama(attn_implementation=attention))
    batch = engine.generate(PROMPTS, strategy="greedy", max_new_tokens=12)
    alone = [engine.generate(p, strategy="greedy", max_new_tokens=12) for p in PROMPTS]
    assert [c.token_ids for c in batch] == [c.token_ids for c in alone]


@IMPLEMENTATIONS
def test_sample_over_mixed_prompt_lengths_is_exact(attention):
    model = tiny_llama(11, attn_implementation=attention)
    settings = {"temperature": 4.0}  # the tiny model's logits are spread 8x: flatten them
    prompts = [[5, 6, 7, 8, 9, 3], [4, 10]]
    per_prompt, length = 3000, 2
    outputs = Engine(model).generate(
        prompts * per_prompt, strategy="sample", max_new_tokens=length, seed=7, **settings
    )
    for p, prompt in enumerate(prompts):
        counts = Counter(tuple(c.token_ids) for c in outputs if c.prompt_index % 2 == p)
        assert sum(counts.values()) == per_prompt
        exact = exact_sequence_distribution(model, prompt, length, **settings)
        assert_matches_distribution(counts, exact, alpha=1e-4)


def test_an_implementation_that_ignores_the_mask_is_refused():
    model = tiny_llama().hf
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ModelLoadError, match=r"attn_implementation 'flash_attention_2'.*sdpa"):
        HFModel(model)


def test_load_model_names_the_invalid_implementation(tmp_path):
    from decodekit.model import load_model

    with pytest.raises(ModelLoadError, match=r"attn_implementation must be one of .*'flex'"):
        load_model(tmp_path, attn_implementation="flex")
