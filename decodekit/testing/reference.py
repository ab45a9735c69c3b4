"""Reference penalties and warpers, written for clarity (float64, plain loops).

They define what sampling settings mean, independently of the kernels the strategies
use: :func:`~decodekit.testing.exact_sequence_distribution` builds exact output laws
from them, and the kernel tests compare against them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

__all__ = ["reference_penalties", "reference_warp"]


def reference_penalties(
    logits: Sequence[float],
    history: Sequence[int],
    prompt_length: int,
    *,
    repetition_penalty: float = 1.0,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
) -> list[float]:
    """Penalized logits, computed plainly.

    CTRL repetition over the whole history; presence and frequency over generated
    tokens (history positions from ``prompt_length`` on).
    """
    out = list(logits)
    for token in set(history):
        value = out[token]
        out[token] = value / repetition_penalty if value > 0 else value * repetition_penalty
    generated = Counter(history[prompt_length:])
    for token, count in generated.items():
        out[token] -= presence_penalty + frequency_penalty * count
    return out


def reference_warp(
    logits: Sequence[float],
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    typical_p: float = 1.0,
) -> list[float]:
    """The distribution sampling settings define, computed plainly in float64.

    Order as in Hugging Face: temperature, top-k, top-p, min-p, typical-p; temperature 0
    or top-k 1 is argmax (one-hot, lowest index on ties). Cuts keep ties: top-k keeps
    every token tied with the k-th, top-p every token tied with the last one needed to
    reach the mass, typical-p every token as close to the entropy as the last one kept.
    """
    values = [float(v) for v in logits]
    vocab = len(values)
    if temperature == 0.0 or top_k == 1:
        best = max(range(vocab), key=lambda i: (values[i], -i))
        return [1.0 if i == best else 0.0 for i in range(vocab)]
    scaled = [v / temperature for v in values]
    keep = [not math.isinf(v) or v > 0 for v in scaled]
    if 0 < top_k < vocab:
        kth = sorted(scaled, reverse=True)[top_k - 1]
        keep = [k and s >= kth for k, s in zip(keep, scaled, strict=True)]

    def normalized(mask: list[bool]) -> list[float]:
        peak = max(s for s, m in zip(scaled, mask, strict=True) if m)
        weights = [math.exp(s - peak) if m else 0.0 for s, m in zip(scaled, mask, strict=True)]
        total = sum(weights)
        return [w / total for w in weights]

    probs = normalized(keep)
    if top_p < 1.0:  # keep a token while the mass of strictly more likely tokens < top_p
        for i in range(vocab):
            above = sum(p for p in probs if p > probs[i])
            if probs[i] == 0.0 or above >= top_p:
                keep[i] = False
        probs = normalized(keep)
    if min_p > 0.0:
        peak = max(probs)
        keep = [k and p >= min_p * peak for k, p in zip(keep, probs, strict=True)]
        probs = normalized(keep)
    if typical_p < 1.0:
        entropy = -sum(p * math.log(p) for p in probs if p > 0)
        support = [i for i in range(vocab) if probs[i] > 0]
        distance = {i: abs(-math.log(probs[i]) - entropy) for i in support}
        order = sorted(support, key=lambda i: distance[i])
        mass = 0.0
        cut = distance[order[0]]
        for i in order:  # the shortest prefix by distance whose mass reaches typical_p
            if mass >= typical_p:
                break
            cut = distance[i]
            mass += probs[i]
        keep = [i in distance and distance[i] <= cut for i in range(vocab)]  # ties kept
        probs = normalized(keep)
    return probs

