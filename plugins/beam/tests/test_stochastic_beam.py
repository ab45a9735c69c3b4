"""``stochastic_beam`` samples k sequences without replacement, exactly, on toy models.

Exact reference: :func:`decodekit.testing.exact_sequence_distribution` enumerates every
complete output of a toy :class:`~decodekit.testing.AttentionModel`, recomputing every
prefix from scratch (EOS ends an output early; otherwise outputs have the token limit's
length), so forked and reordered beams must keep their own KV-cache entries and :func:`decodekit_beam.ordered_sample_distribution`
enumerates every ordered draw of k of them without replacement. Each statistical test
states its sample size and significance; all seeds are fixed (hypothesis runs
derandomized in CI), so a test passes or fails the same way every run.
"""

import math
from collections import Counter

import pytest
import torch
from decodekit_beam import (
    conditional_gumbel,
    inclusion_probabilities,
    ordered_sample_distribution,
)
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binom

from decodekit.engine import Engine
from decodekit.testing import (
    AttentionModel,
    assert_lossless,
    assert_matches_distribution,
    exact_sequence_distribution,
    sample_sequences,
)

ALPHA = 1e-4


def draw_samples(model, prompt, *, k, length, n, seed, temperature=1.0):
    """n independent k-samples: the ordered tuple of sequences each prompt returned."""
    completions = Engine(model).generate(
        [list(prompt)] * n, strategy="stochastic_beam", num_beams=k, max_new_tokens=length,
        temperature=temperature, seed=seed,
    )
    samples: dict[int, list[tuple[int, ...]]] = {}
    for completion in completions:
        samples.setdefault(completion.prompt_index, []).append(tuple(completion.token_ids))
    return [tuple(samples[i]) for i in range(n)], completions


def test_exact_helpers():
    dist = {"a": 0.5, "b": 0.3, "c": 0.2}
    ordered = ordered_sample_distribution(dist, 2)
    assert sum(ordered.values()) == pytest.approx(1.0)
    assert ordered[("b", "a")] == pytest.approx(0.3 * 0.5 / 0.7)
    inclusion = inclusion_probabilities(dist, 2)
    assert sum(inclusion.values()) == pytest.approx(2.0)
    assert inclusion_probabilities(dist, 3) == pytest.approx({"a": 1.0, "b": 1.0, "c": 1.0})
    assert inclusion_probabilities(dist, 1) == pytest.approx(dist)


def test_conditional_gumbel_has_the_parent_as_maximum():
    perturbed = torch.tensor([[0.3, -1.0, 2.0, float("-inf")], [5.0, 4.0, -3.0, 1.0]],
                             dtype=torch.float64)
    parent = torch.tensor([-0.7, 10.0], dtype=torch.float64)
    shifted = conditional_gumbel(perturbed, parent)
    assert torch.allclose(shifted.max(-1).values, parent)
    assert torch.isneginf(shifted[0, 3])
    order = perturbed[:, :3].argsort(-1)  # monotone: the order of the children is kept
    assert torch.equal(shifted[:, :3].argsort(-1), order)


def test_one_beam_passes_the_lossless_kit():
    """The conformance kit's check: 3,000 outputs of a random 5-token attention model,
    chi-square at alpha = 1e-4, against the exact distribution at temperature 0.8."""
    assert_lossless("stochastic_beam", num_beams=1, temperature=0.8, seed=3)


def test_one_beam_is_ancestral_sampling():
    """k=1: 3,000 sequences of 3 tokens follow the exact model distribution (chi-square,
    alpha = 1e-4), with and without EOS and with a temperature."""
    for model, temperature in (
        (AttentionModel.random(5, seed=11), 1.0),
        (AttentionModel.random(4, seed=12, eos_token_id=3), 0.7),
    ):
        exact = exact_sequence_distribution(model, [0], 3, temperature=temperature)
        counts = sample_sequences(model, [0], length=3, n=3000, strategy="stochastic_beam",
                                  num_beams=1, temperature=temperature, seed=5)
        assert_matches_distribution(counts, exact, alpha=ALPHA)


