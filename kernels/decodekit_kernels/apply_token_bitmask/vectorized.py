"""Vectorized torch path for ``apply_token_bitmask`` (the CPU default)."""

from __future__ import annotations

import torch

_SHIFTS = torch.arange(32, dtype=torch.int32)


@torch.no_grad()
def unpack(bitmask: torch.Tensor, vocab: int) -> torch.Tensor:
    """Allowed tokens ``BoolTensor[rows, vocab]`` of a packed ``int32[rows, W]`` bitmask.

    Tokens beyond ``32 * W`` are not allowed.
    """
    bits = (bitmask.unsqueeze(-1) >> _SHIFTS.to(bitmask.device)) & 1
    allowed = bits.reshape(bitmask.shape[0], -1).bool()
    if allowed.shape[1] >= vocab:
        return allowed[:, :vocab]
    pad = torch.zeros(
        (bitmask.shape[0], vocab - allowed.shape[1]), dtype=torch.bool, device=allowed.device
    )
    return torch.cat([allowed, pad], dim=1)


@torch.no_grad()
def apply_token_bitmask(
    logits: torch.Tensor, bitmask: torch.Tensor, indices: torch.Tensor | None
) -> None:
    """Mask disallowed tokens of the selected rows in place."""
    if indices is None:
        logits.masked_fill_(~unpack(bitmask, logits.shape[1]), float("-inf"))
        return
    allowed = unpack(bitmask.index_select(0, indices), logits.shape[1])
    rows = logits.index_select(0, indices).masked_fill_(~allowed, float("-inf"))
    logits.index_copy_(0, indices, rows)
