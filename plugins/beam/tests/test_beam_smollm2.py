"""On SmolLM2, ``beam`` returns what transformers 5's beam search returns; the CLI prints beams."""

import json

import pytest
import torch
from typer.testing import CliRunner

from decodekit.cli import app

PROMPTS = [
    "What is the capital of France? Answer in one sentence.",  # ends with EOS early
    "List three uses of a paperclip.",  # runs to the token limit
]
NEW_TOKENS = 24


def hf_beam(engine, prompt, **settings):
    """transformers' beam search for one prompt: generated ids (cut after EOS), scores."""
    model = engine.model
    ids = torch.tensor([model.encode(prompt)])
    eos = sorted(model.eos_token_ids)
    out = model.hf.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
        do_sample=False, return_dict_in_generate=True, output_scores=True,
        pad_token_id=eos[0], eos_token_id=eos, **settings,
    )
    rows = []
    for row in out.sequences[:, ids.shape[1] :].tolist():
        end = next((i for i, t in enumerate(row) if t in model.eos_token_ids), None)
        rows.append(row if end is None else row[: end + 1])
    return rows, out.sequences_scores.tolist()


@pytest.mark.smollm2
@pytest.mark.parametrize(
    ("settings", "prompts"),
    [
        (dict(length_penalty=1.0, early_stopping=False), PROMPTS),
        (dict(length_penalty=0.5, early_stopping=True), PROMPTS[:1]),  # short: test budget
    ],
    ids=["default", "lp0.5-early"],
)
def test_beam_equals_transformers(smollm2, settings, prompts):
    """Top-2 sequences and sequences_scores of generate(num_beams=4, do_sample=False)."""
    settings = dict(num_beams=4, num_return_sequences=2, **settings)
    ours = smollm2.generate(prompts, strategy="beam", max_new_tokens=NEW_TOKENS, **settings)
    for index, prompt in enumerate(prompts):
        rows, scores = hf_beam(smollm2, prompt, **settings)
        mine = [c for c in ours if c.prompt_index == index]
        assert [c.token_ids for c in mine] == rows
        assert [c.score for c in mine] == pytest.approx(scores, abs=2e-4)


@pytest.mark.smollm2
@pytest.mark.parametrize(
    ("prompt", "stop"),
    [("Write a short poem about the sea.", "\n"),
     ("What is the capital of France? Answer in one sentence.", " is")],
    ids=["newline", "word"],
)
def test_beam_with_stop_strings_equals_transformers(smollm2, prompt, stop):
    """A stop string ends a candidate during the search, as transformers' stopping
    criteria do: the same four hypotheses, in the same order, with the same scores."""
    model = smollm2.model
    ids = torch.tensor([model.encode(prompt)])
    eos = sorted(model.eos_token_ids)
    out = model.hf.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
        do_sample=False, num_beams=4, num_return_sequences=4, return_dict_in_generate=True,
        output_scores=True, pad_token_id=eos[0], eos_token_id=eos, stop_strings=[stop],
        tokenizer=model.tokenizer,
    )
    lengths = (out.beam_indices >= 0).sum(dim=1).tolist()  # generated tokens per hypothesis
    rows = [row[ids.shape[1] : ids.shape[1] + n]
            for row, n in zip(out.sequences.tolist(), lengths, strict=True)]
    ours = smollm2.generate(prompt, strategy="beam", num_beams=4, num_return_sequences=4,
                            max_new_tokens=NEW_TOKENS, stop=[stop])
    assert [c.token_ids for c in ours] == rows
    assert [c.score for c in ours] == pytest.approx(out.sequences_scores.tolist(), abs=2e-4)
    assert all(c.finish_reason == "stop" and stop not in c.text for c in ours)


@pytest.mark.smollm2
def test_diverse_beam_without_penalty_equals_two_beams(smollm2):
    settings = dict(max_new_tokens=16)
    diverse = smollm2.generate(PROMPTS[0], strategy="diverse_beam", num_beams=4, num_groups=2,
                               diversity_penalty=0.0, **settings)
    plain = smollm2.generate(PROMPTS[0], strategy="beam", num_beams=2, **settings)
    assert diverse.token_ids == plain.token_ids
    assert diverse.score == pytest.approx(plain.score, abs=1e-5)


@pytest.mark.smollm2
def test_cli_prints_one_json_object_per_beam():
    result = CliRunner().invoke(
        app,
        ["run", "Name a colour.", "--strategy", "beam", "--set", "num_beams=3",
         "--set", "num_return_sequences=3", "--max-new-tokens", "8", "--json"],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert len(records) == 3
    assert all(r["prompt_index"] == 0 and r["strategy"] == "beam" for r in records)
    scores = [r["score"] for r in records]
    assert scores == sorted(scores, reverse=True)
    assert len({tuple(r["token_ids"]) for r in records}) == 3
