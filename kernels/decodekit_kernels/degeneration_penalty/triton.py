"""Triton kernel for ``degeneration_penalty``: one program per (row, candidate).

The program streams the candidate's hidden state to get its norm, then streams the
row's context in blocks of ``BLOCK_T`` positions and ``BLOCK_H`` features, accumulating
dot products and context norms in float32, and keeps the running maximum cosine over
valid positions. Any strides; float32, float16 or bfloat16 hidden states.
"""

from __future__ import annotations

import torch

from decodekit_kernels._triton import tl, triton

BLOCK_T = 16
BLOCK_H = 128
EPS = 1e-8


@triton.jit
def _penalty_kernel(
    probs_ptr, p_s0, p_s1,
    cand_ptr, c_s0, c_s1, c_s2,
    ctx_ptr, x_s0, x_s1, x_s2,
    mask_ptr, m_s0, m_s1,
    alpha_ptr, out_ptr, K, T, H, eps,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
):
    row = tl.program_id(0)
    j = tl.program_id(1)
    r64 = row.to(tl.int64)
    cand_base = cand_ptr + r64 * c_s0 + j.to(tl.int64) * c_s1
    offs_h = tl.arange(0, BLOCK_H)
    offs_t = tl.arange(0, BLOCK_T)

    sq = tl.zeros([BLOCK_H], dtype=tl.float32)
    for h0 in range(0, H, BLOCK_H):
        h = h0 + offs_h
        c = tl.load(cand_base + h * c_s2, mask=h < H, other=0.0).to(tl.float32)
        sq += c * c
    cand_norm = tl.maximum(tl.sqrt(tl.sum(sq, 0)), eps)

    best = -float("inf")
    for t0 in range(0, T, BLOCK_T):
        t = t0 + offs_t
        inside_t = t < T
        dot = tl.zeros([BLOCK_T], dtype=tl.float32)
        norm = tl.zeros([BLOCK_T], dtype=tl.float32)
        for h0 in range(0, H, BLOCK_H):
            h = h0 + offs_h
            inside_h = h < H
            c = tl.load(cand_base + h * c_s2, mask=inside_h, other=0.0).to(tl.float32)
            x = tl.load(
                ctx_ptr + r64 * x_s0 + t[:, None].to(tl.int64) * x_s1 + h[None, :] * x_s2,
                mask=inside_t[:, None] & inside_h[None, :], other=0.0,
            ).to(tl.float32)
            dot += tl.sum(x * c[None, :], 1)
            norm += tl.sum(x * x, 1)
        cosine = dot / (tl.maximum(tl.sqrt(norm), eps) * cand_norm)
        valid = tl.load(mask_ptr + r64 * m_s0 + t * m_s1, mask=inside_t, other=0) != 0
        cosine = tl.where(valid & inside_t, cosine, -float("inf"))
        best = tl.maximum(best, tl.max(cosine, 0))

    max_sim = tl.where(best == -float("inf"), 0.0, best)
    a = tl.load(alpha_ptr + row)
    p = tl.load(probs_ptr + r64 * p_s0 + j * p_s1).to(tl.float32)
    tl.store(out_ptr + r64 * K + j, (1.0 - a) * p - a * max_sim)


def degeneration_penalty(
    probs: torch.Tensor,
    candidate_hidden: torch.Tensor,
    context_hidden: torch.Tensor,
    context_mask: torch.Tensor,
    alpha: torch.Tensor,
) -> torch.Tensor:
    """Scores ``[rows, k]``; see :func:`decodekit_kernels.degeneration_penalty`."""
    rows, k = probs.shape
    width, hidden = context_hidden.shape[1], context_hidden.shape[2]
    out = torch.empty((rows, k), dtype=torch.float32, device=probs.device)
    if rows == 0 or k == 0:
        return out
    mask = context_mask.to(torch.int8)
    block_h = min(BLOCK_H, triton.next_power_of_2(max(hidden, 1)))
    _penalty_kernel[(rows, k)](
        probs, probs.stride(0), probs.stride(1),
        candidate_hidden, *candidate_hidden.stride(),
        context_hidden, *context_hidden.stride(),
        mask, mask.stride(0), mask.stride(1),
        alpha.contiguous(), out, k, width, hidden, EPS,
        BLOCK_T=BLOCK_T, BLOCK_H=block_h,
    )
    return out
