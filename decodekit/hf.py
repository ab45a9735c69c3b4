"""Hugging Face transformers integration, both ways.

- :func:`custom_generate` makes any decodekit strategy usable from transformers::

      fn = decodekit.hf.custom_generate("contrastive", top_k=4, alpha=0.6)
      model.generate(input_ids, max_new_tokens=32, custom_generate=fn)

  transformers 5.x accepts a callable as ``custom_generate`` and calls it with the model,
  the prepared ``input_ids`` (left-padded for batches), its logits processors and stopping
  criteria, the generation config and the model kwargs (``attention_mask``, ...).
- :class:`TransformersProcessor` wraps a transformers ``LogitsProcessor`` (anything called
  as ``processor(input_ids, scores)``) so it runs as a decodekit processor, on draft trees
  too: each node is processed with its own history (committed tokens plus its draft
  ancestors). :meth:`decodekit.Engine.generate` accepts such objects directly through its
  ``logits_processors`` argument.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from decodekit.transformers_processor import TransformersProcessor, as_processor

__all__ = ["TransformersProcessor", "as_processor", "custom_generate"]


def _prompts(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> list[list[int]]:
    """Token ids per row without the padding transformers put on the left."""
    rows = []
    for r in range(input_ids.shape[0]):
        ids = input_ids[r]
        if attention_mask is not None:
            ids = ids[attention_mask[r].bool()]
        rows.append([int(t) for t in ids])
    return rows


def custom_generate(strategy: str, **params: Any) -> Callable[..., torch.Tensor]:
    """A ``custom_generate`` callable for transformers' ``generate`` that runs ``strategy``.

    Parameters
    ----------
    strategy : str
        An installed decodekit strategy.
    **params
        Its parameters, and generation-config fields (``seed``, ``stop``, ``constraint``);
        ``max_new_tokens`` defaults to the transformers generation config's.

    Returns
    -------
    callable
        ``fn(model, input_ids, logits_processor, stopping_criteria, generation_config,
        **model_kwargs) -> LongTensor[rows, T + new]``: the prompts followed by the new
        tokens, rows padded on the right with the pad (else EOS) token id. A strategy that
        returns several sequences per prompt contributes its first (best) one.

    Notes
    -----
    The transformers logits processors built from the generation config (and any passed
    to ``generate``) run as decodekit processors before the strategy's own warping;
    stopping criteria other than EOS and ``max_new_tokens`` are not applied.

    Examples
    --------
    >>> fn = custom_generate("greedy")
    >>> out = model.generate(input_ids, max_new_tokens=16, custom_generate=fn)
    """
    from decodekit.plugins import get_strategy

    get_strategy(strategy)  # unknown names fail here, listing the installed ones

    def generate(
        model: Any,
        input_ids: torch.Tensor,
        logits_processor: Sequence[Any] | None = None,
        stopping_criteria: Any = None,
        generation_config: Any = None,
        **model_kwargs: Any,
    ) -> torch.Tensor:
        from decodekit.engine import Engine
        from decodekit.model import HFModel

        engine = Engine(HFModel(model, None))
        prompts = _prompts(input_ids, model_kwargs.get("attention_mask"))
        settings = dict(params)
        if "max_new_tokens" not in settings and generation_config is not None:
            limit = generation_config.max_new_tokens
            if limit is None and generation_config.max_length is not None:
                limit = generation_config.max_length - input_ids.shape[1]
            if limit is not None:
                settings["max_new_tokens"] = int(limit)
        processors = [TransformersProcessor(logits_processor)] if logits_processor else []
        result = engine.run(
            engine.request(prompts, strategy=strategy, logits_processors=processors, **settings)
        )
        first: dict[int, list[int]] = {}
        for completion in result.completions:
            first.setdefault(completion.prompt_index, completion.token_ids)
        new = [first.get(r, []) for r in range(len(prompts))]
        pad = _pad_id(generation_config, engine.model.eos_token_ids)
        width = max((len(tokens) for tokens in new), default=0)
        tail = torch.full((len(new), width), pad, dtype=input_ids.dtype, device=input_ids.device)
        for r, tokens in enumerate(new):
            tail[r, : len(tokens)] = torch.tensor(tokens, dtype=input_ids.dtype)
        return torch.cat([input_ids, tail], dim=1)

    generate.__name__ = f"decodekit_{strategy}"
    return generate


def _pad_id(generation_config: Any, eos: frozenset[int]) -> int:
    pad = getattr(generation_config, "pad_token_id", None)
    if isinstance(pad, int):
        return pad
    return min(eos) if eos else 0
