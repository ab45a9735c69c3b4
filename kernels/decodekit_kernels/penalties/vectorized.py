"""Vectorized torch path for ``penalties``: scatter-add counts, then one elementwise pass."""

from __future__ import annotations

import torch


@torch.no_grad()
def counts(
    token_ids: torch.Tensor, history_mask: torch.Tensor, prompt_lengths: torch.Tensor, vocab: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row and token: occurrences in the whole history, and in the generated part."""
    rows, width = token_ids.shape
    positions = torch.arange(width, device=token_ids.device).unsqueeze(0)
    generated = history_mask & (positions >= prompt_lengths.unsqueeze(1))
    seen = torch.zeros((rows, vocab), dtype=torch.int32, device=token_ids.device)
    seen.scatter_add_(1, token_ids, history_mask.to(torch.int32))
    gen = torch.zeros_like(seen).scatter_add_(1, token_ids, generated.to(torch.int32))
    return seen, gen


@torch.no_grad()
def penalties(
    logits: torch.Tensor,
    token_ids: torch.Tensor,
    history_mask: torch.Tensor,
    prompt_lengths: torch.Tensor,
    repetition: torch.Tensor,
    presence: torch.Tensor,
    frequency: torch.Tensor,
) -> torch.Tensor:
    """Penalized copy of ``logits``."""
    seen, gen = counts(token_ids, history_mask, prompt_lengths, logits.shape[1])
    x = logits.float()
    rep = repetition.unsqueeze(1)
    x = torch.where(seen > 0, torch.where(x > 0, x / rep, x * rep), x)
    x = x - ((gen > 0).float() * presence.unsqueeze(1) + gen.float() * frequency.unsqueeze(1))
    return x.to(logits.dtype)
