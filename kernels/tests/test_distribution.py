"""Distribution properties of ``sample`` and ``probs_after_sampling_params``.

The exact target is :func:`decodekit.testing.reference_warp` (plain Python, float64).
Hypothesis (the deterministic "ci" profile of the root conftest, 12 examples) draws small
vocabularies, logits with distinct values (a gap of at least 0.01, so tie rules do not
matter), masked tokens and sampling settings; cases whose top-p or min-p cut-off lies
within 1e-3 of a token's mass are skipped, since float32 and float64 may legitimately
disagree there.

The chi-square test draws ``SAMPLES = 20000`` tokens per example, one per row, with
consecutive seeds (the hardest case for the counter-based hash) and rejects at
significance ``ALPHA = 1e-4``; outcomes of probability zero must never appear. Backends
other than ``torch`` give the same tokens (see ``test_parity.py``).
"""

from __future__ import annotations

import math

import decodekit_kernels as kernels
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from decodekit.testing import assert_matches_distribution, reference_warp

SAMPLES = 20000
ALPHA = 1e-4


def _support(probs: list[float]) -> list[bool]:
    return [p > 0 for p in probs]


@st.composite
def sampling_cases(draw: st.DrawFn) -> tuple[list[float], dict]:
    """Logits (distinct, some -inf) and sampling settings away from cut-off boundaries."""
    vocab = draw(st.integers(2, 12))
    ints = draw(st.lists(st.integers(-400, 400), min_size=vocab, max_size=vocab, unique=True))
    masked = draw(st.lists(st.booleans(), min_size=vocab, max_size=vocab))
    masked[ints.index(max(ints))] = False  # at least one token stays
    logits = [-math.inf if m else v / 100 for v, m in zip(ints, masked, strict=True)]
    settings = {
        "temperature": draw(st.sampled_from([0.0, 0.5, 1.0, 1.7])),
        "top_k": draw(st.integers(0, vocab)),
        "top_p": draw(st.sampled_from([1.0, 0.97, 0.8, 0.5, 0.2])),
        "min_p": draw(st.sampled_from([0.0, 0.02, 0.15, 0.5])),
    }
    exact = _support(reference_warp(logits, **settings))
    for name, value, upper in (("top_p", settings["top_p"], 1.0), ("min_p", settings["min_p"], 0)):
        if value not in (0.0, 1.0):
            for nudge in (-1e-3, 1e-3):
                moved = min(value + nudge, upper) if upper else value + nudge
                assume(_support(reference_warp(logits, **{**settings, name: moved})) == exact)
    return logits, settings


@pytest.mark.parametrize("backend", ["torch", "reference"])
@given(case=sampling_cases())
def test_probs_after_sampling_params_equal_reference_warp(backend: str, case) -> None:
    """The kernel's truncated distribution is reference_warp's (same support, allclose)."""
    logits, settings = case
    expected = torch.tensor(reference_warp(logits, **settings), dtype=torch.float32)
    got = kernels.probs_after_sampling_params(
        torch.tensor([logits]), backend=backend, **settings
    )[0]
    assert torch.equal(got > 0, expected > 0), (got.tolist(), expected.tolist())
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


@given(case=sampling_cases(), offset=st.integers(0, 2**40))
def test_sample_matches_exact_distribution(case, offset: int) -> None:
    """Chi-square (alpha 1e-4, 20000 draws, consecutive seeds) against reference_warp.

    Also: no token of probability zero is ever drawn.
    """
    logits, settings = case
    expected = reference_warp(logits, **settings)
    rows = torch.tensor([logits]).expand(SAMPLES, -1)
    seeds = torch.arange(SAMPLES, dtype=torch.long) + offset
    tokens = kernels.sample(rows, seeds, backend="torch", **settings)
    counts = torch.bincount(tokens, minlength=len(logits)).tolist()
    observed = {t: c for t, c in enumerate(counts) if c}
    assert_matches_distribution(observed, dict(enumerate(expected)), alpha=ALPHA)


def test_sample_never_draws_a_zero_probability_token_large_vocab() -> None:
    """V=4099, half the tokens masked, top-p 0.8: 2000 draws all lie in the support.

    The support is computed independently by reference_warp (float64).
    """
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(1, 4099, generator=gen) * 2
    logits[torch.rand(1, 4099, generator=gen) < 0.5] = float("-inf")
    settings = {"temperature": 0.9, "top_p": 0.8, "min_p": 0.01}
    support = torch.tensor(reference_warp(logits[0].tolist(), **settings)) > 0
    tokens = kernels.sample(logits.expand(2000, -1), torch.arange(2000), **settings)
    assert bool(support[tokens].all()), tokens[~support[tokens]].tolist()
    # and the draws are spread over the support, not stuck on the mode
    assert tokens.unique().numel() > 20
