"""``penalties``: repetition, presence and frequency penalties from each row's history.

Semantics, per row ``r`` (CTRL's repetition penalty; presence and frequency as in vLLM
and the OpenAI API, counting generated tokens only)::

    seen[t] = seen_counts[c, t] + count of t in history[r]    (where history_mask[r])
    gen[t]  = generated_counts[c, t] + count of t in history[r][prompt_lengths[r]:]
    if seen[t] > 0:  x[t] = x[t] / rep[r] if x[t] > 0 else x[t] * rep[r]
    x[t] -= presence[r] * (gen[t] > 0) + frequency[r] * gen[t]

with ``c = count_rows[r]``; without counts, both start at 0. Counts let a caller keep
each sequence's token counts as it grows (one scatter per new token) and pass only what
a row adds on top, such as a draft node's ancestors, as its history: the cost no longer
grows with the sequence. Parameters are scalars or per-row tensors. The result is a new
tensor of the logits' dtype (the math runs in float32).
"""

from __future__ import annotations

from typing import Literal

import torch

from decodekit_kernels._checks import (
    FLOAT_DTYPES,
    check_finite_logits,
    check_shape,
    check_tensor,
    per_row,
    resolve_backend,
)

__all__ = ["penalties"]

Backend = Literal["auto", "reference", "torch", "triton"]


