"""Fast vectorized torch path for ``sample`` (the CPU default).

Top-p usually needs only the few most likely tokens, so the cut is searched among the
``CANDIDATES`` largest logits (``torch.topk``, no full sort), then among ``8 *
CANDIDATES``; rows whose cut lies beyond both fall back to a full sort. Temperature,
top-k and top-p all cut at a value, so a row's kept set is a prefix of its descending
order: when it lies within such a window, only the window gets Gumbel noise. Rows that do
not truncate get noise over the whole row (cheap: 32-bit arithmetic in place, see
:mod:`decodekit_kernels._noise`), and greedy rows take their argmax. The tokens equal the
reference's.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from decodekit_kernels._noise import gumbel, gumbel_rows

#: How many of the largest logits the top-p search, and the noise of truncated rows, use.
CANDIDATES = 1024
#: Window widths tried in turn (``torch.topk``) before a full sort of the row.
WINDOWS = (CANDIDATES, 8 * CANDIDATES)


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


class Window(NamedTuple):
    """The ``width`` largest scaled logits of some rows: ``rows [n]``, ``values/ids [n, width]``."""

    rows: torch.Tensor
    values: torch.Tensor
    ids: torch.Tensor


def _cutoffs(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
    *,
    window_for_all: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[Window]]:
    """Scaled logits ``x [rows, V]``, row maxima ``[rows]``, value floors ``[rows]``, window.

    A token survives temperature, top-k and top-p iff ``-inf < x >= floor``: all three
    cut at a value. (min-p, a condition on ``exp(x - peak)``, is applied by the callers.)
    Greedy rows (temperature 0) get ``x = logits`` and no floor. The windows hold the
    ``WINDOWS[0]`` largest values of the top-p rows (with ``window_for_all``, of every
    row that truncates: top-k, top-p or min-p), then ``WINDOWS[1]`` of the top-p rows
    whose cut lay beyond the first window; rows whose cut lies beyond every window sort.
    """
    vocab = logits.shape[1]
    greedy = temperature == 0
    x = logits.float()
    if not bool((temperature == 1).all()):
        x = x / torch.where(greedy, 1.0, temperature).unsqueeze(1)  # x / 1 == x exactly
    neg_inf = torch.tensor(float("-inf"), device=x.device)
    peak = x.max(-1).values  # the row maximum is never cut
    floor = torch.full_like(peak, float("-inf"))
    k = torch.where((top_k > 0) & (top_k < vocab) & ~greedy, top_k, 0)
    if bool((k > 0).any()):
        kth = _kth_largest(x, k.clamp(min=1))
        floor = torch.where(k > 0, kth, floor)
    cut_rows = (top_p < 1.0) & ~greedy
    wanted = cut_rows | (window_for_all & ~greedy & ((k > 0) | (min_p > 0)))
    windows: list[Window] = []
    if not bool(wanted.any()):
        return x, peak, floor, windows
    if bool(cut_rows.any()):
        idx = cut_rows.nonzero().squeeze(1)
        xs, fs, ps = x[idx], floor[idx].unsqueeze(1), peak[idx].unsqueeze(1)
        masked = torch.where(xs >= fs, xs, neg_inf)
        limit = top_p[idx] * torch.where(masked > neg_inf, torch.exp(masked - ps), 0.0).sum(-1)
    pending = cut_rows.clone()  # top-p rows whose cut is not known yet
    cut = torch.full_like(peak, float("-inf"))
    rows = wanted.nonzero().squeeze(1)
    for width in (min(vocab, w) for w in WINDOWS):
        values, ids = torch.topk(x[rows], width, dim=-1)
        windows.append(Window(rows, values, ids))
        sel = pending[rows].nonzero().squeeze(1)
        if sel.numel():
            # a top-k-masked row's window is the row's window, masked
            r, at = rows[sel], torch.searchsorted(idx, rows[sel])
            f, pk = floor[r].unsqueeze(1), peak[r].unsqueeze(1)
            v = torch.where(values[sel] >= f, values[sel], neg_inf)
            vcut, found = _mass_cut(v, torch.where(v > neg_inf, torch.exp(v - pk), 0.0), limit[at])
            found |= width == vocab
            cut[r[found]] = vcut[found]
            pending[r[found]] = False
        if width == vocab or not bool(pending.any()):
            break
        rows = pending.nonzero().squeeze(1)  # only top-p rows look further
    if bool(pending.any()):
        miss = pending.nonzero().squeeze(1)
        at = torch.searchsorted(idx, miss)
        full = torch.sort(masked[at], dim=-1, descending=True).values
        fweights = torch.where(full > neg_inf, torch.exp(full - ps[at]), 0.0)
        cut[miss] = _mass_cut(full, fweights, limit[at])[0]
    floor = torch.where(cut_rows, torch.maximum(floor, cut), floor)
    return x, peak, floor, windows


def _kept(
    x: torch.Tensor, peak: torch.Tensor, floor: torch.Tensor, min_p: torch.Tensor
) -> torch.Tensor:
    """Whether each entry of ``x [n, m]`` survives its row's floor and min-p."""
    keep = (x > float("-inf")) & (x >= floor.unsqueeze(1))
    use_min_p = min_p > 0
    if bool(use_min_p.any()):
        ratio = torch.exp(x - peak.unsqueeze(1))
        keep &= (ratio >= min_p.unsqueeze(1)) | ~use_min_p.unsqueeze(1)
    return keep


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
    x, peak, floor, _ = _cutoffs(logits, temperature, top_k, top_p, min_p)
    keep = _kept(x, peak, floor, min_p)
    greedy = temperature == 0
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


