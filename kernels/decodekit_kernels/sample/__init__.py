"""``sample``: one token per row from temperature / top-k / top-p / min-p truncated logits.

Semantics, per row ``r`` (Hugging Face's order)::

    x = logits[r] / temperature[r]                       # temperature 0: argmax(logits[r])
    keep = x > -inf
    if 0 < top_k[r] < V:  keep &= x >= kth_largest(x, top_k[r])          # ties kept
    w = exp(x - max(x[keep])) * keep
    if top_p[r] < 1:      keep &= sum(w[x > x_t]) < top_p[r] * sum(w)    # for each token t
    if min_p[r] > 0:      keep &= w >= min_p[r]                          # relative to the top
    token = argmax_t over keep of  x_t + G(seeds[r], 0, t)               # Gumbel-max

``G`` is the counter-based Gumbel noise of :mod:`decodekit_kernels._noise`, so the token is
an exact sample of the truncated, renormalized distribution
(:func:`probs_after_sampling_params`), and every backend returns the same token for the
same seeds. Parameters are scalars or per-row tensors ``[rows]``.
"""

from __future__ import annotations

from typing import Literal

import torch

from decodekit_kernels._checks import (
    FLOAT_DTYPES,
    check_finite_logits,
    check_tensor,
    per_row,
    resolve_backend,
)

__all__ = ["probs_after_sampling_params", "sample"]

Backend = Literal["auto", "reference", "torch", "triton"]
Param = float | int | torch.Tensor


def _prepare(
    op: str,
    logits: torch.Tensor,
    temperature: Param,
    top_k: Param,
    top_p: Param,
    min_p: Param,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    check_tensor(op, "logits", logits, ndim=2, dtypes=FLOAT_DTYPES)
    rows, device = logits.shape[0], logits.device
    t = per_row(op, "temperature", temperature, rows, torch.float32, device)
    k = per_row(op, "top_k", top_k, rows, torch.int32, device)
    p = per_row(op, "top_p", top_p, rows, torch.float32, device)
    m = per_row(op, "min_p", min_p, rows, torch.float32, device)
    if bool((t < 0).any()) or not bool(torch.isfinite(t).all()):
        raise ValueError(f"{op}: temperature must be finite and >= 0")
    if bool((k < 0).any()):
        raise ValueError(f"{op}: top_k must be >= 0 (0 turns it off)")
    if bool(((p <= 0) | (p > 1)).any()):
        raise ValueError(f"{op}: top_p must be in (0, 1]")
    if bool(((m < 0) | (m > 1)).any()):
        raise ValueError(f"{op}: min_p must be in [0, 1]")
    empty = check_finite_logits(op, logits) == float("-inf")
    if bool(empty.any()):
        raise ValueError(f"{op}: row {int(empty.nonzero()[0])} allows no token (all logits -inf)")
    return t, k, p, m


def sample(
    logits: torch.Tensor,
    seeds: torch.Tensor,
    *,
    temperature: Param = 1.0,
    top_k: Param = 0,
    top_p: Param = 1.0,
    min_p: Param = 0.0,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Draw one token per row.

    Parameters
    ----------
    logits : FloatTensor ``[rows, V]``
        float32, float16 or bfloat16; any strides. ``-inf`` masks a token; NaN and
        ``+inf`` are errors.
    seeds : LongTensor ``[rows]``
        The randomness: one int64 seed per row (see :mod:`decodekit_kernels._noise`);
        on the logits' device or on the CPU.
    temperature : float or FloatTensor ``[rows]``
        ``> 0``, or 0 for argmax (lowest index on ties).
    top_k : int or IntTensor ``[rows]``
        Keep the ``k`` largest logits (ties at the k-th kept); 0 turns it off.
    top_p : float or FloatTensor ``[rows]``
        In ``(0, 1]``; 1 turns it off.
    min_p : float or FloatTensor ``[rows]``
        In ``[0, 1]``; 0 turns it off.
    backend : {"auto", "reference", "torch", "triton"}
        ``auto``: Triton for CUDA tensors, the vectorized torch path otherwise.

    Returns
    -------
    LongTensor ``[rows]``

    Examples
    --------
    >>> import torch, decodekit_kernels as K
    >>> logits = torch.tensor([[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]])
    >>> K.sample(logits, torch.tensor([1, 2]), temperature=0.0).tolist()
    [1, 0]
    """
    op = "sample"
    t, k, p, m = _prepare(op, logits, temperature, top_k, top_p, min_p)
    check_tensor(op, "seeds", seeds, ndim=1, dtypes=(torch.int64,))
    if seeds.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{op}: seeds must have shape ({logits.shape[0]},), got {tuple(seeds.shape)}"
        )
    if seeds.device != logits.device and seeds.device.type != "cpu":
        raise ValueError(f"{op}: seeds is on {seeds.device} but the logits are on {logits.device}")
    seeds = seeds.to(logits.device)
    chosen = resolve_backend(op, backend, logits.device)
    if chosen == "reference":
        from decodekit_kernels.sample import reference

        return reference.sample(logits, seeds, t, k, p, m)
    if chosen == "triton":
        from decodekit_kernels._triton import require_triton

        require_triton(op, logits.device.type)
        from decodekit_kernels.sample import triton as triton_impl

        return triton_impl.sample(logits, seeds.contiguous(), t, k, p, m)
    from decodekit_kernels.sample import vectorized

    return vectorized.sample(logits, seeds, t, k, p, m)


def probs_after_sampling_params(
    logits: torch.Tensor,
    *,
    temperature: Param = 1.0,
    top_k: Param = 0,
    top_p: Param = 1.0,
    min_p: Param = 0.0,
    backend: Backend = "auto",
) -> torch.Tensor:
    """The exact distribution :func:`sample` draws from: float32 ``[rows, V]``.

    Parameters are those of :func:`sample`; a row with temperature 0 is one-hot on its
    argmax. Speculative verifiers use it for target and draft distributions.
    """
    op = "probs_after_sampling_params"
    t, k, p, m = _prepare(op, logits, temperature, top_k, top_p, min_p)
    chosen = resolve_backend(op, backend, logits.device)
    if chosen == "reference":
        from decodekit_kernels.sample import reference

        return reference.probs_after_sampling_params(logits, t, k, p, m)
    if chosen == "triton":
        from decodekit_kernels._triton import require_triton

        require_triton(op, logits.device.type)
        from decodekit_kernels.sample import triton as triton_impl

        return triton_impl.probs_after_sampling_params(logits, t, k, p, m)
    from decodekit_kernels.sample import vectorized

    return vectorized.probs_after_sampling_params(logits, t, k, p, m)