@given(
    vocab=st.integers(2, 4),
    model_seed=st.integers(0, 10_000),
    k=st.integers(2, 4),
    with_eos=st.booleans(),
)
def test_k_samples_are_exact_draws_without_replacement(vocab, model_seed, k, with_eos):
    """Each example: a random attention model, 2,000 k-samples of outputs of up to 3 tokens.

    1. The ordered k-tuple follows the exact law of sequential draws without replacement
       (chi-square, alpha = 1e-4; zero-probability tuples must never appear).
    2. Each output's inclusion count is Binomial(2000, pi) with pi its exact inclusion
       probability (two-sided binomial test per output, alpha = 1e-4 overall, Bonferroni).
    """
    n, length = 2000, 3
    eos = vocab - 1 if with_eos else None
    model = AttentionModel.random(vocab, seed=model_seed, eos_token_id=eos)
    prompt = [model_seed % vocab]
    exact = exact_sequence_distribution(model, prompt, length)
    samples, completions = draw_samples(model, prompt, k=k, length=length, n=n, seed=model_seed)
    assert all(len(set(s)) == len(s) == min(k, len(exact)) for s in samples)  # distinct

    ordered = ordered_sample_distribution(exact, k)
    assert_matches_distribution(Counter(samples), ordered, alpha=ALPHA)

    inclusion = inclusion_probabilities(exact, k)
    included = Counter(x for s in samples for x in s)
    per_test = ALPHA / len(inclusion)
    for sequence, pi in inclusion.items():
        observed = included[sequence]
        p_value = min(1.0, 2 * min(binom.cdf(observed, n, pi), binom.sf(observed - 1, n, pi)))
        assert p_value >= per_test, (sequence, observed, n * pi)

    for completion in completions[:50]:  # scores are exact log-probabilities
        assert completion.score == pytest.approx(math.log(exact[tuple(completion.token_ids)]),
                                                 abs=1e-6)


def test_seeded_runs_are_reproducible_and_seeds_matter():
    model = AttentionModel.random(6, seed=2, eos_token_id=5)
    first, _ = draw_samples(model, [0], k=3, length=6, n=40, seed=9)
    again, _ = draw_samples(model, [0], k=3, length=6, n=40, seed=9)
    other, _ = draw_samples(model, [0], k=3, length=6, n=40, seed=10)
    assert first == again
    assert first != other


def test_rows_the_loop_ended_are_ranked_by_the_key_kept_with_them():
    """A row the loop ends itself (stop string, completed constraint, forced tokens after
    the last selection) keeps its Gumbel key in RowResult.state; finalize ranks by it."""
    from decodekit_beam.stochastic import StochasticBeamVerifier

    from decodekit.contracts import RowResult

    verifier = StochasticBeamVerifier(StochasticBeamVerifier.Options(num_beams=3))
    rows = [
        RowResult(prompt_index=0, prompt_ids=[1], token_ids=[4, 5, 9, 9],  # + forced 9, 9
                  finish_reason="stop", state={"keys": -1.0, "log_probs": -2.5}),
        RowResult(prompt_index=0, prompt_ids=[1], token_ids=[4, 6], finish_reason="stop",
                  state={"keys": -3.0, "log_probs": -1.5}),
        RowResult(prompt_index=0, prompt_ids=[1], token_ids=[7], finish_reason="stop",
                  state={"keys": -2.0, "log_probs": -0.5}),
    ]
    out = verifier.finalize(rows)
    assert [r.token_ids for r in out] == [[4, 5, 9, 9], [7], [4, 6]]  # by key, not history
    assert [r.score for r in out] == [-2.5, -0.5, -1.5]  # each reports its log-probability


def test_a_stop_string_ends_samples_as_an_eos_token_would():
    """Stop strings end candidates during the search: with a stop string that matches
    exactly token 1, the k-samples of a model without EOS follow the exact law of the same
    model with EOS = 1 (2,000 k-samples, k = 3, chi-square at alpha = 1e-4)."""
    n, k, length = 2000, 3, 3
    plain = AttentionModel.random(4, seed=11)
    with_eos = AttentionModel.random(4, seed=11, eos_token_id=1)  # same weights
    completions = Engine(plain).generate(
        [[0]] * n, strategy="stochastic_beam", num_beams=k, max_new_tokens=length,
        stop=["1"], seed=3,
    )
    samples: dict[int, list[tuple[int, ...]]] = {}
    for completion in completions:
        samples.setdefault(completion.prompt_index, []).append(tuple(completion.token_ids))
    exact = exact_sequence_distribution(with_eos, [0], length)
    assert any(1 in s and len(s) < length for s in exact)  # the stop ends outputs early
    ordered = ordered_sample_distribution(exact, k)
    assert_matches_distribution(Counter(tuple(samples[i]) for i in range(n)), ordered,
                                alpha=ALPHA)
    stopped = [c for c in completions if 1 in c.token_ids]
    assert stopped and all(c.finish_reason == "stop" and c.token_ids[-1] == 1 for c in stopped)
