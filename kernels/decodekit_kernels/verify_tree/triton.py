"""Triton kernel for ``verify_tree``: one program per row.

The program visits the nodes in index order, as the vectorized path does, keeping the
current node, the number of accepted nodes and whether the current distribution is the
target row of the current node or a residual. Residuals live in a float32 scratch row
``[V]`` per program (global memory), rewritten in place after each rejected child; the
final draw is a Gumbel-max with the counter-based noise of :mod:`decodekit_kernels._noise`.
"""

from __future__ import annotations

import torch

from decodekit_kernels._triton import tl, triton
from decodekit_kernels._triton_noise import gumbel_noise

BLOCK = 2048


@triton.jit
def _argmax_row(ptr, stride_v, V, offs, BLOCK: tl.constexpr):
    best = -float("inf")
    best_idx = 0
    for start in range(0, V, BLOCK):
        idx = start + offs
        v = tl.load(ptr + idx * stride_v, mask=idx < V, other=-float("inf")).to(tl.float32)
        bmax = tl.max(v, 0)
        barg = tl.min(tl.where(v == bmax, idx, V), 0)
        take = bmax > best
        best_idx = tl.where(take, barg, best_idx)
        best = tl.maximum(best, bmax)
    return best_idx


@triton.jit
def _verify_tree_kernel(
    p_ptr, sp_r, sp_n, sp_v,
    q_ptr, sq_r, sq_n, sq_v,
    tok_ptr, st_r, st_n,
    par_ptr, spa_r, spa_n,
    u_ptr, su_r, su_n,
    seeds_ptr, scratch_ptr, path_ptr, acc_ptr, next_ptr, N, V,
    HAS_Q: tl.constexpr, GREEDY: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    r64 = row.to(tl.int64)
    p_row = p_ptr + r64 * sp_r
    q_row = q_ptr + r64 * sq_r
    s_row = scratch_ptr + r64 * V
    offs = tl.arange(0, BLOCK)

    cur = tl.full([], -1, tl.int32)
    acc = tl.full([], 0, tl.int32)
    use_scratch = tl.full([], 0, tl.int32)
    best = tl.full([], 0, tl.int32)
    if GREEDY:
        best = _argmax_row(p_row, sp_v, V, offs, BLOCK)
    for c0 in range(0, N):
        c = tl.full([], 0, tl.int32) + c0
        x = tl.load(tok_ptr + r64 * st_r + c * st_n)
        parent = tl.load(par_ptr + r64 * spa_r + c * spa_n)
        if (parent == cur) & (x >= 0):
            ok = 0
            if GREEDY:
                ok = (x == best).to(tl.int32)
            else:
                node_row = p_row + (cur + 1) * sp_n
                px = tl.load(node_row + x * sp_v).to(tl.float32)
                if use_scratch != 0:
                    px = tl.load(s_row + x)
                qx = 1.0
                if HAS_Q:
                    qx = tl.load(q_row + c * sq_n + x * sq_v).to(tl.float32)
                u = tl.load(u_ptr + r64 * su_r + c * su_n)
                ok = (u * qx < px).to(tl.int32)
                if ok == 0:
                    total = 0.0
                    for start in range(0, V, BLOCK):
                        idx = start + offs
                        m = idx < V
                        pv = tl.load(node_row + idx * sp_v, mask=m, other=0.0).to(tl.float32)
                        sv = tl.load(s_row + idx, mask=m, other=0.0)
                        pv = tl.where(use_scratch != 0, sv, pv)
                        if HAS_Q:
                            qv = tl.load(q_row + c * sq_n + idx * sq_v, mask=m, other=0.0)
                            qv = qv.to(tl.float32)
                        else:
                            qv = tl.where(idx == x, 1.0, 0.0)
                        total += tl.sum(tl.where(m, tl.maximum(pv - qv, 0.0), 0.0), 0)
                    if total > 0.0:
                        for start in range(0, V, BLOCK):
                            idx = start + offs
                            m = idx < V
                            pv = tl.load(node_row + idx * sp_v, mask=m, other=0.0)
                            pv = pv.to(tl.float32)
                            sv = tl.load(s_row + idx, mask=m, other=0.0)
                            pv = tl.where(use_scratch != 0, sv, pv)
                            if HAS_Q:
                                qv = tl.load(q_row + c * sq_n + idx * sq_v, mask=m, other=0.0)
                                qv = qv.to(tl.float32)
                            else:
                                qv = tl.where(idx == x, 1.0, 0.0)
                            tl.store(s_row + idx, tl.maximum(pv - qv, 0.0) / total, mask=m)
                        use_scratch = 1
                    else:  # rounding left no mass: back to the target at this node
                        use_scratch = 0
            if ok != 0:
                tl.store(path_ptr + r64 * N + acc, c.to(tl.int64))
                acc += 1
                cur = c
                use_scratch = 0
                if GREEDY:
                    best = _argmax_row(p_row + (c + 1) * sp_n, sp_v, V, offs, BLOCK)

    token = best
    if not GREEDY:
        seed = tl.load(seeds_ptr + row)
        node_row = p_row + (cur + 1) * sp_n
        win = -float("inf")
        win_idx = 0
        for start in range(0, V, BLOCK):
            idx = start + offs
            m = idx < V
            d = tl.load(node_row + idx * sp_v, mask=m, other=0.0).to(tl.float32)
            sv = tl.load(s_row + idx, mask=m, other=0.0)
            d = tl.where(use_scratch != 0, sv, d)
            noise = gumbel_noise(seed, tl.full([], 0, tl.int64) + acc, idx)
            score = tl.where(m & (d > 0.0), tl.log(tl.where(d > 0.0, d, 1.0)) + noise,
                             -float("inf"))
            bmax = tl.max(score, 0)
            barg = tl.min(tl.where(score == bmax, idx, V), 0)
            take = bmax > win
            win_idx = tl.where(take, barg, win_idx)
            win = tl.maximum(win, bmax)
        token = win_idx
    tl.store(acc_ptr + row, acc.to(tl.int64))
    tl.store(next_ptr + row, token.to(tl.int64))


def verify_tree(target_probs, draft_probs, tokens, parents, uniforms, seeds, greedy):
    """Launch one program per row; returns ``(path, accepted, next_token)``."""
    rows, n_nodes = tokens.shape
    vocab = target_probs.shape[2]
    device = target_probs.device
    path = torch.full((rows, n_nodes), -1, dtype=torch.long, device=device)
    accepted = torch.empty(rows, dtype=torch.long, device=device)
    next_token = torch.empty(rows, dtype=torch.long, device=device)
    scratch = torch.zeros((rows, vocab), dtype=torch.float32, device=device)
    has_q = draft_probs is not None
    q = draft_probs if has_q else target_probs
    block = min(BLOCK, triton.next_power_of_2(vocab))
    _verify_tree_kernel[(rows,)](
        target_probs, *target_probs.stride(),
        q, *q.stride(),
        tokens, *tokens.stride(),
        parents, *parents.stride(),
        uniforms, *uniforms.stride(),
        seeds, scratch, path, accepted, next_token, n_nodes, vocab,
        HAS_Q=has_q, GREEDY=bool(greedy), BLOCK=block,
    )
    return path, accepted, next_token
