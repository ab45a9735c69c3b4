"""Vectorized torch ``degeneration_penalty``: one batched matmul of unit vectors."""

from __future__ import annotations

import torch

EPS = 1e-8


def degeneration_penalty(
    probs: torch.Tensor,
    candidate_hidden: torch.Tensor,
    context_hidden: torch.Tensor,
    context_mask: torch.Tensor,
    alpha: torch.Tensor,
) -> torch.Tensor:
    """Scores ``[rows, k]``; see :func:`decodekit_kernels.degeneration_penalty`."""
    candidate = candidate_hidden.float()
    context = context_hidden.float()
    candidate = candidate / candidate.norm(dim=-1, keepdim=True).clamp_min(EPS)
    context = context / context.norm(dim=-1, keepdim=True).clamp_min(EPS)
    similarity = torch.bmm(candidate, context.transpose(1, 2))  # [rows, k, T]
    similarity = similarity.masked_fill(~context_mask.unsqueeze(1), float("-inf"))
    if similarity.shape[2] == 0:
        max_sim = torch.zeros(probs.shape, dtype=torch.float32, device=probs.device)
    else:
        max_sim = similarity.amax(dim=2)
        max_sim = torch.where(torch.isinf(max_sim), 0.0, max_sim)
    a = alpha.unsqueeze(1)
    return (1.0 - a) * probs.float() - a * max_sim
