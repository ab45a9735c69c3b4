"""Counter-based random numbers that torch and Triton compute bit for bit alike.

Ops that draw a token take their randomness as explicit inputs: one ``int64`` seed per
row. The uniform for ``(seed, counter, token)`` is a 32-bit integer hash of the three,
so every backend sees the same noise and the results can be compared exactly, and the
same seed reproduces the same tokens on any device. Tokens are drawn by the Gumbel-max
trick over these uniforms: ``argmax_t log p_t + G_t`` with ``G = -log(-log u)`` is an
exact sample from ``p``.

The hash is murmur3's 32-bit finalizer over a mix of the inputs; its 24 high bits give
``u = (bits + 0.5) / 2**24`` in the open interval (0, 1).
"""

from __future__ import annotations

import torch

__all__ = ["MIX_COUNTER", "MIX_SEED_HI", "MIX_TOKEN", "gumbel", "seeds_from_generators", "uniforms"]

MASK32 = 0xFFFFFFFF
MIX_SEED_HI = 0x9E3779B9
MIX_COUNTER = 0x85EBCA6B
MIX_TOKEN = 0xC2B2AE35
FMIX_1 = 0x85EBCA6B
FMIX_2 = 0xC2B2AE35


def _mul32(a: torch.Tensor, b: int) -> torch.Tensor:
    """Low 32 bits of ``a * b`` for ``0 <= a < 2**32`` without int64 overflow."""
    lo = (a & 0xFFFF) * b
    hi = ((a >> 16) * b) & 0xFFFF
    return (lo + (hi << 16)) & MASK32


def uniforms(
    seeds: torch.Tensor, counter: torch.Tensor | int, tokens: torch.Tensor
) -> torch.Tensor:
    """Uniforms in (0, 1), float32, broadcast over ``seeds``, ``counter`` and ``tokens``.

    Parameters
    ----------
    seeds : LongTensor
        Per-row seeds (any int64 value).
    counter : LongTensor or int
        A per-draw counter (a draft node, a step), non-negative and below ``2**31``.
    tokens : LongTensor
        Token ids, non-negative and below ``2**31``.
    """
    seeds = seeds.long()
    lo = seeds & MASK32
    hi = (seeds >> 32) & MASK32
    counter = torch.as_tensor(counter, dtype=torch.long, device=seeds.device)
    x = lo ^ _mul32(hi, MIX_SEED_HI)
    x = x ^ _mul32(counter & MASK32, MIX_COUNTER)
    x = (x ^ _mul32(tokens.long() & MASK32, MIX_TOKEN)) & MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, FMIX_1)
    x = x ^ (x >> 13)
    x = _mul32(x, FMIX_2)
    x = x ^ (x >> 16)
    return ((x >> 8).to(torch.float32) + 0.5) * (1.0 / 16777216.0)


def gumbel(seeds: torch.Tensor, counter: torch.Tensor | int, tokens: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log u)`` for the same inputs as :func:`uniforms`."""
    return -torch.log(-torch.log(uniforms(seeds, counter, tokens)))


def seeds_from_generators(generators: list[torch.Generator]) -> torch.Tensor:
    """One int64 seed per row, each drawn from the row's own generator: ``[rows]``."""
    return torch.cat(
        [torch.randint(0, 2**62, (1,), generator=g, dtype=torch.long) for g in generators]
    )
