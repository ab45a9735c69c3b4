"""decodekit-contrastive: greedy equivalence, a from-scratch reference, batches, errors."""

from __future__ import annotations

import json

import pytest
import torch

import decodekit
from decodekit.engine import Engine
from decodekit.errors import ConfigError

PROMPTS = ["Write a short story about a robot.", "Tell me about Paris."]


def reference_contrastive(hf, prompt_ids: list[int], steps: int, k: int, alpha: float) -> list[int]:
    """Contrastive search written out directly (Su et al., 2022), no cache, no tree.

    Every step recomputes whole sequences: the ``k`` most likely tokens each extend the
    sequence into ``k`` independent sequences (one batch, no cache), whose last hidden
    states are the candidates' and whose other positions are the context. The chosen
    sequence's forward gives the next step's distribution and context (the first step
    runs the prompt alone).
    """
    ids = list(prompt_ids)
    out: list[int] = []
    with torch.inference_mode():
        run = hf(input_ids=torch.tensor([ids]), output_hidden_states=True, logits_to_keep=1)
        context = run.hidden_states[-1][0].float()  # [T, H]
        logits = run.logits[0, -1].float()
        for _ in range(steps):
            probs = torch.softmax(logits, -1)
            top = torch.topk(probs, k).indices.tolist()
            runs = hf(input_ids=torch.tensor([[*ids, token] for token in top]),
                      output_hidden_states=True, logits_to_keep=1)
            best, best_score = 0, None
            for i, token in enumerate(top):
                h = runs.hidden_states[-1][i, -1].float()
                sim = torch.nn.functional.cosine_similarity(context, h.unsqueeze(0), dim=-1)
                score = (1 - alpha) * float(probs[token]) - alpha * float(sim.max())
                if best_score is None or score > best_score:
                    best, best_score = i, score
            ids.append(top[best])
            out.append(top[best])
            context = runs.hidden_states[-1][best].float()
            logits = runs.logits[best, -1].float()
    return out


def test_registered_through_its_entry_point():
    entry = decodekit.get_registry().strategies["contrastive"]
    assert entry.plugin == "contrastive"
    assert entry.strategy.guarantee == "none"
    registry = decodekit.get_registry()
    assert "top_k_siblings" in registry.drafters and "contrastive" in registry.verifiers


def test_alpha_zero_is_greedy_on_tiny_model(tiny):
    """alpha=0 scores candidates by probability alone: greedy's tokens, on a batch."""
    engine = Engine(tiny)
    prompts = [[1, 5, 9, 13], [1, 40], [1, 7, 7, 7, 7, 30, 2 + 60]]
    greedy = engine.generate(prompts, strategy="greedy", max_new_tokens=24)
    contrastive = engine.generate(prompts, strategy="contrastive", top_k=5, alpha=0.0,
                                  max_new_tokens=24)
    assert [c.token_ids for c in contrastive] == [g.token_ids for g in greedy]
    # one forward per token, plus the prompt's own forward
    assert all(c.stats.forward_passes == len(c.token_ids) + 1 for c in contrastive)


def test_tiny_model_matches_reference_and_batching(tiny):
    """Batched, left-padded rows give the reference's tokens, row by row."""
    engine = Engine(tiny)
    prompts = [[1, 5, 9, 13, 20, 21], [1, 40], [1, 7, 7, 30]]
    out = engine.generate(prompts, strategy="contrastive", top_k=3, alpha=0.5, max_new_tokens=20)
    for prompt, completion in zip(prompts, out, strict=True):
        want = reference_contrastive(tiny.hf, prompt, len(completion.token_ids), 3, 0.5)
        assert completion.token_ids == want
    single = engine.generate([prompts[1]], strategy="contrastive", top_k=3, alpha=0.5,
                             max_new_tokens=20)
    assert single[0].token_ids == out[1].token_ids


def test_penalty_changes_the_output(tiny):
    engine = Engine(tiny)
    greedy = engine.generate([[1, 5, 9]], strategy="greedy", max_new_tokens=30)[0].token_ids
    strong = engine.generate([[1, 5, 9]], strategy="contrastive", top_k=6, alpha=0.9,
                             max_new_tokens=30)[0].token_ids
    assert strong != greedy


def test_bad_parameters_name_the_field(tiny):
    engine = Engine(tiny)
    with pytest.raises(ConfigError, match=r"params\.top_k"):
        engine.generate([[1, 2]], strategy="contrastive", top_k=0)
    with pytest.raises(ConfigError, match=r"params\.top_k.*vocabulary \(97"):
        engine.generate([[1, 2]], strategy="contrastive", top_k=98)
    with pytest.raises(ConfigError, match=r"params\.alpha"):
        engine.generate([[1, 2]], strategy="contrastive", alpha=1.5)
    with pytest.raises(ConfigError, match=r"params\.alpha"):
        engine.generate([[1, 2]], strategy="contrastive", alpha=-0.1)


@pytest.mark.smollm2
def test_smollm2_alpha_zero_is_greedy(smollm2):
    greedy = smollm2.generate(PROMPTS, strategy="greedy", max_new_tokens=32)
    out = smollm2.generate(PROMPTS, strategy="contrastive", top_k=4, alpha=0.0, max_new_tokens=32)
    assert [c.token_ids for c in out] == [g.token_ids for g in greedy]


@pytest.mark.smollm2
def test_smollm2_matches_reference(smollm2):
    """top_k=4, alpha=0.6, 32 tokens, 2 prompts: token for token with full recomputation."""
    out = smollm2.generate(PROMPTS, strategy="contrastive", top_k=4, alpha=0.6,
                           max_new_tokens=32)
    for prompt, completion in zip(PROMPTS, out, strict=True):
        ids = smollm2.model.encode(prompt)
        want = reference_contrastive(smollm2.model.hf, ids, len(completion.token_ids), 4, 0.6)
        assert completion.token_ids == want, (smollm2.model.decode(completion.token_ids),
                                              smollm2.model.decode(want))


@pytest.mark.smollm2
def test_cli_runs_contrastive():
    from typer.testing import CliRunner

    from decodekit.cli import app

    result = CliRunner().invoke(app, ["run", "Name a colour.", "--strategy", "contrastive",
                                      "--set", "top_k=4", "--set", "alpha=0.6",
                                      "--max-new-tokens", "8", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["strategy"] == "contrastive"
    assert 0 < record["stats"]["new_tokens"] <= 8