def penalties(
    logits: torch.Tensor,
    token_ids: torch.Tensor,
    *,
    repetition_penalty: float | torch.Tensor = 1.0,
    presence_penalty: float | torch.Tensor = 0.0,
    frequency_penalty: float | torch.Tensor = 0.0,
    history_mask: torch.Tensor | None = None,
    prompt_lengths: torch.Tensor | None = None,
    seen_counts: torch.Tensor | None = None,
    generated_counts: torch.Tensor | None = None,
    count_rows: torch.Tensor | None = None,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Penalize each row's logits by its token history.

    Parameters
    ----------
    logits : FloatTensor ``[rows, V]``
        float32, float16 or bfloat16; any strides. ``-inf`` (a masked token) stays
        ``-inf``; NaN and ``+inf`` are errors.
    token_ids : LongTensor ``[rows, T]``
        Each row's history (prompt then generated tokens), right-padded.
    repetition_penalty : float or FloatTensor ``[rows]``
        ``> 0``; 1 is off.
    presence_penalty, frequency_penalty : float or FloatTensor ``[rows]``
        0 is off.
    history_mask : BoolTensor ``[rows, T]``, optional
        False marks padding; None means every position counts.
    prompt_lengths : LongTensor ``[rows]``, optional
        Prompt tokens at the start of each history; None means 0 (all generated).
    seen_counts, generated_counts : IntTensor ``[C, V]``, optional
        Occurrences counted already, of any token and of generated tokens, per counts
        row; given together (int32 or int64), with ``0 <= generated <= seen``.
    count_rows : IntTensor ``[rows]``, optional
        The counts row of each logits row (several rows may share one); None means
        row ``r`` uses counts row ``r`` (then ``C == rows``).
    backend : {"auto", "reference", "torch", "triton"}

    Returns
    -------
    FloatTensor ``[rows, V]``

    Examples
    --------
    >>> import torch, decodekit_kernels as K
    >>> K.penalties(torch.tensor([[2.0, -2.0, 1.0]]), torch.tensor([[0, 1]]),
    ...             repetition_penalty=2.0).tolist()
    [[1.0, -4.0, 1.0]]
    """
    op = "penalties"
    check_tensor(op, "logits", logits, ndim=2, dtypes=FLOAT_DTYPES)
    rows, vocab = logits.shape
    device = logits.device
    check_tensor(
        op, "token_ids", token_ids, ndim=2, dtypes=(torch.int64, torch.int32), device=device
    )
    if token_ids.shape[0] != rows:
        raise ValueError(f"{op}: token_ids has {token_ids.shape[0]} rows, the logits {rows}")
    token_ids = token_ids.long()
    if history_mask is None:
        history_mask = torch.ones(token_ids.shape, dtype=torch.bool, device=device)
    check_tensor(op, "history_mask", history_mask, ndim=2, dtypes=(torch.bool,), device=device)
    check_shape(op, "history_mask", history_mask, token_ids.shape)
    if token_ids.numel() and bool(
        (history_mask & ((token_ids < 0) | (token_ids >= vocab))).any()
    ):
        raise ValueError(f"{op}: token_ids must lie in [0, {vocab}) where history_mask is set")
    token_ids = torch.where(history_mask, token_ids, 0)
    lengths = per_row(op, "prompt_lengths", 0 if prompt_lengths is None else prompt_lengths,
                      rows, torch.int64, device)
    rep = per_row(op, "repetition_penalty", repetition_penalty, rows, torch.float32, device)
    pres = per_row(op, "presence_penalty", presence_penalty, rows, torch.float32, device)
    freq = per_row(op, "frequency_penalty", frequency_penalty, rows, torch.float32, device)
    check_finite_logits(op, logits)
    if bool((rep <= 0).any()):
        raise ValueError(f"{op}: repetition_penalty must be > 0")
    base = _base_counts(op, seen_counts, generated_counts, count_rows, rows, vocab, device)
    chosen = resolve_backend(op, backend, device)
    args = (logits, token_ids, history_mask, lengths, rep, pres, freq)
    if chosen == "reference":
        from decodekit_kernels.penalties import reference

        return reference.penalties(*args, base=base)
    if chosen == "triton":
        from decodekit_kernels._triton import require_triton

        require_triton(op, device.type)
        from decodekit_kernels.penalties import triton as triton_impl

        return triton_impl.penalties(*args, base=base)
    from decodekit_kernels.penalties import vectorized

    return vectorized.penalties(*args, base=base)


def _base_counts(
    op: str,
    seen: torch.Tensor | None,
    generated: torch.Tensor | None,
    count_rows: torch.Tensor | None,
    rows: int,
    vocab: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The counts each logits row starts from: fresh int32 ``[rows, V]`` tensors, or None.

    Fresh, so a backend may add a row's history to them in place.
    """
    if seen is None and generated is None:
        if count_rows is not None:
            raise ValueError(f"{op}: count_rows needs seen_counts and generated_counts")
        return None
    if seen is None or generated is None:
        raise ValueError(f"{op}: seen_counts and generated_counts are given together")
    integers = (torch.int32, torch.int64)
    for name, counts in (("seen_counts", seen), ("generated_counts", generated)):
        check_tensor(op, name, counts, ndim=2, dtypes=integers, device=device)
        if counts.shape[1] != vocab:
            raise ValueError(f"{op}: {name} covers {counts.shape[1]} tokens, the logits {vocab}")
    check_shape(op, "generated_counts", generated, seen.shape)
    if seen.numel() and bool((generated < 0).any() | (generated > seen).any()):
        raise ValueError(
            f"{op}: generated_counts must lie in [0, seen_counts] (generated tokens are "
            "seen tokens too)"
        )
    if count_rows is None:
        if seen.shape[0] != rows:
            raise ValueError(
                f"{op}: seen_counts has {seen.shape[0]} rows, the logits {rows}; "
                "pass count_rows to map logits rows to counts rows"
            )
        return seen.to(torch.int32, copy=True), generated.to(torch.int32, copy=True)
    check_tensor(op, "count_rows", count_rows, ndim=1, dtypes=integers, device=device)
    check_shape(op, "count_rows", count_rows, (rows,))
    if rows and bool(((count_rows < 0) | (count_rows >= seen.shape[0])).any()):
        raise ValueError(f"{op}: count_rows must lie in [0, {seen.shape[0]})")
    index = count_rows.long()
    return (seen.index_select(0, index).to(torch.int32),
            generated.index_select(0, index).to(torch.int32))
