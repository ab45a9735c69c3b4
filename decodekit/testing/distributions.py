"""Exact output distributions, by full recomputation: the ground truth of the checks.

Nothing here goes through the decode loop: logits come from a from-scratch computation
over the whole sequence (no KV cache, no tree, no padding), so the loop's cached,
tree-shaped forwards are compared against something they cannot influence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from decodekit.model import LanguageModel
from decodekit.testing.reference import reference_penalties, reference_warp

__all__ = ["exact_sequence_distribution", "next_token_logits"]


def next_token_logits(model: LanguageModel, sequence: Sequence[int]) -> list[float]:
    """The model's logits after ``sequence``, computed with no KV cache at all.

    A toy model (:class:`~decodekit.testing.AttentionModel`,
    :class:`~decodekit.testing.MarkovModel`) answers with its ``exact_logits`` method; a
    Hugging Face model (:func:`~decodekit.testing.tiny_llama`) runs one plain forward over
    the whole sequence. Either way the result is independent of the decode loop's cache,
    masks and positions: the reference they are tested against.

    Parameters
    ----------
    model : LanguageModel
        A model with an ``exact_logits(sequence)`` method, or an
        :class:`~decodekit.HFModel`.
    sequence : sequence of int
        Prompt and generated tokens (at least one).

    Returns
    -------
    list of float
        ``V`` logits, as float64 values.
    """
    exact = getattr(model, "exact_logits", None)
    if callable(exact):
        return list(exact(sequence))
    hf = getattr(model, "hf", None)
    if hf is None:
        raise TypeError(f"next_token_logits: no plain forward for {type(model).__name__}")
    with torch.inference_mode():
        ids = torch.tensor([list(sequence)], device=model.device)
        return hf(input_ids=ids).logits[0, -1].double().tolist()


def _logits_of(model: LanguageModel, sequences: list[list[int]]) -> list[list[float]]:
    """:func:`next_token_logits` of every sequence (batched where the model can)."""
    many = getattr(model, "exact_logits_many", None)
    if callable(many):
        return [list(row) for row in many(sequences)]
    return [next_token_logits(model, sequence) for sequence in sequences]


def exact_sequence_distribution(
    model: LanguageModel,
    prompt: Sequence[int],
    length: int,
    **settings: float,
) -> dict[tuple[int, ...], float]:
    """Exact probability of every output of ``length`` tokens under sampling settings.

    Parameters
    ----------
    model : LanguageModel
        Anything :func:`next_token_logits` accepts: a toy model or a small Hugging Face
        model. Every prefix is recomputed from scratch, so keep ``V ** length`` small.
    prompt : sequence of int
    length : int
        Tokens per output; a sequence that hits the model's EOS ends there (shorter key).
    **settings
        :class:`~decodekit.config.SamplingParams` fields (warpers and penalties), applied
        by :func:`~decodekit.testing.reference_penalties` and
        :func:`~decodekit.testing.reference_warp`.

    Returns
    -------
    dict of tuple of int to float
        Every output of nonzero probability and its probability (they sum to 1).
    """
    penalty_keys = ("repetition_penalty", "presence_penalty", "frequency_penalty")
    penalties = {k: settings[k] for k in penalty_keys if k in settings}
    warp = {k: v for k, v in settings.items() if k not in penalty_keys}
    result: dict[tuple[int, ...], float] = {}
    # breadth first: one (batched) recomputation per output length
    frontier: list[tuple[list[int], tuple[int, ...], float]] = [(list(prompt), (), 1.0)]
    while frontier:
        active = []
        for sequence, generated, prob in frontier:
            if len(generated) == length or (generated and generated[-1] in model.eos_token_ids):
                result[generated] = result.get(generated, 0.0) + prob
            else:
                active.append((sequence, generated, prob))
        frontier = []
        all_logits = _logits_of(model, [sequence for sequence, _, _ in active])
        for (sequence, generated, prob), logits in zip(active, all_logits, strict=True):
            if penalties:
                logits = reference_penalties(logits, sequence, len(prompt), **penalties)
            probs = reference_warp(logits, **warp)
            for token, p in enumerate(probs):
                if p > 0.0:
                    frontier.append(([*sequence, token], (*generated, token), prob * p))
    return result
