"""``sample`` is lossless: generated sequences follow the exact warped target distribution.

Each example draws a random :class:`~decodekit.testing.AttentionModel` (one attention
layer whose logits depend on positions and on every earlier token, with keys and values
in the KV cache) and sampling settings, computes the exact distribution of 3-token
outputs by recomputing every prefix from scratch with the plain float64 reference
warpers of :mod:`decodekit.testing`, generates 3,000 sequences with the ``sample``
strategy (cached forwards) and runs a chi-square goodness-of-fit test
at significance alpha = 1e-4 (a correct sampler fails one example with probability 1e-4).
Hypothesis runs derandomized in CI, so the examples and seeds are fixed and the test
cannot flake. Outputs of probability zero must never appear (checked exactly, whatever
the sample size).
"""

from hypothesis import given
from hypothesis import strategies as st

from decodekit.testing import (
    AttentionModel,
    assert_matches_distribution,
    exact_sequence_distribution,
    sample_sequences,
)

SAMPLES = 3000
LENGTH = 3
ALPHA = 1e-4

settings_strategy = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.sampled_from([0.5, 0.8, 1.0, 1.7]),
        "top_k": st.integers(0, 5),
        "top_p": st.sampled_from([0.5, 0.8, 0.95, 1.0]),
        "min_p": st.sampled_from([0.0, 0.05, 0.2]),
        "typical_p": st.sampled_from([0.6, 1.0]),
        "repetition_penalty": st.sampled_from([1.0, 1.3]),
        "presence_penalty": st.sampled_from([0.0, 0.5]),
        "frequency_penalty": st.sampled_from([0.0, 0.4]),
    },
)


@given(
    vocab=st.integers(3, 6),
    model_seed=st.integers(0, 10_000),
    settings=settings_strategy,
)
def test_sample_matches_exact_distribution(vocab, model_seed, settings):
    model = AttentionModel.random(vocab, seed=model_seed)
    prompt = [model_seed % vocab]
    exact = exact_sequence_distribution(model, prompt, LENGTH, **settings)
    assert abs(sum(exact.values()) - 1.0) < 1e-9
    counts = sample_sequences(
        model, prompt, length=LENGTH, n=SAMPLES, strategy="sample", seed=model_seed, **settings
    )
    assert_matches_distribution(counts, exact, alpha=ALPHA)


def test_zero_temperature_is_argmax():
    model = AttentionModel.random(6, seed=3)
    exact = exact_sequence_distribution(model, [1], LENGTH, temperature=0.0)
    assert len(exact) == 1
    counts = sample_sequences(model, [1], length=LENGTH, n=50, temperature=0.0)
    assert set(counts) == set(exact)


def test_check_has_power_against_a_wrong_distribution():
    """The chi-square check rejects samples drawn at the wrong temperature."""
    model = AttentionModel.random(5, seed=11)
    exact = exact_sequence_distribution(model, [0], LENGTH, temperature=1.0)
    wrong = sample_sequences(model, [0], length=LENGTH, n=SAMPLES, temperature=0.7, seed=5)
    try:
        assert_matches_distribution(wrong, exact, alpha=ALPHA)
    except AssertionError as failure:
        assert "chi-square rejects" in str(failure)
    else:
        raise AssertionError("a temperature-0.7 sampler passed as temperature 1.0")


def test_eos_ends_sequences_early_in_the_exact_distribution():
    model = AttentionModel.random(4, seed=2, eos_token_id=3)
    exact = exact_sequence_distribution(model, [0], 4)
    assert any(len(seq) < 4 and seq[-1] == 3 for seq in exact)
    counts = sample_sequences(model, [0], length=4, n=SAMPLES, seed=9)
    assert_matches_distribution(counts, exact, alpha=ALPHA)
