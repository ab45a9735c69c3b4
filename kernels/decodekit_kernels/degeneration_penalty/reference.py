"""Reference ``degeneration_penalty``: loops over rows, candidates and context, float32."""

from __future__ import annotations

import torch

EPS = 1e-8


def _unit(vector: torch.Tensor) -> torch.Tensor:
    return vector.float() / vector.float().norm().clamp_min(EPS)


def degeneration_penalty(
    probs: torch.Tensor,
    candidate_hidden: torch.Tensor,
    context_hidden: torch.Tensor,
    context_mask: torch.Tensor,
    alpha: torch.Tensor,
) -> torch.Tensor:
    """Scores ``[rows, k]``; see :func:`decodekit_kernels.degeneration_penalty`."""
    rows, k = probs.shape
    out = torch.empty((rows, k), dtype=torch.float32, device=probs.device)
    for r in range(rows):
        for j in range(k):
            candidate = _unit(candidate_hidden[r, j])
            best = None
            for t in range(context_hidden.shape[1]):
                if not bool(context_mask[r, t]):
                    continue
                similarity = float(torch.dot(candidate, _unit(context_hidden[r, t])))
                best = similarity if best is None else max(best, similarity)
            a = float(alpha[r])
            out[r, j] = (1.0 - a) * float(probs[r, j]) - a * (0.0 if best is None else best)
    return out
