"""Built-in KV-cache policy ``full``: keep every committed token."""

from __future__ import annotations

from collections.abc import Callable

import torch

from decodekit.contracts import CachePolicy
from decodekit.hookspecs import hookimpl


class FullCache(CachePolicy):
    """Never evicts: attention sees every committed token (exact)."""

    name = "full"
    exact = True

    def evict(self, valid: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | None:
        """Keep everything."""
        return None


@hookimpl
def register_caches(register: Callable[[type[CachePolicy]], None]) -> None:
    """Register the ``full`` cache policy."""
    register(FullCache)


__all__ = ["FullCache"]
