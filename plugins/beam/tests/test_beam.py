"""``beam`` and ``diverse_beam`` on toy models: parameters, transformers parity, exhaustive search."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import decodekit
from decodekit.engine import Engine
from decodekit.errors import ConfigError
from decodekit.testing import (
    AttentionModel,
    MarkovModel,
    assert_greedy_equivalent,
    check_plugin,
    exact_sequence_distribution,
    tiny_llama,
)

PROMPTS = [[1, 5, 7, 9], [1, 3, 4], [1, 60, 61, 62, 63, 20]]


@pytest.fixture(scope="module")
def eos_llama():
    """A tiny random Llama whose EOS (2) is likely enough to end beams within 12 tokens."""
    model = tiny_llama(seed=3)
    with torch.no_grad():
        model.hf.lm_head.weight[2] *= 2.5
    return Engine(model)


def hf_beam(engine, prompt, max_new_tokens, **settings):
    """transformers' beam search: generated ids (cut after EOS) and sequences_scores."""
    model = engine.model
    ids = torch.tensor([prompt])
    out = model.hf.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
        do_sample=False, return_dict_in_generate=True, output_scores=True, pad_token_id=0,
        eos_token_id=sorted(model.eos_token_ids), **settings,
    )
    rows = []
    for row in out.sequences[:, len(prompt):].tolist():
        end = next((i for i, t in enumerate(row) if t in model.eos_token_ids), None)
        rows.append(row if end is None else row[: end + 1])
    return rows, out.sequences_scores.tolist()


def test_registered_through_its_entry_point():
    strategies = decodekit.get_registry().strategies
    for name in ("beam", "diverse_beam", "stochastic_beam"):
        assert strategies[name].plugin == "beam"
        assert strategies[name].strategy.guarantee == "none"
    info = {p.name: p for p in decodekit.get_plugins()}["beam"]
    assert info.version == "0.1.0"
    check_plugin("beam")  # hook specs, parameter models, component contracts


def test_one_beam_passes_the_greedy_equivalence_kit():
    assert_greedy_equivalent("beam", num_beams=1)
    assert_greedy_equivalent("diverse_beam", num_beams=1, num_groups=1)


@pytest.mark.parametrize(
    ("strategy", "params", "field"),
    [
        ("beam", {"num_beams": 0}, r"params\.num_beams"),
        ("beam", {"num_beams": 2, "num_return_sequences": 3}, "num_return_sequences"),
        ("beam", {"early_stopping": "sometimes"}, r"params\.early_stopping"),
        ("beam", {"beams": 2}, r"params\.beams"),
        ("diverse_beam", {"num_beams": 4, "num_groups": 3}, "num_groups"),
        ("diverse_beam", {"diversity_penalty": -1.0}, r"params\.diversity_penalty"),
        ("stochastic_beam", {"num_beams": 0}, r"params\.num_beams"),
        ("stochastic_beam", {"temperature": 0.0}, r"params\.temperature"),
    ],
)
def test_invalid_parameters_name_the_field(strategy, params, field):
    engine = Engine(MarkovModel.random(4))
    with pytest.raises(ConfigError, match=field):
        engine.generate([[0]], strategy=strategy, max_new_tokens=2, **params)


def test_one_beam_is_greedy(eos_llama):
    greedy = eos_llama.generate(PROMPTS, strategy="greedy", max_new_tokens=12)
    beam = eos_llama.generate(PROMPTS, strategy="beam", num_beams=1, max_new_tokens=12)
    assert [c.token_ids for c in beam] == [c.token_ids for c in greedy]
    assert any(c.finish_reason == "stop" for c in greedy)  # EOS handling is exercised


@given(
    num_beams=st.sampled_from([2, 3, 4]),
    length_penalty=st.sampled_from([0.0, 0.5, 1.0, 2.0, -0.5]),
    early_stopping=st.sampled_from([False, True, "never"]),
    prompt=st.sampled_from(PROMPTS),
)
def test_beam_equals_transformers_on_a_tiny_llama(
    eos_llama, num_beams, length_penalty, early_stopping, prompt
):
    """Same sequences, order and scores as transformers 5 ``generate(num_beams=...)``."""
    settings = dict(num_beams=num_beams, length_penalty=length_penalty,
                    early_stopping=early_stopping, num_return_sequences=num_beams)
    ours = eos_llama.generate([prompt], strategy="beam", max_new_tokens=12, **settings)
    rows, scores = hf_beam(eos_llama, prompt, 12, **settings)
    assert [c.token_ids for c in ours] == rows
    assert [c.score for c in ours] == pytest.approx(scores, abs=1e-4)


def test_stop_strings_see_every_token_of_a_hypothesis(eos_llama, monkeypatch):
    """A stop string in a hypothesis's last token (committed at the token limit, inside
    the verifier) still cuts it: the loop checks every reported row."""
    settings = dict(strategy="beam", num_beams=3, num_return_sequences=3, max_new_tokens=6)
    full = eos_llama.generate([[1, 5, 9]], **settings)
    best = next(c for c in full if len(c.token_ids) == 6)
    monkeypatch.setattr(eos_llama.model, "decode", lambda ids: "".join(f" {t}" for t in ids))
    last = f" {best.token_ids[-1]}"
    cut = eos_llama.generate([[1, 5, 9]], stop=[last], **settings)
    mine = next(c for c in cut if c.token_ids == best.token_ids)
    assert mine.finish_reason == "stop"
    text = "".join(f" {t}" for t in best.token_ids)
    assert mine.text == text[: text.find(last)]
    assert all(last not in c.text for c in cut)  # every reported hypothesis is cut


