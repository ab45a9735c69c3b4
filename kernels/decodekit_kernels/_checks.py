"""Input checks shared by the ops: clear errors that name the argument and the row."""

from __future__ import annotations

from collections.abc import Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BACKENDS = ("auto", "reference", "torch", "triton")


def check_backend(op: str, backend: str) -> None:
    """Raise ValueError for an unknown backend name, listing the valid ones."""
    if backend not in BACKENDS:
        raise ValueError(f"{op}: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def resolve_backend(op: str, backend: str, device: torch.device) -> str:
    """``auto`` means Triton for CUDA tensors (when installed) and torch otherwise."""
    check_backend(op, backend)
    if backend != "auto":
        return backend
    from decodekit_kernels._triton import triton_available

    return "triton" if device.type == "cuda" and triton_available else "torch"


def check_tensor(
    op: str,
    name: str,
    tensor: object,
    *,
    ndim: int,
    dtypes: Sequence[torch.dtype],
    device: torch.device | None = None,
) -> torch.Tensor:
    """Check a tensor's type, rank, dtype and device; return it."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.ndim != ndim:
        raise ValueError(
            f"{op}: {name} must have {ndim} dimensions, got shape {tuple(tensor.shape)}"
        )
    if tensor.dtype not in dtypes:
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise TypeError(f"{op}: {name} must be one of {names}, got {tensor.dtype}")
    if device is not None and tensor.device != device:
        raise ValueError(f"{op}: {name} is on {tensor.device} but the logits are on {device}")
    return tensor


def check_shape(op: str, name: str, tensor: torch.Tensor, shape: Sequence[int]) -> None:
    """Raise ValueError unless ``tensor.shape == shape``."""
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {tuple(tensor.shape)}")


def check_finite_logits(op: str, logits: torch.Tensor) -> torch.Tensor:
    """NaN or +inf logits are errors (naming the first bad row); -inf means masked.

    One pass: the row maxima ``[rows]`` (NaN propagates through ``amax``), which are
    returned; a maximum of ``-inf`` marks a row with no allowed token.
    """
    top = logits.amax(-1)
    bad = torch.isnan(top) | (top == float("inf"))
    if bool(bad.any()):
        row = int(bad.nonzero()[0])
        what = "NaN" if bool(torch.isnan(top[row])) else "+inf"
        raise ValueError(f"{op}: row {row} of the logits contains {what}")
    return top


def per_row(
    op: str,
    name: str,
    value: float | int | torch.Tensor,
    rows: int,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """A scalar or ``[rows]`` tensor parameter as a ``[rows]`` tensor."""
    if isinstance(value, torch.Tensor):
        if value.ndim == 0:
            return value.to(dtype=dtype, device=device).expand(rows).contiguous()
        if tuple(value.shape) != (rows,):
            raise ValueError(
                f"{op}: {name} must be a scalar or have shape ({rows},), got {tuple(value.shape)}"
            )
        return value.to(dtype=dtype, device=device).contiguous()
    return torch.full((rows,), value, dtype=dtype, device=device)
