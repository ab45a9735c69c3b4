"""Triton device functions shared by the kernels (imported only when Triton is)."""

from __future__ import annotations

from decodekit_kernels._noise import FMIX_1, FMIX_2, MIX_COUNTER, MIX_SEED_HI, MIX_TOKEN
from decodekit_kernels._triton import tl, triton

MASK32 = 0xFFFFFFFF


@triton.jit
def gumbel_noise(seed, counter, tokens):
    """Gumbel noise, bit for bit as :func:`decodekit_kernels._noise.gumbel` computes it.

    ``counter`` must be a tensor (``tl.full([], c, tl.int64)`` for a constant).
    """
    # uint64 arithmetic masked to 32 bits: products wrap mod 2**64, keeping the low bits
    s = seed.to(tl.uint64)
    lo = s & MASK32
    hi = (s >> 32) & MASK32
    x = lo ^ ((hi * MIX_SEED_HI) & MASK32)
    x = x ^ ((counter.to(tl.uint64) * MIX_COUNTER) & MASK32)
    x = x ^ ((tokens.to(tl.uint64) * MIX_TOKEN) & MASK32)
    x = x ^ (x >> 16)
    x = (x * FMIX_1) & MASK32
    x = x ^ (x >> 13)
    x = (x * FMIX_2) & MASK32
    x = x ^ (x >> 16)
    u = ((x >> 8).to(tl.float32) + 0.5) * (1.0 / 16777216.0)
    # never 1 (U_MAX of _noise, 1 - 2**-24, as a float32 literal): +inf noise would turn a
    # masked -inf logit into NaN, which wins the argmax
    u = tl.minimum(u, 0.99999994)
    return -tl.log(-tl.log(u))


@triton.jit
def ordered_key(x):
    """An int64 key whose order is the float32 order of ``x`` (no NaN)."""
    bits = x.to(tl.int32, bitcast=True)
    return tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(tl.int64)
