"""Plain torch reference for ``sample``: a loop over rows, written to be obviously right."""

from __future__ import annotations

import torch

from decodekit_kernels._noise import gumbel


@torch.no_grad()
def keep_mask_row(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, min_p: float
) -> torch.Tensor:
    """The tokens one row may sample, ``BoolTensor[V]``, for ``temperature > 0``.

    In Hugging Face's order: temperature, top-k (ties at the k-th value kept), top-p
    (a token stays while the mass of strictly more likely tokens is below ``top_p``),
    min-p (relative to the most likely token).
    """
    x = logits.float() / temperature
    keep = x > float("-inf")
    vocab = x.shape[0]
    if 0 < top_k < vocab:
        kth = torch.sort(x, descending=True).values[top_k - 1]
        keep &= x >= kth
    peak = x[keep].max()
    weights = torch.where(keep, torch.exp(x - peak), 0.0)
    if top_p < 1.0:
        total = weights.sum()
        values = torch.sort(torch.where(keep, x, float("-inf")), descending=True).values
        sorted_weights = torch.where(values > float("-inf"), torch.exp(values - peak), 0.0)
        before = torch.cumsum(sorted_weights, 0) - sorted_weights
        # mass of strictly larger values: the `before` of the first equal value
        first = torch.searchsorted(-values, -x, right=False)
        mass_above = before[first.clamp(max=vocab - 1)]
        keep &= mass_above < top_p * total
    if min_p > 0.0:
        keep &= weights >= min_p
    return keep


@torch.no_grad()
def probs_after_sampling_params(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
) -> torch.Tensor:
    """Row by row: the truncated, renormalized distribution, float32 ``[rows, V]``."""
    out = torch.zeros(logits.shape, dtype=torch.float32, device=logits.device)
    for r in range(logits.shape[0]):
        t = float(temperature[r])
        if t == 0.0:
            out[r, int(torch.argmax(logits[r].float()))] = 1.0
            continue
        keep = keep_mask_row(logits[r], t, int(top_k[r]), float(top_p[r]), float(min_p[r]))
        x = torch.where(keep, logits[r].float() / t, float("-inf"))
        out[r] = torch.softmax(x, dim=0)
    return out


@torch.no_grad()
def sample(
    logits: torch.Tensor,
    seeds: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
) -> torch.Tensor:
    """Row by row: Gumbel-max over the kept tokens, ``LongTensor[rows]``."""
    rows, vocab = logits.shape
    tokens = torch.empty(rows, dtype=torch.long, device=logits.device)
    ids = torch.arange(vocab, device=logits.device)
    for r in range(rows):
        t = float(temperature[r])
        if t == 0.0:
            tokens[r] = torch.argmax(logits[r].float())
            continue
        keep = keep_mask_row(logits[r], t, int(top_k[r]), float(top_p[r]), float(min_p[r]))
        score = logits[r].float() / t + gumbel(seeds[r], 0, ids)
        tokens[r] = torch.argmax(torch.where(keep, score, float("-inf")))
    return tokens
