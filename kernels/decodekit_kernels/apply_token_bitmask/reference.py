"""Plain torch reference for ``apply_token_bitmask``: unpack the bits, one row at a time."""

from __future__ import annotations

import torch


@torch.no_grad()
def apply_token_bitmask(logits: torch.Tensor, bitmask: torch.Tensor, indices: list[int]) -> None:
    """Set ``logits[r, t] = -inf`` where bit ``t`` of ``bitmask[r]`` is 0, for ``r`` in indices."""
    vocab = logits.shape[1]
    for r in indices:
        allowed = torch.zeros(vocab, dtype=torch.bool)
        for word in range(bitmask.shape[1]):
            bits = int(bitmask[r, word]) & 0xFFFFFFFF
            for bit in range(32):
                token = 32 * word + bit
                if token < vocab and bits >> bit & 1:
                    allowed[token] = True
        logits[r, ~allowed.to(logits.device)] = float("-inf")
