"""Counter-based random numbers that torch and Triton compute bit for bit alike.

Ops that draw a token take their randomness as explicit inputs: one ``int64`` seed per
row. The uniform for ``(seed, counter, token)`` is a 32-bit integer hash of the three,
so every backend sees the same noise and the results can be compared exactly, and the
same seed reproduces the same tokens on any device. Tokens are drawn by the Gumbel-max
trick over these uniforms: ``argmax_t log p_t + G_t`` with ``G = -log(-log u)`` is an
exact sample from ``p``.

The hash is murmur3's 32-bit finalizer over a mix of the inputs; its 24 high bits give
``u = min((bits + 0.5) / 2**24, U_MAX)`` in float32, in the open interval (0, 1). The
``min`` matters: for ``bits = 2**24 - 1`` the float32 sum ``bits + 0.5`` rounds to
``2**24``, so ``u`` would be exactly 1 and ``G`` would be ``+inf``; against a masked
token's ``-inf`` logit that makes ``NaN``, which wins an argmax, and the sampler would
commit a token a constraint forbids (about one draw in 340 over a 49,152-token vocabulary).
With ``U_MAX = 1 - 2**-24`` (the largest float32 below 1), ``G`` always lies within
``[-2.9, 16.7]``.
"""

from __future__ import annotations

import functools

import torch

__all__ = [
    "MIX_COUNTER",
    "MIX_SEED_HI",
    "MIX_TOKEN",
    "U_MAX",
    "derive_seed",
    "gumbel",
    "gumbel_rows",
    "seeds_from_generators",
    "uniforms",
]

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
MIX_SEED_HI = 0x9E3779B9
MIX_COUNTER = 0x85EBCA6B
MIX_TOKEN = 0xC2B2AE35
FMIX_1 = 0x85EBCA6B
FMIX_2 = 0xC2B2AE35
#: The largest float32 below 1: uniforms never reach 1, so Gumbel noise is always finite.
U_MAX = 1.0 - 2.0**-24


def _mul32(a: torch.Tensor, b: int) -> torch.Tensor:
    """Low 32 bits of ``a * b`` for ``0 <= a < 2**32`` without int64 overflow."""
    lo = (a & 0xFFFF) * b
    hi = ((a >> 16) * b) & 0xFFFF
    return (lo + (hi << 16)) & MASK32


def _to_int32(x: torch.Tensor) -> torch.Tensor:
    """Values in ``[0, 2**32)`` (int64) as the int32 with the same 32 bits."""
    return torch.where(x >= 2**31, x - 2**32, x).to(torch.int32)


def _mul32_(x: torch.Tensor, b: int) -> torch.Tensor:
    """In place: ``x * b mod 2**32`` on int32 bits (unsigned 32-bit arithmetic wraps)."""
    try:
        return x.view(torch.uint32).mul_(b).view(torch.int32)
    except (NotImplementedError, RuntimeError):  # a device without uint32 multiplication
        return x.copy_(_to_int32(_mul32(x.long() & MASK32, b)))


def _xorshift_(x: torch.Tensor, shift: int) -> torch.Tensor:
    """In place: ``x ^= x >> shift`` as a logical (unsigned) shift of int32 bits."""
    return x.bitwise_xor_((x >> shift) & ((1 << (32 - shift)) - 1))


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

    Notes
    -----
    The inputs are mixed in int64 on their own (small) shapes; the finalizer runs on the
    broadcast shape in 32-bit arithmetic, in place, which is what makes the full-vocabulary
    noise of :func:`decodekit_kernels.sample` cheap on the CPU.
    """
    tail = _to_int32(_mul32(tokens.long() & MASK32, MIX_TOKEN))
    return _finish(_head(seeds, counter), tail)


def _head(seeds: torch.Tensor, counter: torch.Tensor | int) -> torch.Tensor:
    """The seed and counter part of the mix, as int32 bits."""
    seeds = seeds.long()
    lo = seeds & MASK32
    hi = (seeds >> 32) & MASK32
    counter = torch.as_tensor(counter, dtype=torch.long, device=seeds.device)
    return _to_int32(lo ^ _mul32(hi, MIX_SEED_HI) ^ _mul32(counter & MASK32, MIX_COUNTER))


@functools.lru_cache(maxsize=16)
def _token_mix(vocab: int, device: torch.device) -> torch.Tensor:
    """The token part of the mix for tokens ``0 .. vocab - 1``: int32 ``[vocab]``."""
    tokens = torch.arange(vocab, dtype=torch.long, device=device)
    return _to_int32(_mul32(tokens, MIX_TOKEN))


def _finish(head: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
    """Mix ``head ^ tail`` (broadcast) through murmur3's finalizer into uniforms."""
    x = torch.bitwise_xor(head, tail)
    _xorshift_(x, 16)
    _mul32_(x, FMIX_1)
    _xorshift_(x, 13)
    _mul32_(x, FMIX_2)
    _xorshift_(x, 16)
    u = ((x >> 8) & 0xFFFFFF).to(torch.float32)
    return u.add_(0.5).mul_(1.0 / 16777216.0).clamp_(max=U_MAX)


def gumbel(seeds: torch.Tensor, counter: torch.Tensor | int, tokens: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log u)`` for the same inputs as :func:`uniforms`."""
    return uniforms(seeds, counter, tokens).log_().neg_().log_().neg_()


def gumbel_rows(seeds: torch.Tensor, counter: torch.Tensor | int, vocab: int) -> torch.Tensor:
    """``gumbel(seeds[:, None], counter, arange(vocab)[None])``: float32 ``[rows, vocab]``.

    The same bits, faster: the token part of the hash is cached per vocabulary size.
    """
    head = _head(seeds, counter).reshape(-1, 1)
    return _finish(head, _token_mix(vocab, seeds.device)).log_().neg_().log_().neg_()


def derive_seed(seed: int, salt: int) -> int:
    """A non-negative 63-bit seed derived from ``seed`` and ``salt`` (two SplitMix64 rounds).

    SplitMix64's finalizer is a bijection of 64-bit integers that mixes every bit, so
    distinct ``(seed, salt)`` pairs give unrelated seeds: a batch's row seeds, or two
    unrelated draws from one row seed, never share counter-based noise in practice.
    """

    def splitmix64(value: int) -> int:
        z = (value + 0x9E3779B97F4A7C15) & MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    return splitmix64(splitmix64(seed & MASK64) ^ salt) >> 1


def seeds_from_generators(generators: list[torch.Generator]) -> torch.Tensor:
    """One int64 seed per row, each drawn from the row's own generator: ``[rows]``."""
    return torch.cat(
        [torch.randint(0, 2**62, (1,), generator=g, dtype=torch.long) for g in generators]
    )
