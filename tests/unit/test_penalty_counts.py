"""Penalties from per-row token counts equal penalties from each node's whole history."""

from __future__ import annotations

import decodekit_kernels as kernels
import pytest
import torch

from decodekit import Engine
from decodekit.builtin import processors
from decodekit.execute import execute
from decodekit.loop import start
from decodekit.testing import AttentionModel
from decodekit.tree import node_histories

OPTIONS = {"repetition_penalty": 1.4, "presence_penalty": 0.3, "frequency_penalty": 0.2}


@pytest.fixture
def checked(monkeypatch):
    """Every call of the processor also computes the penalties from whole histories."""
    real = processors.PenaltiesProcessor.__call__
    calls = {"steps": 0, "drafts": 0, "reorders": 0}

    def from_histories(self, logits, view, draft):
        rows, nodes, vocab = logits.shape
        histories, prompt_lengths = node_histories(view, draft)
        ids, mask = processors.pad_histories(histories)
        return kernels.penalties(
            logits.reshape(rows * nodes, vocab), ids, history_mask=mask,
            prompt_lengths=torch.tensor(prompt_lengths), **OPTIONS,
        ).view(rows, nodes, vocab)

    def both(self, logits, view, draft):
        want = from_histories(self, logits.clone(), view, draft)
        got = real(self, logits, view, draft)
        torch.testing.assert_close(got, want, atol=0, rtol=0)
        calls["steps"] += 1
        calls["drafts"] += draft is not None and draft.num_nodes > 0
        return got

    real_select = processors.PenaltiesProcessor.select_rows

    def select(self, rows):
        calls["reorders"] += 1
        real_select(self, rows)

    monkeypatch.setattr(processors.PenaltiesProcessor, "__call__", both)
    monkeypatch.setattr(processors.PenaltiesProcessor, "select_rows", select)
    return calls


@pytest.fixture
def engine():
    return Engine(AttentionModel.random(vocab_size=12, seed=4, eos_token_id=11))


PROMPTS = [[1, 2, 3, 1, 2], [4, 5], [6, 7, 6, 7, 6]]


def test_sample_with_rows_finishing_at_different_steps(engine, checked):
    out = engine.generate(PROMPTS, strategy="sample", seed=3, max_new_tokens=30, **OPTIONS)
    assert len({len(c.token_ids) for c in out}) > 1  # rows left the batch at different steps
    assert checked["steps"] >= 20 and checked["reorders"] >= 1


def test_speculative_draft_trees(engine, checked):
    engine.generate(PROMPTS, strategy="speculative", drafter="prompt_lookup", seed=1,
                    max_new_tokens=30, **OPTIONS)
    assert checked["drafts"] >= 3


def test_counts_start_over_with_each_run_of_one_request(engine, checked):
    """One request (one processor) run twice: the second run starts from its prompts."""
    request = engine.request(PROMPTS, strategy="sample", seed=3, max_new_tokens=12, **OPTIONS)
    first = execute(request).completions
    steps = checked["steps"]
    again = execute(request).completions
    assert checked["steps"] > steps  # the same processor ran again, checked every step
    assert [c.token_ids for c in first] == [c.token_ids for c in again]


def test_beam_forks_carry_their_counts(engine, checked):
    engine.generate(PROMPTS[:1], strategy="beam", num_beams=3, max_new_tokens=10,
                    processors=[{"name": "penalties", "options": OPTIONS}])
    assert checked["steps"] >= 5 and checked["reorders"] >= 5


def test_one_processor_serving_two_generations_at_once_is_an_error():
    model = AttentionModel.random(vocab_size=12, seed=4)
    processor = processors.PenaltiesProcessor(processors.PenaltiesProcessor.Options(
        repetition_penalty=1.2))
    long = start(model, [[1, 2, 3]], max_new_tokens=2, seeds=[0])
    short = start(model, [[1]], max_new_tokens=2, seeds=[0])
    processor(torch.zeros(1, 1, 12), long.view(), None)
    short.step = 1
    with pytest.raises(RuntimeError, match="row 0 has 1 tokens, fewer than the 3 counted"):
        processor(torch.zeros(1, 1, 12), short.view(), None)


def test_a_token_outside_the_logits_is_named():
    model = AttentionModel.random(vocab_size=12, seed=4)
    processor = processors.PenaltiesProcessor(processors.PenaltiesProcessor.Options(
        repetition_penalty=1.2))
    state = start(model, [[1, 40]], max_new_tokens=2, seeds=[0])
    with pytest.raises(ValueError, match=r"row 0 has token 40, outside the logits' 0..11"):
        processor(torch.zeros(1, 1, 12), state.view(), None)


def test_a_reorder_the_counts_did_not_see_is_an_error():
    model = AttentionModel.random(vocab_size=12, seed=4)
    options = processors.PenaltiesProcessor.Options(repetition_penalty=1.2)
    processor = processors.PenaltiesProcessor(options)
    state = start(model, [[1], [2]], max_new_tokens=2, seeds=[0, 0])
    processor(torch.zeros(2, 1, 12), state.view(), None)
    state.rows.reverse()  # rows reordered behind the processor's back
    state.step = 1
    with pytest.raises(RuntimeError, match=r"the rows are \[1, 0\], the counts follow \[0, 1\]"):
        processor(torch.zeros(2, 1, 12), state.view(), None)