@pytest.mark.parametrize("num_beams", [2, 3])
def test_a_stop_string_ends_hypotheses_as_an_eos_token_would(num_beams):
    """During the search, a candidate whose text holds a stop string is finished like one
    that ends in EOS: with a stop string matching exactly token 1, beam search over a
    model without EOS returns what it returns over the same model with EOS = 1."""
    plain = Engine(AttentionModel.random(5, seed=27))
    with_eos = Engine(AttentionModel.random(5, seed=27, eos_token_id=1))  # same weights
    settings = dict(strategy="beam", num_beams=num_beams, num_return_sequences=num_beams,
                    max_new_tokens=6)
    stopped = plain.generate([[0, 3]], stop=["1"], **settings)
    expected = with_eos.generate([[0, 3]], **settings)
    assert {c.finish_reason for c in expected} == {"stop", "length"}  # EOS ends some
    assert [c.token_ids for c in stopped] == [c.token_ids for c in expected]
    assert [c.score for c in stopped] == pytest.approx([c.score for c in expected], abs=1e-6)
    assert [c.finish_reason for c in stopped] == [c.finish_reason for c in expected]


def test_a_batch_equals_prompts_one_at_a_time(eos_llama):
    settings = dict(strategy="beam", num_beams=3, num_return_sequences=2, max_new_tokens=10)
    batch = eos_llama.generate(PROMPTS, **settings)
    assert [c.prompt_index for c in batch] == [0, 0, 1, 1, 2, 2]
    for index, prompt in enumerate(PROMPTS):
        alone = eos_llama.generate([prompt], **settings)
        mine = [c for c in batch if c.prompt_index == index]
        assert [c.token_ids for c in mine] == [c.token_ids for c in alone]
        assert [c.score for c in mine] == pytest.approx([c.score for c in alone], abs=1e-4)


@given(vocab=st.integers(3, 4), seed=st.integers(0, 10_000), with_eos=st.booleans())
def test_exhaustive_beam_ranks_every_sequence_exactly(vocab, seed, with_eos):
    """With beams for every prefix, ``early_stopping='never'`` and no length penalty, beam
    search is exhaustive: it returns every complete sequence, ranked by exact log-probability.

    On an attention model (logits depend on positions and every earlier token), so the
    beams' forks and reorders of the KV cache must keep each hypothesis's own keys."""
    length = 3
    model = AttentionModel.random(vocab, seed=seed, eos_token_id=vocab - 1 if with_eos else None)
    exact = exact_sequence_distribution(model, [0], length)
    beams = vocab**length
    out = Engine(model).generate(
        [[0]], strategy="beam", num_beams=beams, num_return_sequences=len(exact),
        length_penalty=0.0, early_stopping="never", max_new_tokens=length,
    )
    ranked = sorted(exact.items(), key=lambda kv: -kv[1])
    assert sorted(tuple(c.token_ids) for c in out) == sorted(exact)
    assert [c.score for c in out] == pytest.approx([math.log(p) for _, p in ranked], abs=1e-4)
    scores = [c.score for c in out]
    assert scores == sorted(scores, reverse=True)


def test_diverse_beam_without_penalty_is_beam_per_group(eos_llama):
    """diversity_penalty=0: every group runs the same beam search of num_beams/num_groups."""
    for groups, beams in ((2, 4), (3, 6)):
        diverse = eos_llama.generate(
            PROMPTS, strategy="diverse_beam", num_beams=beams, num_groups=groups,
            diversity_penalty=0.0, num_return_sequences=groups, max_new_tokens=12,
        )
        plain = eos_llama.generate(PROMPTS, strategy="beam", num_beams=beams // groups,
                                   max_new_tokens=12)
        for index, best in enumerate(plain):
            mine = [c for c in diverse if c.prompt_index == index]
            assert all(c.token_ids == best.token_ids for c in mine)  # every group's best
            assert all(c.score == pytest.approx(best.score, abs=1e-5) for c in mine)


def ngram_overlap(sequences, n=2):
    """Mean pairwise Jaccard overlap of the sequences' n-gram sets."""
    grams = [{tuple(s[i : i + n]) for i in range(len(s) - n + 1)} for s in sequences]
    pairs = [(a, b) for i, a in enumerate(grams) for b in grams[i + 1 :]]
    return sum(len(a & b) / max(len(a | b), 1) for a, b in pairs) / len(pairs)


def test_diversity_penalty_reduces_shared_ngrams(eos_llama):
    settings = dict(num_beams=4, num_return_sequences=4, max_new_tokens=12)
    plain = eos_llama.generate(PROMPTS, strategy="beam", **settings)
    diverse = eos_llama.generate(PROMPTS, strategy="diverse_beam", num_groups=4,
                                 diversity_penalty=2.0, **settings)

    def overlap(outs):
        per_prompt = [[c.token_ids for c in outs if c.prompt_index == i] for i in range(3)]
        return sum(ngram_overlap(s) for s in per_prompt) / 3

    assert overlap(diverse) < overlap(plain)
    # the penalty moves later groups off the tokens earlier groups chose: the groups'
    # first tokens differ from each other
    for index in range(3):
        firsts = {c.token_ids[0] for c in diverse if c.prompt_index == index}
        assert len(firsts) > 1


def test_scores_are_reported_and_sorted(eos_llama):
    out = eos_llama.generate(PROMPTS, strategy="beam", num_beams=4, num_return_sequences=3,
                             length_penalty=1.0, max_new_tokens=12)
    for index in range(3):
        scores = [c.score for c in out if c.prompt_index == index]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert all(c.stats.new_tokens == len(c.token_ids) for c in out)
