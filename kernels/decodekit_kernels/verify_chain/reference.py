"""Plain torch reference for ``verify_chain``: loops over rows and positions."""

from __future__ import annotations

import torch

from decodekit_kernels._noise import gumbel


def gumbel_max_row(probs: torch.Tensor, seed: torch.Tensor, counter: int) -> int:
    """``argmax_t log(probs[t]) + G(seed, counter, t)`` over ``probs[t] > 0`` (first on ties)."""
    ids = torch.arange(probs.shape[0], device=probs.device)
    noise = gumbel(seed.view(1), counter, ids)
    scores = torch.where(probs > 0, torch.log(probs) + noise, float("-inf"))
    return int(scores.argmax())


def residual_row(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``norm(max(0, p - q))``, or ``p`` itself when rounding leaves no mass."""
    res = torch.clamp(p - q, min=0.0)
    total = res.sum()
    if not bool(total > 0):
        return p
    return res / total


@torch.no_grad()
def verify_chain(
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor | None,
    draft_tokens: torch.Tensor,
    uniforms: torch.Tensor,
    seeds: torch.Tensor,
    greedy: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row by row, position by position (see the dispatcher for the semantics)."""
    rows, k = draft_tokens.shape
    accepted = torch.zeros(rows, dtype=torch.long)
    next_token = torch.zeros(rows, dtype=torch.long)
    for r in range(rows):
        n, token = 0, -1
        for i in range(k + 1):
            p = target_probs[r, i].float()
            x = int(draft_tokens[r, i]) if i < k else -1
            if greedy:
                best = int(p.argmax())
                if x == best:
                    continue
                n, token = i, best
                break
            if x < 0:  # end of the draft: bonus token from p
                n, token = i, gumbel_max_row(p, seeds[r], i)
                break
            qx = 1.0 if draft_probs is None else float(draft_probs[r, i, x])
            if float(uniforms[r, i]) * qx < float(p[x]):
                continue
            if draft_probs is None:
                q = torch.zeros_like(p)
                q[x] = 1.0
            else:
                q = draft_probs[r, i].float()
            n, token = i, gumbel_max_row(residual_row(p, q), seeds[r], i)
            break
        accepted[r], next_token[r] = n, token
    return accepted.to(draft_tokens.device), next_token.to(draft_tokens.device)
