"""Plain torch reference for ``penalties``: count each row's history in a Python loop."""

from __future__ import annotations

from collections import Counter

import torch


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
    """Penalized copy of ``logits`` (float32 math, the input dtype out).

    ``base`` (``[rows, V]`` each): counts of any token and of generated tokens that
    each row has already, expanded here into tokens that join its history.
    """
    out = logits.float().clone()
    for r in range(logits.shape[0]):
        history = [int(t) for t, m in zip(token_ids[r], history_mask[r], strict=True) if m]
        generated = [
            int(t)
            for position, (t, m) in enumerate(zip(token_ids[r], history_mask[r], strict=True))
            if m and position >= int(prompt_lengths[r])
        ]
        if base is not None:
            for token, count in enumerate(base[0][r].tolist()):
                history += [token] * count
            for token, count in enumerate(base[1][r].tolist()):
                generated += [token] * count
        for token in set(history):
            value = out[r, token]
            out[r, token] = value / repetition[r] if value > 0 else value * repetition[r]
        for token, count in Counter(generated).items():
            out[r, token] -= presence[r] * 1.0 + frequency[r] * float(count)
    return out.to(logits.dtype)
