"""``apply_token_bitmask``: mask the tokens a constraint forbids, in place.

Semantics (the packed format llguidance, xgrammar and outlines-core share)::

    for r in (indices if indices is not None else range(rows)):
        for t in range(V):
            allowed = t < 32 * W and (bitmask[r, t // 32] >> (t % 32)) & 1
            if not allowed:
                logits[r, t] = -inf

Logits wider than the bitmask (a model whose vocabulary is padded past the tokenizer's)
have their extra tokens masked: a constraint never allows a token it cannot name. Bits
past ``V`` are ignored.
"""

from __future__ import annotations

from typing import Literal

import torch

from decodekit_kernels._checks import FLOAT_DTYPES, check_tensor, resolve_backend

__all__ = ["apply_token_bitmask", "unpack_bitmask"]

Backend = Literal["auto", "reference", "torch", "triton"]


def apply_token_bitmask(
    logits: torch.Tensor,
    bitmask: torch.Tensor,
    *,
    indices: torch.Tensor | list[int] | None = None,
    check_nonempty: bool = True,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Set ``logits[r, t]`` to ``-inf`` for every token the bitmask disallows.

    Parameters
    ----------
    logits : FloatTensor ``[rows, V]``
        float32, float16 or bfloat16, modified in place; any strides.
    bitmask : IntTensor ``[rows, W]``
        int32 words; bit ``j`` of word ``w`` allows token ``32 * w + j``.
    indices : LongTensor ``[n]`` or list of int, optional
        Apply only to these rows (of both tensors); None means every row.
    check_nonempty : bool
        Raise ValueError naming the first row left with no allowed token.
    backend : {"auto", "reference", "torch", "triton"}

    Returns
    -------
    FloatTensor ``[rows, V]``
        ``logits`` itself.

    Examples
    --------
    >>> import torch, decodekit_kernels as K
    >>> logits = torch.zeros(1, 4)
    >>> K.apply_token_bitmask(logits, torch.tensor([[0b0101]], dtype=torch.int32)).tolist()
    [[0.0, -inf, 0.0, -inf]]
    """
    op = "apply_token_bitmask"
    check_tensor(op, "logits", logits, ndim=2, dtypes=FLOAT_DTYPES)
    check_tensor(op, "bitmask", bitmask, ndim=2, dtypes=(torch.int32,), device=logits.device)
    if bitmask.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{op}: bitmask has {bitmask.shape[0]} rows but the logits have {logits.shape[0]}"
        )
    index: torch.Tensor | None = None
    if indices is not None:
        index = torch.as_tensor(indices, dtype=torch.long, device=logits.device).reshape(-1)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= logits.shape[0]):
            raise ValueError(f"{op}: indices must lie in [0, {logits.shape[0]})")
    chosen = resolve_backend(op, backend, logits.device)
    if chosen == "reference":
        from decodekit_kernels.apply_token_bitmask import reference

        rows = range(logits.shape[0]) if index is None else index.tolist()
        reference.apply_token_bitmask(logits, bitmask, list(rows))
    elif chosen == "triton":
        from decodekit_kernels._triton import require_triton

        require_triton(op, logits.device.type)
        from decodekit_kernels.apply_token_bitmask import triton as triton_impl

        triton_impl.apply_token_bitmask(logits, bitmask, index)
    else:
        from decodekit_kernels.apply_token_bitmask import vectorized

        vectorized.apply_token_bitmask(logits, bitmask, index)
    if check_nonempty:
        rows_checked = logits if index is None else logits.index_select(0, index)
        empty = ~(rows_checked > float("-inf")).any(-1)
        if bool(empty.any()):
            first = int(empty.nonzero()[0])
            row = first if index is None else int(index[first])
            raise ValueError(f"{op}: the bitmask allows no token in row {row}")
    return logits


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Allowed tokens ``BoolTensor[rows, vocab_size]`` of a packed bitmask ``int32[rows, W]``."""
    from decodekit_kernels.apply_token_bitmask.vectorized import unpack

    return unpack(bitmask, vocab_size)
