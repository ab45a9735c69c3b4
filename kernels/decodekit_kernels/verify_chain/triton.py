"""Triton kernel for ``verify_chain``: one program per row.

The program walks the draft: for each position it loads the draft token's target and
draft probabilities (two scalars) and stops at the first rejection. Then it streams the
vocabulary twice at that position: once for the mass of the residual
``max(0, p - q)`` (or, for greedy mode, the argmax of ``p``), once for the Gumbel-max draw
with the counter-based noise of :mod:`decodekit_kernels._noise`, so the token equals the
torch paths' token for the same seeds.
"""

from __future__ import annotations

import torch

from decodekit_kernels._triton import tl, triton
from decodekit_kernels._triton_noise import gumbel_noise

BLOCK = 2048


@triton.jit
def _verify_chain_kernel(
    p_ptr, sp_r, sp_k, sp_v,
    q_ptr, sq_r, sq_k, sq_v,
    tok_ptr, st_r, st_k,
    u_ptr, su_r, su_k,
    seeds_ptr, acc_ptr, next_ptr, K, V,
    HAS_Q: tl.constexpr, GREEDY: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    p_row = p_ptr + row.to(tl.int64) * sp_r
    q_row = q_ptr + row.to(tl.int64) * sq_r
    offs = tl.arange(0, BLOCK)

    # 1. the first position whose test fails (K when every draft token is accepted)
    n = K
    rejected = 0
    i = 0
    while i < K:
        x = tl.load(tok_ptr + row.to(tl.int64) * st_r + i * st_k)
        if x < 0:
            n = i
            i = K
        else:
            px = tl.load(p_row + i * sp_k + x * sp_v).to(tl.float32)
            ok = 0
            if GREEDY:
                # x is the argmax iff nothing beats it (lower index wins ties)
                beaten = 0
                for start in range(0, V, BLOCK):
                    idx = start + offs
                    pv = tl.load(p_row + i * sp_k + idx * sp_v, mask=idx < V, other=-1.0)
                    pv = pv.to(tl.float32)
                    better = (pv > px) | ((pv == px) & (idx < x))
                    beaten += tl.sum((better & (idx < V)).to(tl.int32), 0)
                ok = (beaten == 0).to(tl.int32)
            else:
                u = tl.load(u_ptr + row.to(tl.int64) * su_r + i * su_k)
                qx = 1.0
                if HAS_Q:
                    qx = tl.load(q_row + i * sq_k + x * sq_v).to(tl.float32)
                ok = (u * qx < px).to(tl.int32)
            if ok == 0:
                n = i
                rejected = 1
                i = K
            else:
                i += 1

    # 2. the next token at position n
    seed = tl.load(seeds_ptr + row)
    nq = tl.minimum(n, K - 1)  # q has K rows; only read when rejected (then n < K)
    xn = tl.load(tok_ptr + row.to(tl.int64) * st_r + nq * st_k, mask=rejected != 0, other=-1)
    total = 0.0
    if not GREEDY:
        for start in range(0, V * rejected, BLOCK):
            idx = start + offs
            m = idx < V
            pv = tl.load(p_row + n * sp_k + idx * sp_v, mask=m, other=0.0).to(tl.float32)
            if HAS_Q:
                qv = tl.load(q_row + nq * sq_k + idx * sq_v, mask=m, other=0.0).to(tl.float32)
            else:
                qv = tl.where(idx == xn, 1.0, 0.0)
            total += tl.sum(tl.where(m, tl.maximum(pv - qv, 0.0), 0.0), 0)
    use_res = (rejected != 0) & (total > 0.0)
    win = -float("inf")
    win_idx = 0
    for start in range(0, V, BLOCK):
        idx = start + offs
        m = idx < V
        pv = tl.load(p_row + n * sp_k + idx * sp_v, mask=m, other=0.0).to(tl.float32)
        if GREEDY:
            score = tl.where(m, pv, -float("inf"))
        else:
            if HAS_Q:
                qv = tl.load(q_row + nq * sq_k + idx * sq_v, mask=m, other=0.0).to(tl.float32)
            else:
                qv = tl.where(idx == xn, 1.0, 0.0)
            res = tl.maximum(pv - qv, 0.0) / tl.where(total > 0.0, total, 1.0)
            d = tl.where(use_res, res, pv)
            noise = gumbel_noise(seed, n.to(tl.int64), idx)
            logd = tl.log(tl.where(d > 0.0, d, 1.0))
            score = tl.where(m & (d > 0.0), logd + noise, -float("inf"))
        bmax = tl.max(score, 0)
        barg = tl.min(tl.where(score == bmax, idx, V), 0)
        take = bmax > win
        win_idx = tl.where(take, barg, win_idx)
        win = tl.maximum(win, bmax)
    tl.store(acc_ptr + row, n.to(tl.int64))
    tl.store(next_ptr + row, win_idx.to(tl.int64))


def verify_chain(target_probs, draft_probs, draft_tokens, uniforms, seeds, greedy):
    """Launch one program per row; returns ``(accepted, next_token)``."""
    rows, k = draft_tokens.shape
    vocab = target_probs.shape[2]
    device = target_probs.device
    accepted = torch.empty(rows, dtype=torch.long, device=device)
    next_token = torch.empty(rows, dtype=torch.long, device=device)
    has_q = draft_probs is not None and k > 0
    q = draft_probs if has_q else target_probs  # placeholder pointer when one-hot
    tokens = draft_tokens if k else torch.full((rows, 1), -1, dtype=torch.long, device=device)
    u = uniforms if k else torch.zeros((rows, 1), dtype=torch.float32, device=device)
    block = min(BLOCK, triton.next_power_of_2(vocab))
    _verify_chain_kernel[(rows,)](
        target_probs, *target_probs.stride(),
        q, *q.stride(),
        tokens, *tokens.stride(),
        u, *u.stride(),
        seeds, accepted, next_token, k, vocab,
        HAS_Q=has_q, GREEDY=bool(greedy), BLOCK=block,
    )
    return accepted, next_token
