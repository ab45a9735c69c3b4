"""The one place decodekit_kernels imports Triton.

Triton is optional: the torch paths need only torch. ``TRITON_INTERPRET=1`` must be set
before Triton is imported for its kernels to run on CPU tensors (the test suite and
``make test`` set it); then :data:`triton_interpret` is True and the dispatchers accept
CPU tensors for ``backend="triton"``.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["require_triton", "triton_available", "triton_interpret"]

triton: Any
tl: Any
try:
    import triton
    import triton.language as tl

    triton_available = True
except ImportError:  # pragma: no cover - exercised only without triton installed
    triton = None
    tl = None
    triton_available = False

#: Whether Triton kernels run in the interpreter (on CPU tensors, through numpy).
triton_interpret = triton_available and os.environ.get("TRITON_INTERPRET", "0") == "1"


def require_triton(op: str, device: str) -> None:
    """Raise a clear error when ``op`` cannot run on Triton for tensors on ``device``."""
    if not triton_available:
        raise RuntimeError(
            f"{op}: backend='triton' needs Triton: pip install 'decodekit-kernels[triton]'"
        )
    if device != "cuda" and not triton_interpret:
        raise ValueError(
            f"{op}: backend='triton' needs CUDA tensors (got {device}); set "
            "TRITON_INTERPRET=1 before importing triton to run the kernels on CPU"
        )
