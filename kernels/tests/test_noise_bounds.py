"""Gumbel noise is finite for every hash value, so a masked token can never be drawn.

For the hash value ``2**24 - 1`` the uniform ``(bits + 0.5) / 2**24`` rounds to exactly 1
in float32; ``G = -log(-log(1)) = +inf`` then met a masked token's ``-inf`` logit, the sum
was NaN, and NaN won the argmax: the sampler committed a token the constraint forbids
(about one draw in 340 with SmolLM2's vocabulary). These tests pin the (seed, token)
pairs that hit that hash value and check every backend on them.
"""

from __future__ import annotations

import functools

import decodekit_kernels as kernels
import pytest
import torch
from decodekit_kernels._noise import U_MAX, gumbel, gumbel_rows, uniforms

BACKENDS = ["reference", "torch", "triton"]
VOCAB = 1024  # small, so the Triton interpreter stays fast; the seeds make up the draws


@functools.cache
def extreme_pairs(count: int = 3) -> list[tuple[int, int]]:
    """(seed, token) pairs whose uniform is the largest one the hash can give.

    The hash value ``2**24 - 1`` turns up once in ``2**24`` draws: a few hundred thousand
    seeds over 1,024 tokens give a few.
    """
    found: list[tuple[int, int]] = []
    for start in range(0, 400_000, 10_000):
        if len(found) >= count:
            break
        seeds = torch.arange(start, start + 10_000)
        u = uniforms(seeds.unsqueeze(1), 0, torch.arange(VOCAB).unsqueeze(0))
        rows, tokens = torch.nonzero(u == U_MAX, as_tuple=True)
        found += [(int(seeds[r]), int(t)) for r, t in zip(rows, tokens, strict=True)]
    return found[:count]


def test_uniforms_stay_strictly_inside_the_unit_interval():
    u = uniforms(torch.arange(0, 20_000).unsqueeze(1), 0, torch.arange(VOCAB).unsqueeze(0))
    assert float(u.min()) > 0.0 and float(u.max()) <= U_MAX < 1.0
    noise = gumbel_rows(torch.arange(0, 20_000), 0, VOCAB)
    assert bool(torch.isfinite(noise).all())
    assert float(noise.max()) < 16.7 and float(noise.min()) > -2.9


def test_the_extreme_hash_value_occurs_and_gives_finite_noise():
    pairs = extreme_pairs()
    assert len(pairs) == 3  # the hash does reach 2**24 - 1 within these seeds
    for seed, token in pairs:
        value = gumbel(torch.tensor([seed]), 0, torch.tensor([token]))
        assert bool(torch.isfinite(value).all()), (seed, token)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("settings", [{}, {"temperature": 0.7}, {"top_p": 0.9}, {"min_p": 0.05}],
                         ids=["plain", "temperature", "top_p", "min_p"])
def test_a_masked_token_with_extreme_noise_is_never_drawn(backend, settings):
    pairs = extreme_pairs()
    logits = torch.full((len(pairs), VOCAB), float("-inf"))
    allowed = torch.tensor([7, 11, 400])
    logits[:, allowed] = torch.tensor([1.0, 0.5, 0.2])
    for r, (_, token) in enumerate(pairs):
        assert token not in allowed.tolist()
        logits[r, token] = float("-inf")  # the token with +inf noise before the fix is masked
    seeds = torch.tensor([seed for seed, _ in pairs])
    drawn = kernels.sample(logits, seeds, backend=backend, **settings)
    assert set(drawn.tolist()) <= set(allowed.tolist())


def test_derived_seeds_are_distinct_non_negative_63_bit_and_deterministic():
    from decodekit_kernels import derive_seed

    grid = [(seed, salt) for seed in (0, 1, 2, 2**62, -5) for salt in range(200)]
    derived = [derive_seed(seed, salt) for seed, salt in grid]
    assert all(0 <= d < 2**63 for d in derived)
    assert len(set(derived)) == len(grid)
    assert derived == [derive_seed(seed, salt) for seed, salt in grid]