def _gumbel_max(
    x: torch.Tensor,
    ids: torch.Tensor | None,
    keep: torch.Tensor | None,
    seeds: torch.Tensor,
    vocab: int,
) -> torch.Tensor:
    """Per row, the kept token of ``ids`` with the largest ``x + G``; lowest id on ties.

    ``ids`` None means every token of the row (``x [n, V]``); ``keep`` None keeps every
    token (a ``-inf`` logit scores ``-inf`` anyway).
    """
    if ids is None:
        score = gumbel_rows(seeds, 0, vocab).add_(x)
        if keep is not None:
            score.masked_fill_(~keep, float("-inf"))
        return score.argmax(-1)  # the first maximum: the lowest id on ties
    score = gumbel(seeds.unsqueeze(1), 0, ids).add_(x)
    if keep is not None:
        score.masked_fill_(~keep, float("-inf"))
    best = score.max(-1, keepdim=True).values
    return torch.where(score == best, ids, vocab).min(-1).values


@torch.no_grad()
def sample(
    logits: torch.Tensor,
    seeds: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
) -> torch.Tensor:
    """Gumbel-max over the kept tokens of every row: ``LongTensor[rows]``.

    Noise is computed only where it can matter. When a row's kept set lies within one of
    its windows of largest logits (top-k, top-p and min-p rows, usually), only those
    candidates get noise. Other rows get noise over the whole vocabulary. Greedy rows
    take their argmax. The tokens equal the reference's.
    """
    rows, vocab = logits.shape
    tokens = torch.empty(rows, dtype=torch.long, device=logits.device)
    greedy = temperature == 0
    if bool(greedy.any()):
        tokens[greedy] = logits[greedy].float().argmax(-1)
        if bool(greedy.all()):
            return tokens
    live = (~greedy).nonzero().squeeze(1)
    if live.numel() < rows:
        logits, seeds = logits[live], seeds[live]
        temperature, top_k, top_p, min_p = temperature[live], top_k[live], top_p[live], min_p[live]
    x, peak, floor, windows = _cutoffs(
        logits, temperature, top_k, top_p, min_p, window_for_all=True
    )
    drawn = torch.empty(live.numel(), dtype=torch.long, device=logits.device)
    truncates = (floor > float("-inf")) | (min_p > 0)
    fits = torch.zeros_like(truncates)
    for win, values, ids in windows:
        # the kept set is a prefix of the descending order; a row fits in a window when
        # the window's smallest value is already cut (min-p with a margin, as exp is only
        # nearly monotone)
        last, f, pk, mp = values[:, -1], floor[win], peak[win], min_p[win]
        cut = (last == float("-inf")) | (last < f) | (torch.exp(last - pk) < mp * (1 - 1e-5))
        fit = (cut | (values.shape[1] == vocab)) & truncates[win] & ~fits[win]
        if bool(fit.any()):
            sel = fit.nonzero().squeeze(1)
            keep = _kept(values[sel], pk[sel], f[sel], mp[sel])
            drawn[win[sel]] = _gumbel_max(values[sel], ids[sel], keep, seeds[win[sel]], vocab)
            fits[win[sel]] = True
    for group, masked in ((~fits & truncates, True), (~truncates, False)):
        if bool(group.any()):
            rest = group.nonzero().squeeze(1)
            xs = x if rest.numel() == x.shape[0] else x[rest]
            keep = _kept(xs, peak[rest], floor[rest], min_p[rest]) if masked else None
            drawn[rest] = _gumbel_max(xs, None, keep, seeds[rest], vocab)
    tokens[live] = drawn
    return tokens
