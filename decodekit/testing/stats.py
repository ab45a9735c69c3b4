"""Sampling outputs and comparing them with exact distributions (chi-square, total variation).

The chi-square p-value is computed without SciPy (torch's regularized incomplete gamma).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from decodekit.model import LanguageModel

__all__ = [
    "ChiSquareResult",
    "assert_matches_distribution",
    "chi2_sf",
    "chi_square_test",
    "sample_sequences",
    "total_variation",
]


def sample_sequences(
    model: LanguageModel,
    prompt: Sequence[int],
    *,
    length: int,
    n: int,
    strategy: str = "sample",
    seed: int = 0,
    batch: int = 2048,
    **params: Any,
) -> Counter[tuple[int, ...]]:
    """Generate ``n`` outputs of up to ``length`` tokens and count them.

    Rows run in batches of ``batch`` identical prompts; batch ``b`` is one call with the
    integer seed ``seed + done`` (``done`` rows before it), which gives each of its rows a
    seed of its own, so every output is an independent draw. Extra keywords are strategy parameters.
    """
    from decodekit.engine import Engine

    engine = Engine(model)
    counts: Counter[tuple[int, ...]] = Counter()
    done = 0
    while done < n:
        rows = min(batch, n - done)
        completions = engine.generate(
            [list(prompt)] * rows, strategy=strategy, max_new_tokens=length,
            seed=seed + done, **params,
        )
        for completion in completions:
            counts[tuple(completion.token_ids)] += 1
        done += rows
    return counts


@dataclass(frozen=True)
class ChiSquareResult:
    """Outcome of a chi-square goodness-of-fit test.

    Attributes
    ----------
    statistic : float
    dof : int
        Degrees of freedom (bins after pooling, minus one).
    p_value : float
    samples : int
    impossible : dict
        Outcomes observed although their exact probability is zero (must be empty).
    """

    statistic: float
    dof: int
    p_value: float
    samples: int
    impossible: dict[Any, int]


def chi_square_test(
    observed: Mapping[Any, int], expected: Mapping[Any, float], *, min_expected: float = 5.0
) -> ChiSquareResult:
    """Pearson chi-square test of observed counts against exact probabilities.

    Outcomes whose expected count is below ``min_expected`` are pooled into one bin,
    so the chi-square approximation holds. The p-value is the chi-square survival
    function, computed as the regularized upper incomplete gamma function
    ``Q(dof / 2, statistic / 2)`` in float64 (torch), so the kit needs no SciPy.
    """
    samples = sum(observed.values())
    impossible = {k: c for k, c in observed.items() if expected.get(k, 0.0) <= 0.0}
    bins: list[tuple[float, int]] = []
    pooled_expected, pooled_observed = 0.0, 0
    for outcome, prob in expected.items():
        exp_count = prob * samples
        if exp_count < min_expected:
            pooled_expected += exp_count
            pooled_observed += observed.get(outcome, 0)
        else:
            bins.append((exp_count, observed.get(outcome, 0)))
    if pooled_expected > 0:
        bins.append((pooled_expected, pooled_observed))
    statistic = sum((o - e) ** 2 / e for e, o in bins if e > 0)
    dof = max(len(bins) - 1, 1)
    return ChiSquareResult(
        statistic=statistic,
        dof=dof,
        p_value=chi2_sf(statistic, dof),
        samples=samples,
        impossible=impossible,
    )


def chi2_sf(statistic: float, dof: int) -> float:
    """Survival function ``P(X >= statistic)`` of the chi-square law with ``dof`` degrees."""
    k = torch.tensor(dof / 2.0, dtype=torch.float64)
    x = torch.tensor(max(statistic, 0.0) / 2.0, dtype=torch.float64)
    return float(torch.special.gammaincc(k, x))


def total_variation(observed: Mapping[Any, int], expected: Mapping[Any, float]) -> float:
    """Total-variation distance between empirical frequencies and exact probabilities."""
    samples = sum(observed.values()) or 1
    keys = set(observed) | set(expected)
    return 0.5 * sum(abs(observed.get(k, 0) / samples - expected.get(k, 0.0)) for k in keys)


def assert_matches_distribution(
    observed: Mapping[Any, int], expected: Mapping[Any, float], *, alpha: float = 1e-4
) -> ChiSquareResult:
    """Fail unless the counts are consistent with the exact distribution.

    Fails when an outcome of probability zero was observed, or when the chi-square test
    rejects at significance ``alpha`` (the probability that this check fails for a
    correct sampler is ``alpha``).
    """
    result = chi_square_test(observed, expected)
    if result.impossible:
        raise AssertionError(f"outcomes with probability 0 were produced: {result.impossible}")
    if result.p_value < alpha:
        worst = sorted(
            expected.items(),
            key=lambda kv: -abs(observed.get(kv[0], 0) - kv[1] * result.samples),
        )[:5]
        table = "\n".join(
            f"  {k}: observed {observed.get(k, 0)}, expected {p * result.samples:.1f}"
            for k, p in worst
        )
        raise AssertionError(
            f"chi-square rejects the target distribution: statistic {result.statistic:.1f}, "
            f"dof {result.dof}, p = {result.p_value:.2e} < alpha = {alpha} "
            f"({result.samples} samples); largest deviations:\n{table}"
        )
    return result

