"""Triton kernel for ``apply_token_bitmask``: one program per (row, block of tokens).

Each program loads ``BLOCK / 32`` words of the bitmask, expands them to bits and writes
``-inf`` only where a token is disallowed; the read of the logits it needs is the only
other memory traffic, so the op runs near the memory-bandwidth floor.
"""

from __future__ import annotations

import torch

from decodekit_kernels._triton import tl, triton

BLOCK = 4096


@triton.jit
def _bitmask_kernel(
    logits_ptr, stride_row, stride_col, bitmask_ptr, bitmask_stride, indices_ptr, V, W,
    HAS_INDICES: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    block = tl.program_id(1)
    row = tl.load(indices_ptr + pid).to(tl.int64) if HAS_INDICES else pid.to(tl.int64)
    tokens = block * BLOCK + tl.arange(0, BLOCK)
    words = tokens // 32
    word = tl.load(bitmask_ptr + row * bitmask_stride + words, mask=words < W, other=0)
    allowed = ((word >> (tokens % 32)) & 1) != 0
    ptrs = logits_ptr + row * stride_row + tokens * stride_col
    tl.store(ptrs, -float("inf"), mask=(tokens < V) & ~allowed)


def apply_token_bitmask(logits: torch.Tensor, bitmask: torch.Tensor, indices: torch.Tensor | None):
    """Mask disallowed tokens of the selected rows in place."""
    rows, vocab = logits.shape
    count = rows if indices is None else indices.numel()
    if count == 0:
        return
    block = min(BLOCK, triton.next_power_of_2(vocab))
    grid = (count, triton.cdiv(vocab, block))
    bitmask = bitmask.contiguous()
    _bitmask_kernel[grid](
        logits, logits.stride(0), logits.stride(1), bitmask, bitmask.stride(0),
        indices if indices is not None else bitmask, vocab, bitmask.shape[1],
        HAS_INDICES=indices is not None, BLOCK=block,
    )
