"""Vectorized torch path for ``penalties``: scatter-add counts, then update the seen tokens."""

from __future__ import annotations

import torch


@torch.no_grad()
def counts(
    token_ids: torch.Tensor,
    history_mask: torch.Tensor,
    prompt_lengths: torch.Tensor,
    vocab: int,
    base: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row and token: occurrences in the whole history, and in the generated part.

    ``base`` (int32 ``[rows, V]`` each, fresh tensors) holds counts to add to, in place.
    """
    rows, width = token_ids.shape
    positions = torch.arange(width, device=token_ids.device).unsqueeze(0)
    generated = history_mask & (positions >= prompt_lengths.unsqueeze(1))
    if base is None:
        seen = torch.zeros((rows, vocab), dtype=torch.int32, device=token_ids.device)
        gen = torch.zeros_like(seen)
    else:
        seen, gen = base
    seen.scatter_add_(1, token_ids, history_mask.to(torch.int32))
    gen.scatter_add_(1, token_ids, generated.to(torch.int32))
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
    *,
    base: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Penalized copy of ``logits``; ``base`` holds counts each row starts from."""
    seen, gen = counts(token_ids, history_mask, prompt_lengths, logits.shape[1], base)
    # only tokens a row has seen change: gather them (a few thousand of rows * V), so the
    # cost is one pass to find them rather than several elementwise passes over rows * V
    rows, tokens = (seen > 0).nonzero(as_tuple=True)
    x = logits.float().clone()
    values = x[rows, tokens]
    rep = repetition[rows]
    values = torch.where(values > 0, values / rep, values * rep)
    count = gen[rows, tokens]
    penalty = (count > 0).float() * presence[rows] + count.float() * frequency[rows]
    # only generated tokens are shifted (as in the reference): -0.0 stays -0.0
    values = torch.where(count > 0, values - penalty, values)
    x[rows, tokens] = values
    return x.to(logits.dtype)
