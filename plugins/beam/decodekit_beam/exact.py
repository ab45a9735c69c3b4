"""Exact probabilities of sampling without replacement, for testing stochastic beam search.

Drawing ``k`` outcomes one after the other, each from the distribution renormalized over
the outcomes not drawn yet, gives the ordered sample ``(x_1, ..., x_k)`` probability

    P(x_1, ..., x_k) = prod_i p(x_i) / (1 - p(x_1) - ... - p(x_{i-1}))

which is also the law of the ``k`` largest Gumbel-perturbed log-probabilities, in
order. Enumerating the ordered draws gives exact inclusion probabilities.

>>> dist = {"a": 0.5, "b": 0.3, "c": 0.2}
>>> round(inclusion_probabilities(dist, 2)["c"], 4)
0.5607
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

__all__ = ["inclusion_probabilities", "ordered_sample_distribution"]


def ordered_sample_distribution(
    dist: Mapping[Hashable, float], k: int
) -> dict[tuple[Hashable, ...], float]:
    """Probability of every ordered sample of ``k`` outcomes drawn without replacement.

    Parameters
    ----------
    dist : mapping of outcome to probability
        A distribution (probabilities sum to 1; zero-probability outcomes are ignored).
    k : int
        Sample size; when fewer than ``k`` outcomes are possible, samples hold all of them.

    Returns
    -------
    dict of tuple to float
        ``(x_1, ..., x_m) -> P`` with ``m = min(k, number of possible outcomes)``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    outcomes = [(x, float(p)) for x, p in dist.items() if p > 0.0]
    size = min(k, len(outcomes))
    result: dict[tuple[Hashable, ...], float] = {}

    def draw(prefix: tuple[Hashable, ...], used: frozenset[int], mass: float, prob: float) -> None:
        if len(prefix) == size:
            result[prefix] = prob
            return
        remaining = 1.0 - mass
        for i, (x, p) in enumerate(outcomes):
            if i not in used:
                draw((*prefix, x), used | {i}, mass + p, prob * p / remaining)

    draw((), frozenset(), 0.0, 1.0)
    return result


def inclusion_probabilities(dist: Mapping[Hashable, float], k: int) -> dict[Hashable, float]:
    """Probability that each outcome is among ``k`` draws without replacement."""
    included: dict[Hashable, float] = {x: 0.0 for x, p in dist.items() if p > 0.0}
    for sample, prob in ordered_sample_distribution(dist, k).items():
        for x in sample:
            included[x] += prob
    return included
