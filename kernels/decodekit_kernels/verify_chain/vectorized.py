"""Vectorized torch path for ``verify_chain`` (the one CPU tensors take)."""

from __future__ import annotations

import torch

from decodekit_kernels._noise import gumbel


def gumbel_max(probs: torch.Tensor, seeds: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """Per row ``argmax_t log(probs[r, t]) + G(seeds[r], counters[r], t)``: ``LongTensor[rows]``."""
    ids = torch.arange(probs.shape[1], device=probs.device).unsqueeze(0)
    noise = gumbel(seeds.unsqueeze(1), counters.unsqueeze(1), ids)
    scores = torch.where(probs > 0, torch.log(probs) + noise, float("-inf"))
    return scores.argmax(-1)


@torch.no_grad()
def verify_chain(
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor | None,
    draft_tokens: torch.Tensor,
    uniforms: torch.Tensor,
    seeds: torch.Tensor,
    greedy: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All positions' acceptance tests at once; the residual only at the first rejection."""
    rows, k = draft_tokens.shape
    device = target_probs.device
    row_ids = torch.arange(rows, device=device)
    valid = draft_tokens >= 0
    x = draft_tokens.clamp(min=0)
    if k == 0:
        p0 = target_probs[:, 0].float()
        zero = torch.zeros(rows, dtype=torch.long, device=device)
        return zero, (p0.argmax(-1) if greedy else gumbel_max(p0, seeds, zero))
    p = target_probs[:, :k].float()
    if greedy:
        ok = valid & (x == p.argmax(-1))
    else:
        px = p.gather(2, x.unsqueeze(2)).squeeze(2)
        qx = (
            torch.ones_like(px)
            if draft_probs is None
            else draft_probs.float().gather(2, x.unsqueeze(2)).squeeze(2)
        )
        ok = valid & (uniforms.float() * qx < px)
    # accepted = length of the all-accepted prefix
    accepted = ok.long().cumprod(1).sum(1)
    p_n = target_probs[row_ids, accepted].float()
    if greedy:
        return accepted, p_n.argmax(-1)
    n = accepted.clamp(max=k - 1)
    rejected = (accepted < k) & valid[row_ids, n]
    if draft_probs is None:
        q_n = torch.zeros_like(p_n)
        q_n.scatter_(1, x[row_ids, n].unsqueeze(1), 1.0)
    else:
        q_n = draft_probs[row_ids, n].float()
    res = torch.clamp(p_n - q_n, min=0.0)
    total = res.sum(-1, keepdim=True)
    use_res = rejected.unsqueeze(1) & (total > 0)
    dist = torch.where(use_res, res / torch.where(total > 0, total, 1.0), p_n)
    return accepted, gumbel_max(dist, seeds, accepted)
