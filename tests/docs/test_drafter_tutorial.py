"""The drafter tutorial (docs/tutorial.md, "A drafter"): its example drafter, as written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from decodekit import Engine
from decodekit.drafting import build_drafter
from decodekit.testing import (
    AttentionModel,
    MarkovModel,
    assert_matches_distribution,
    exact_sequence_distribution,
    registered_plugin,
    sample_sequences,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def echo():
    path = ROOT / "examples" / "drafter" / "echo_drafter.py"
    spec = importlib.util.spec_from_file_location("echo_drafter", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with registered_plugin(module, name="echo-example"):
        yield module


def test_the_speculative_strategy_builds_it_from_its_options(echo):
    engine = Engine(MarkovModel.random(8, seed=0))
    request = engine.request([[1, 2, 1]], strategy="speculative", drafter="echo",
                             drafter_options={"n": 1}, temperature=0)
    assert isinstance(request.pipeline.drafter, echo.EchoDrafter)
    assert request.pipeline.drafter.n == 1
    with pytest.raises(Exception, match=r"drafter_options\.n"):
        engine.request([[1, 2]], strategy="speculative", drafter="echo",
                       drafter_options={"n": 0})


def test_it_drafts_what_followed_the_last_ngram(echo):
    from decodekit import BuildContext, DecodeView, get_registry

    model = MarkovModel.random(8, seed=0)
    context = BuildContext(model=model, registry=get_registry())
    drafter = build_drafter("echo", {"n": 2}, context=context, draft_length=3,
                            max_nodes=None, warper=None)
    view = DecodeView(sequences=[[5, 6, 7, 1, 5, 6], [1, 2, 3]], prompt_lengths=[6, 3],
                      generators=[], model=model, step=0, row_ids=[0, 1])
    draft = drafter.draft(view)
    assert draft.tokens.tolist() == [[7, 1, 5], [-1, -1, -1]]


def test_greedy_speculative_with_it_is_greedy_decoding(echo):
    engine = Engine(AttentionModel.random(8, seed=3))
    prompts = [[1, 2, 3, 1, 2], [4, 4, 4], [0]]
    greedy = engine.generate(prompts, strategy="greedy", max_new_tokens=16)
    result = engine.run(engine.request(prompts, strategy="speculative", drafter="echo",
                                       drafter_options={"n": 1}, temperature=0,
                                       max_new_tokens=16))
    assert [c.token_ids for c in result.completions] == [c.token_ids for c in greedy]
    assert result.stats.accepted_draft_tokens > 0  # it drafts, and drafts get accepted


def test_sampling_speculative_with_it_keeps_the_target_distribution(echo):
    """Chi-square at alpha = 1e-4 over 3000 rows of 3 tokens (fixed seeds: never flaky)."""
    model = AttentionModel.random(5, seed=4)
    prompt = [0, 1, 0]
    exact = exact_sequence_distribution(model, prompt, 3, temperature=0.9)
    counts = sample_sequences(model, prompt, length=3, n=3000, strategy="speculative",
                              seed=4, drafter="echo", drafter_options={"n": 1},
                              temperature=0.9)
    assert_matches_distribution(counts, exact, alpha=1e-4)
