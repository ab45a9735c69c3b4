"""Prompts as token ids: what :meth:`~decodekit.Engine.generate` accepts, checked.

A prompt is a text (the chat template applies unless ``raw``), a sequence of token ids,
or an integer tensor (1-D: one prompt; 2-D: one per row). Every check names the prompt
it refuses.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch

from decodekit.contracts import LanguageModel
from decodekit.errors import PromptError
from decodekit.textio import require_utf8

__all__ = ["Prompt", "encode_prompts", "prompt_items"]

#: A text prompt or one prompt's token ids; a 1-D integer tensor works too, and a 2-D one
#: stands for several prompts, one per row.
Prompt = str | Sequence[int]


def encode_prompts(
    model: LanguageModel, prompts: Prompt | Sequence[Prompt], *, raw: bool
) -> list[list[int]]:
    """Token ids per prompt, each checked against the model's vocabulary and context.

    Raises
    ------
    PromptError
        No prompts, an empty one, a token id outside the vocabulary, a non-integer id, or
        a prompt that fills the model's context; the message names the prompt.
    """
    items, _ = prompt_items(prompts)
    if not items:
        raise PromptError("no prompts given")
    rows = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            if not item.strip():
                raise PromptError(f"prompt {index} is empty")
            ids = model.encode(require_utf8(item, f"prompt {index}", PromptError), raw=raw)
        else:
            ids = _token_ids(item, index)
            if not ids:
                raise PromptError(f"prompt {index} is empty")
            bad = [t for t in ids if not 0 <= t < model.vocab_size]
            if bad:
                raise PromptError(
                    f"prompt {index}: token id {bad[0]} is outside the vocabulary "
                    f"(0..{model.vocab_size - 1})"
                )
        if len(ids) >= model.context_length:
            raise PromptError(
                f"prompt {index} is {len(ids)} tokens long; the model's context holds "
                f"{model.context_length} tokens (prompt plus output)"
            )
        rows.append(ids)
    return rows


def prompt_items(prompts: Any) -> tuple[list[Any], bool]:
    """The prompts as a list, and whether the call gave one prompt rather than a list."""
    if isinstance(prompts, torch.Tensor):
        return _tensor_rows(prompts, "prompts"), prompts.dim() == 1
    if _is_single(prompts):
        return [prompts], True
    if isinstance(prompts, bytes) or not isinstance(prompts, Sequence):
        raise PromptError(
            "prompts: expected a string, token ids, a tensor of token ids or a list of "
            f"those, got {type(prompts).__name__}"
        )
    return list(prompts), False


def _tensor_rows(tensor: torch.Tensor, what: str) -> list[list[int]]:
    """Token-id rows of a 1-D (one prompt) or 2-D (one prompt per row) integer tensor."""
    dtype = tensor.dtype
    if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        raise PromptError(f"{what}: a tensor of token ids needs an integer dtype, got {dtype}")
    if tensor.dim() == 1:
        return [tensor.tolist()]
    if tensor.dim() == 2:
        return tensor.tolist()  # type: ignore[no-any-return]
    raise PromptError(
        f"{what}: a tensor of token ids must be 1-D (one prompt) or 2-D (one prompt per "
        f"row), got {tensor.dim()}-D"
    )


def _token_ids(item: Any, index: int) -> list[int]:
    """One prompt's token ids; floats and other non-integers are refused, not truncated."""
    if isinstance(item, torch.Tensor):
        if item.dim() != 1:
            raise PromptError(f"prompt {index}: a tensor prompt must be 1-D, got {item.dim()}-D")
        item = _tensor_rows(item, f"prompt {index}")[0]
    if not isinstance(item, Sequence):
        raise PromptError(
            f"prompt {index}: expected a string or token ids, got {type(item).__name__}"
        )
    try:
        return [operator.index(t) for t in item]
    except TypeError:
        bad = next(t for t in item if not hasattr(t, "__index__"))
        raise PromptError(
            f"prompt {index}: token ids must be integers, got {type(bad).__name__}"
        ) from None


def _is_single(prompts: Any) -> bool:
    if isinstance(prompts, str):
        return True
    return bool(prompts) and isinstance(prompts, Sequence) and isinstance(prompts[0], int)
