"""A small interpolated n-gram model over token ids, for superposed decoding's filter."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

__all__ = ["NGramModel"]


class NGramModel:
    """Counts of token n-grams (orders 2 to ``order``) from one or more token sequences.

    :meth:`prob` interpolates the orders whose context was seen, weighting order ``n`` by
    ``n - 1`` (longer matches count more), and returns None when no context was seen:
    then the model has no opinion and superposed decoding keeps the language model's
    probability unchanged.

    Parameters
    ----------
    order : int
        Longest n-gram, ``>= 2``.
    """

    def __init__(self, order: int = 4) -> None:
        if order < 2:
            raise ValueError(f"NGramModel: order must be >= 2, got {order}")
        self.order = order
        self.counts: dict[tuple[int, ...], Counter[int]] = {}
        self.totals: dict[tuple[int, ...], int] = {}
        self.tokens_seen = 0

    def add(self, tokens: Sequence[int]) -> NGramModel:
        """Count every n-gram of ``tokens`` (orders 2 to ``order``); returns self."""
        tokens = list(tokens)
        self.tokens_seen += len(tokens)
        for n in range(2, self.order + 1):
            for i in range(len(tokens) - n + 1):
                context = tuple(tokens[i : i + n - 1])
                self.counts.setdefault(context, Counter())[tokens[i + n - 1]] += 1
                self.totals[context] = self.totals.get(context, 0) + 1
        return self

    def prob(self, context: Sequence[int], token: int,
             extra: NGramModel | None = None) -> float | None:
        """``p(token | context)`` interpolated over seen orders, or None if none was seen.

        Parameters
        ----------
        context : sequence of int
            The tokens before ``token`` (only the last ``order - 1`` matter).
        token : int
        extra : NGramModel or None
            A second model whose counts add to this one's (the prompt's n-grams on top
            of a corpus, without copying the corpus tables).
        """
        total_weight, mixed = 0.0, 0.0
        for n in range(2, self.order + 1):
            if len(context) < n - 1:
                break
            key = tuple(context[len(context) - (n - 1) :])
            seen, count = 0, 0
            for model in (self, extra):
                if model is not None and key in model.totals:
                    seen += model.totals[key]
                    count += model.counts[key][token]
            if seen:
                weight = float(n - 1)
                total_weight += weight
                mixed += weight * count / seen
        return mixed / total_weight if total_weight else None
