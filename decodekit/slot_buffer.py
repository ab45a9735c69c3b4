"""A transformers cache layer whose keys and values live in a buffer written in place.

:class:`decodekit.model.HFCache` builds one per attention layer of models whose layers
all attend to the whole sequence; the decode loop's slot bookkeeping (validity, holes,
compaction) stays in :class:`decodekit.model.SlotCache`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

__all__ = ["SlotLayer", "gather_slots", "select_rows", "supports_slot_layers", "trim_slots"]


def supports_slot_layers(config: Any) -> bool:
    """Whether every attention layer of ``config`` attends to the whole sequence.

    Sliding-window and linear-attention layers keep other state, so models with any of
    them keep transformers' own cache layers.
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text, "sliding_window", None) is not None:
        return False
    kinds = getattr(text, "layer_types", None)
    return kinds is None or all(kind == "full_attention" for kind in kinds)


class SlotLayer(DynamicLayer):
    """One attention layer's keys and values in a buffer written in place.

    transformers' ``DynamicLayer`` grows by ``torch.cat``, which copies the whole layer
    every step. This layer keeps a buffer ``[rows, heads, capacity, head_dim]`` that
    grows geometrically and exposes the used slots as views (``keys``, ``values``), so a
    step writes only its own slots; trimming trailing holes moves a length, and only
    forks (row selection) and compaction copy.
    """

    #: The first buffer holds at least this many slots.
    min_capacity = 64

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Allocate an empty buffer shaped like the first keys and values."""
        self.device = key_states.device
        self.length = 0
        self._keys = key_states.new_empty((*key_states.shape[:2], 0, key_states.shape[3]))
        self._values = value_states.new_empty((*value_states.shape[:2], 0, value_states.shape[3]))
        self._expose()
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the step's keys and values after the used slots; return every used slot."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        self._reserve(end)
        self._keys[:, :, self.length : end].copy_(key_states)
        self._values[:, :, self.length : end].copy_(value_states)
        self.length = end
        self._expose()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        """The number of used slots."""
        return self.length if self.is_initialized else 0

    @torch.inference_mode()  # the buffers are inference tensors (made in the forward)
    def trim(self, length: int) -> None:
        """Forget the slots from ``length`` on (no copy)."""
        self.length = min(self.length, length)
        self._expose()

    @torch.inference_mode()  # the buffers are inference tensors (made in the forward)
    def gather(self, order: torch.Tensor) -> None:
        """Compact: new slot ``j`` of row ``r`` is old slot ``order[r, j]`` (``[rows, S']``)."""
        index = order[:, None, :, None].expand(-1, self._keys.shape[1], -1, self._keys.shape[3])
        width = order.shape[1]
        self._keys[:, :, :width] = self.keys.gather(2, index)
        self._values[:, :, :width] = self.values.gather(2, index)
        self.length = width
        self._expose()

    @torch.inference_mode()  # the buffers are inference tensors (made in the forward)
    def select(self, rows: torch.Tensor) -> None:
        """Keep, fork or reorder rows: new row ``r`` is old row ``rows[r]``."""
        self._keys = self._keys.index_select(0, rows)
        self._values = self._values.index_select(0, rows)
        self._expose()

    def _reserve(self, needed: int) -> None:
        capacity = self._keys.shape[2]
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity, self.min_capacity)
        for name in ("_keys", "_values"):
            old = getattr(self, name)
            new = old.new_empty((*old.shape[:2], capacity, old.shape[3]))
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)

    def _expose(self) -> None:
        self.keys = self._keys[:, :, : self.length]
        self.values = self._values[:, :, : self.length]


# The three slot operations of HFCache, for slot layers and for transformers' own layers
# (which a model with sliding-window or linear-attention layers keeps).


def gather_slots(layer: Any, order: torch.Tensor) -> None:
    """Reorder a layer's slots per row: new slot ``j`` of row ``r`` is old ``order[r, j]``."""
    if isinstance(layer, SlotLayer):
        layer.gather(order)
        return
    index = order[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
    layer.keys = layer.keys.gather(2, index)
    layer.values = layer.values.gather(2, index)


def trim_slots(layer: Any, length: int) -> None:
    """Drop a layer's slots from ``length`` on."""
    if isinstance(layer, SlotLayer):
        layer.trim(length)
        return
    layer.keys = layer.keys[:, :, :length, :]
    layer.values = layer.values[:, :, :length, :]


def select_rows(layer: Any, rows: torch.Tensor) -> None:
    """Keep, fork or reorder a layer's rows: new row ``r`` is old row ``rows[r]``."""
    if isinstance(layer, SlotLayer):
        layer.select(rows)
        return
    layer.keys = layer.keys.index_select(0, rows)
    layer.values = layer.values.index_select(0, rows)
