"""The HF adapter's tree forward and KV-cache operations against plain full forwards."""

import pytest
import torch

from decodekit.contracts import DraftTree
from decodekit.tree import build_step

ATOL = 2e-4


def fresh_logits(model, sequence):
    """Logits after the last token of ``sequence``, computed with no cache at all."""
    with torch.inference_mode():
        return model.hf(input_ids=torch.tensor([sequence])).logits[0, -1].float()


def prefill(model, prompts):
    cache = model.new_cache(len(prompts))
    step = build_step(prompts, [0] * len(prompts), None)
    out = model.forward(step, cache)
    cache.commit(step.slot_valid)
    return cache, out


def test_prefill_with_padding_matches_each_row_alone(tiny):
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]]
    _, out = prefill(tiny, prompts)
    for r, prompt in enumerate(prompts):
        torch.testing.assert_close(out.logits[r, 0], fresh_logits(tiny, prompt), atol=ATOL, rtol=0)


def test_tree_forward_scores_every_path_in_one_pass(tiny):
    prompts = [[5, 6, 7, 8], [20, 21]]
    cache, _ = prefill(tiny, [p[:-1] for p in prompts])
    # row 0: root -> a(30) -> c(32) -> d(33); root -> b(31).  row 1: chain 40 -> 41, padding
    draft = DraftTree(
        tokens=torch.tensor([[30, 31, 32, 33], [40, 41, -1, -1]]),
        parents=torch.tensor([[-1, -1, 0, 2], [-1, 0, -1, -1]]),
    )
    step = build_step([[p[-1]] for p in prompts], cache.next_positions.tolist(), draft)
    out = tiny.forward(step, cache, hidden_states=True)
    assert out.logits.shape == (2, 5, tiny.vocab_size)
    assert out.hidden_states is not None and out.hidden_states.shape[:2] == (2, 5)
    paths = {0: {0: [], 1: [30], 2: [31], 3: [30, 32], 4: [30, 32, 33]}, 1: {0: [], 1: [40], 2: [40, 41]}}
    for r, row_paths in paths.items():
        for index, path in row_paths.items():
            torch.testing.assert_close(
                out.logits[r, index], fresh_logits(tiny, prompts[r] + path), atol=ATOL, rtol=0
            )


def test_commit_one_path_then_continue(tiny):
    prompt = [5, 6, 7, 8]
    cache, _ = prefill(tiny, [prompt[:-1]])
    draft = DraftTree(tokens=torch.tensor([[30, 31, 32]]), parents=torch.tensor([[-1, -1, 1]]))
    step = build_step([[prompt[-1]]], cache.next_positions.tolist(), draft)
    tiny.forward(step, cache)
    keep = torch.tensor([[True, False, True, True]])  # root, b(31), c(32)
    cache.commit(keep)
    assert cache.next_positions.tolist() == [len(prompt) + 2]
    step = build_step([[50]], cache.next_positions.tolist(), None)
    out = tiny.forward(step, cache)
    cache.commit(step.slot_valid)
    torch.testing.assert_close(out.logits[0, 0], fresh_logits(tiny, [*prompt, 31, 32, 50]), atol=ATOL, rtol=0)


def test_rollback_per_row(tiny):
    prompts = [[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]]
    cache, _ = prefill(tiny, prompts)
    cache.rollback(torch.tensor([2, 0]))
    assert cache.next_positions.tolist() == [3, 5]
    step = build_step([[60], [61]], cache.next_positions.tolist(), None)
    out = tiny.forward(step, cache)
    cache.commit(step.slot_valid)
    torch.testing.assert_close(out.logits[0, 0], fresh_logits(tiny, [5, 6, 7, 60]), atol=ATOL, rtol=0)
    torch.testing.assert_close(out.logits[1, 0], fresh_logits(tiny, [*prompts[1], 61]), atol=ATOL, rtol=0)


def test_select_rows_forks_and_reorders(tiny):
    prompts = [[5, 6, 7], [10, 11, 12, 13]]
    cache, _ = prefill(tiny, prompts)
    cache.select_rows(torch.tensor([1, 0, 0]))
    step = build_step([[70], [71], [72]], cache.next_positions.tolist(), None)
    out = tiny.forward(step, cache)
    cache.commit(step.slot_valid)
    expected = [[*prompts[1], 70], [*prompts[0], 71], [*prompts[0], 72]]
    for r, sequence in enumerate(expected):
        torch.testing.assert_close(out.logits[r, 0], fresh_logits(tiny, sequence), atol=ATOL, rtol=0)


def test_compaction_after_many_rejected_nodes(tiny):
    prompt = [5, 6, 7]
    cache, _ = prefill(tiny, [prompt[:-1]])
    sequence, pending = list(prompt[:-1]), prompt[-1]
    for i in range(12):  # 8 nodes per step, keep 1: holes pile up and trigger compaction
        tokens = torch.arange(20 + i, 28 + i).unsqueeze(0)
        draft = DraftTree.chain(tokens)
        step = build_step([[pending]], cache.next_positions.tolist(), draft)
        tiny.forward(step, cache)
        keep = torch.zeros(1, step.width, dtype=torch.bool)
        keep[0, :2] = True
        cache.commit(keep)
        sequence += [pending, int(tokens[0, 0])]
        pending = 40 + i
    assert cache.length < 2 * len(sequence)  # holes were compacted away
    step = build_step([[pending]], cache.next_positions.tolist(), None)
    out = tiny.forward(step, cache)
    torch.testing.assert_close(out.logits[0, 0], fresh_logits(tiny, [*sequence, pending]), atol=ATOL, rtol=0)


def test_commit_without_forward_is_an_error(tiny):
    cache = tiny.new_cache(1)
    with pytest.raises(RuntimeError, match="without a forward"):
        cache.commit(torch.ones(1, 1, dtype=torch.bool))


def test_steps_write_keys_and_values_in_place(tiny):
    """Each layer's buffer is allocated when it must grow (geometrically), not every step:
    a step copies only its own slots, and the logits stay those of a full forward."""
    from decodekit.slot_buffer import SlotLayer

    prompt = [5, 6, 7]
    cache, _ = prefill(tiny, [prompt])
    layers = cache.hf.layers
    assert layers and all(isinstance(layer, SlotLayer) for layer in layers)
    sequence, buffers = list(prompt), set()
    for token in range(20, 60):
        step = build_step([[token]], cache.next_positions.tolist(), None)
        out = tiny.forward(step, cache)
        cache.commit(step.slot_valid)
        sequence.append(token)
        buffers.add(layers[0]._keys.data_ptr())
        assert layers[0].keys.shape[2] == cache.length == len(sequence)
    assert len(buffers) <= 2  # 43 slots: the first 64-slot buffer, at most one regrowth
    torch.testing.assert_close(out.logits[0, 0], fresh_logits(tiny, sequence), atol=ATOL, rtol=0)


def test_models_with_sliding_window_layers_keep_transformers_cache_layers():
    from transformers import DynamicCache, LlamaConfig, MistralConfig

    from decodekit.model import HFCache
    from decodekit.slot_buffer import supports_slot_layers

    assert supports_slot_layers(LlamaConfig(num_hidden_layers=2))
    sliding = MistralConfig(num_hidden_layers=2, sliding_window=16)
    assert not supports_slot_layers(sliding)
    assert isinstance(HFCache(1, torch.device("cpu"), sliding).hf, DynamicCache)
