"""Fast vectorized torch path for ``sample`` (the CPU default).

Top-p usually needs only the few most likely tokens, so the cut is searched among the
``CANDIDATES`` largest logits (``torch.topk``, no full sort); rows whose cut lies beyond
them fall back to a full sort. The result equals the reference's.
"""

from __future__ import annotations

import torch

from decodekit_kernels._noise import gumbel

#: How many of the largest logits the top-p search looks at before sorting everything.
CANDIDATES = 1024


def _kth_largest(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per row, the ``k[r]``-th largest value of ``x[r]`` (``k >= 1``): ``[rows]``."""
    kmax = int(k.max())
    values = torch.topk(x, kmax, dim=-1).values
    return values.gather(1, (k - 1).unsqueeze(1)).squeeze(1)


def _mass_cut(
    values: torch.Tensor, weights: torch.Tensor, limit: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest kept value per row among descending ``values``, and whether it was found.

    A value is kept while the mass of strictly larger values is below ``limit``.
    """
    before = torch.cumsum(weights, -1) - weights
    # mass of strictly larger values = `before` at the first occurrence of each value
    first = torch.searchsorted(-values, -values, right=False)
    mass_above = before.gather(1, first)
    passes = mass_above < limit.unsqueeze(1)
    count = passes.sum(-1)  # passes is a prefix: values descend, mass grows
    cut = values.gather(1, (count - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    found = count < values.shape[1]
    return cut, found


@torch.no_grad()
def keep_mask(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled logits ``[rows, V]`` (float32) and the mask of tokens each row may sample.

    Rows with temperature 0 keep only their argmax.
    """
    vocab = logits.shape[1]
    greedy = temperature == 0
    x = logits.float() / torch.where(greedy, 1.0, temperature).unsqueeze(1)
    neg_inf = torch.tensor(float("-inf"), device=x.device)
    keep = x > neg_inf
    k = torch.where((top_k > 0) & (top_k < vocab), top_k, 0)
    if bool((k > 0).any()):
        kth = _kth_largest(x, k.clamp(min=1))
        keep &= (x >= kth.unsqueeze(1)) | (k == 0).unsqueeze(1)
    peak = torch.where(keep, x, neg_inf).max(-1, keepdim=True).values
    weights = torch.where(keep, torch.exp(x - peak), 0.0)
    cut_rows = top_p < 1.0
    if bool(cut_rows.any()):
        limit = top_p * weights.sum(-1)
        masked = torch.where(keep, x, neg_inf)
        width = min(vocab, CANDIDATES)
        values = torch.topk(masked, width, dim=-1).values
        vweights = torch.where(values > neg_inf, torch.exp(values - peak), 0.0)
        cut, found = _mass_cut(values, vweights, limit)
        missing = cut_rows & ~found & (width < vocab)
        if bool(missing.any()):
            idx = missing.nonzero().squeeze(1)
            full = torch.sort(masked[idx], dim=-1, descending=True).values
            fweights = torch.where(full > neg_inf, torch.exp(full - peak[idx]), 0.0)
            cut[idx] = _mass_cut(full, fweights, limit[idx])[0]
        keep &= (x >= cut.unsqueeze(1)) | ~cut_rows.unsqueeze(1)
    use_min_p = min_p > 0
    if bool(use_min_p.any()):
        keep &= (weights >= min_p.unsqueeze(1)) | ~use_min_p.unsqueeze(1)
    if bool(greedy.any()):
        best = torch.zeros_like(keep).scatter_(1, logits.float().argmax(-1, keepdim=True), True)
        keep = torch.where(greedy.unsqueeze(1), best, keep)
    return x, keep


@torch.no_grad()
def probs_after_sampling_params(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
) -> torch.Tensor:
    """The truncated, renormalized distribution, float32 ``[rows, V]``."""
    x, keep = keep_mask(logits, temperature, top_k, top_p, min_p)
    return torch.softmax(torch.where(keep, x, float("-inf")), dim=-1)


@torch.no_grad()
def sample(
    logits: torch.Tensor,
    seeds: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
) -> torch.Tensor:
    """Gumbel-max over the kept tokens of every row: ``LongTensor[rows]``."""
    x, keep = keep_mask(logits, temperature, top_k, top_p, min_p)
    ids = torch.arange(logits.shape[1], device=logits.device).unsqueeze(0)
    score = x + gumbel(seeds.unsqueeze(1), 0, ids)
    return torch.where(keep, score, float("-inf")).argmax(-1)
