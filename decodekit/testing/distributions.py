"""Exact output distributions, by full recomputation: the ground truth of the checks.

Nothing here goes through the decode loop: logits come from a from-scratch computation
over the whole sequence (no KV cache, no tree, no padding), so the loop's cached,
tree-shaped forwards are compared against something they cannot influence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from decodekit.model import LanguageModel
from decodekit.testing.models import MarkovModel
from decodekit.testing.reference import reference_penalties, reference_warp

__all__ = ["exact_sequence_distribution", "next_token_logits"]


def next_token_logits(model: LanguageModel, sequence: Sequence[int]) -> list[float]:
    """The model's logits after ``sequence``, computed with no KV cache at all.

    A :class:`MarkovModel` reads its table; a Hugging Face model (:func:`tiny_llama`) runs
    one plain forward over the whole sequence, so the result is independent of the
    decode loop's cache, masks and positions: the reference they are tested against.
    """
    if isinstance(model, MarkovModel):
        return model.log_probs[sequence[-1]].double().tolist()
    hf = getattr(model, "hf", None)
    if hf is None:
        raise TypeError(f"next_token_logits: no plain forward for {type(model).__name__}")
    with torch.inference_mode():
        ids = torch.tensor([list(sequence)], device=model.device)
        return hf(input_ids=ids).logits[0, -1].double().tolist()


def exact_sequence_distribution(
    model: LanguageModel,
    prompt: Sequence[int],
    length: int,
    **settings: float,
) -> dict[tuple[int, ...], float]:
    """Exact probability of every output of ``length`` tokens under sampling settings.

    ``settings`` are :class:`~decodekit.config.SamplingParams` fields (warpers and
    penalties). A sequence that hits the model's EOS ends there (shorter key). The model
    is a :class:`MarkovModel` or a small Hugging Face model such as :func:`tiny_llama`
    (with real attention, positions and a cache; its logits come from
    :func:`next_token_logits`): keep ``V ** length`` small.
    """
    penalty_keys = ("repetition_penalty", "presence_penalty", "frequency_penalty")
    penalties = {k: settings[k] for k in penalty_keys if k in settings}
    warp = {k: v for k, v in settings.items() if k not in penalty_keys}
    result: dict[tuple[int, ...], float] = {}

    def extend(sequence: list[int], generated: tuple[int, ...], prob: float) -> None:
        if len(generated) == length or (generated and generated[-1] in model.eos_token_ids):
            result[generated] = result.get(generated, 0.0) + prob
            return
        logits = next_token_logits(model, sequence)
        if penalties:
            logits = reference_penalties(logits, sequence, len(prompt), **penalties)
        probs = reference_warp(logits, **warp)
        for token, p in enumerate(probs):
            if p > 0.0:
                extend([*sequence, token], (*generated, token), prob * p)

    extend(list(prompt), (), 1.0)
    return result
