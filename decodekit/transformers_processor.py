"""Transformers logits processors as decodekit processors, exact on draft trees.

:class:`TransformersProcessor` wraps a transformers ``LogitsProcessor`` (anything called
as ``processor(input_ids, scores)``) so it runs as a decodekit processor: each node of a
draft tree is processed with its own history (committed tokens plus its draft
ancestors). :meth:`decodekit.Engine.generate` accepts such objects directly through its
``logits_processors`` argument; :mod:`decodekit.hf` re-exports both names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from decodekit.contracts import DecodeView, DraftTree, LogitsProcessor
from decodekit.tree import node_histories

__all__ = ["TransformersProcessor", "as_processor"]


class TransformersProcessor(LogitsProcessor):
    """A transformers ``LogitsProcessor`` (or a list of them) as a decodekit processor.

    Parameters
    ----------
    processor : callable
        Called as ``processor(input_ids LongTensor[1, T], scores FloatTensor[1, V])`` and
        returning new scores, like every transformers ``LogitsProcessor`` and
        ``LogitsProcessorList``.

    Notes
    -----
    transformers processors see one history per call, so each (row, node) is processed
    separately: exact for any processor, at the cost of one call per node.
    """

    name = "transformers"

    def __init__(self, processor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        if not callable(processor):
            raise TypeError(f"expected a transformers LogitsProcessor, got {processor!r}")
        self.processor = processor

    def __call__(
        self, logits: torch.Tensor, view: DecodeView, draft: DraftTree | None
    ) -> torch.Tensor:
        """Process ``logits [rows, 1 + N, V]`` node by node with each node's history."""
        rows, nodes, vocab = logits.shape
        histories, _ = node_histories(view, draft)
        flat = logits.reshape(rows * nodes, vocab)
        out = torch.empty_like(flat)
        for index, history in enumerate(histories):
            ids = torch.tensor([history], dtype=torch.long, device=logits.device)
            out[index] = self.processor(ids, flat[index : index + 1].clone())[0]
        return out.view(rows, nodes, vocab)


def as_processor(obj: Any) -> LogitsProcessor:
    """A decodekit processor for ``obj``: itself if it is one, else a transformers wrapper."""
    if isinstance(obj, LogitsProcessor):
        return obj
    return TransformersProcessor(obj)
