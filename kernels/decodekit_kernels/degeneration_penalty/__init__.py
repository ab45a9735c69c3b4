"""``degeneration_penalty``: contrastive search's candidate scores (Su et al., 2022).

Semantics, per row ``r`` and candidate ``j``::

    c = candidate_hidden[r, j] / max(|candidate_hidden[r, j]|, eps)
    s_t = dot(c, context_hidden[r, t] / max(|context_hidden[r, t]|, eps))   # cosine
    max_sim = max over t with context_mask[r, t] of s_t       # 0 if the row has no context
    score[r, j] = (1 - alpha[r]) * probs[r, j] - alpha[r] * max_sim

Everything is computed in float32 whatever the hidden states' dtype (float32, float16 or
bfloat16); ``eps = 1e-8``. Contrastive search commits each row's highest-scoring
candidate. ``alpha`` is a scalar or a per-row tensor in ``[0, 1]``; ``alpha = 0`` gives
the scores ``probs`` exactly.
"""

from __future__ import annotations

from typing import Literal

import torch

from decodekit_kernels._checks import FLOAT_DTYPES, check_tensor, per_row, resolve_backend

__all__ = ["EPS", "degeneration_penalty"]

Backend = Literal["auto", "reference", "torch", "triton"]

#: Norms are clamped to at least this value before dividing (zero vectors give cosine 0).
EPS = 1e-8


def _check(
    probs: torch.Tensor,
    candidate_hidden: torch.Tensor,
    context_hidden: torch.Tensor,
    context_mask: torch.Tensor | None,
    alpha: float | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    op = "degeneration_penalty"
    check_tensor(op, "probs", probs, ndim=2, dtypes=FLOAT_DTYPES)
    device = probs.device
    check_tensor(op, "candidate_hidden", candidate_hidden, ndim=3, dtypes=FLOAT_DTYPES,
                 device=device)
    check_tensor(op, "context_hidden", context_hidden, ndim=3, dtypes=FLOAT_DTYPES, device=device)
    rows, k = probs.shape
    if tuple(candidate_hidden.shape[:2]) != (rows, k):
        raise ValueError(
            f"{op}: candidate_hidden must have shape ({rows}, {k}, H) to match probs "
            f"{tuple(probs.shape)}, got {tuple(candidate_hidden.shape)}"
        )
    hidden = candidate_hidden.shape[2]
    if context_hidden.shape[0] != rows or context_hidden.shape[2] != hidden:
        raise ValueError(
            f"{op}: context_hidden must have shape ({rows}, T, {hidden}), got "
            f"{tuple(context_hidden.shape)}"
        )
    width = context_hidden.shape[1]
    if context_mask is None:
        mask = torch.ones((rows, width), dtype=torch.bool, device=device)
    else:
        check_tensor(op, "context_mask", context_mask, ndim=2, dtypes=(torch.bool,),
                     device=device)
        if tuple(context_mask.shape) != (rows, width):
            raise ValueError(
                f"{op}: context_mask must have shape ({rows}, {width}), got "
                f"{tuple(context_mask.shape)}"
            )
        mask = context_mask
    a = per_row(op, "alpha", alpha, rows, torch.float32, device)
    if not bool(torch.isfinite(a).all()) or bool(((a < 0) | (a > 1)).any()):
        bad = int((~torch.isfinite(a) | (a < 0) | (a > 1)).nonzero()[0])
        raise ValueError(f"{op}: alpha must be in [0, 1]; row {bad} has {float(a[bad])}")
    return mask, a


def degeneration_penalty(
    probs: torch.Tensor,
    candidate_hidden: torch.Tensor,
    context_hidden: torch.Tensor,
    context_mask: torch.Tensor | None = None,
    *,
    alpha: float | torch.Tensor = 0.6,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Score ``k`` candidates per row: model confidence minus degeneration penalty.

    Parameters
    ----------
    probs : FloatTensor ``[rows, k]``
        Each candidate's probability under the model (float32, float16 or bfloat16).
    candidate_hidden : FloatTensor ``[rows, k, H]``
        Last-layer hidden state of every candidate token (computed with the candidate as
        input). Any strides.
    context_hidden : FloatTensor ``[rows, T, H]``
        Last-layer hidden states of each row's context (prompt and generated tokens).
    context_mask : BoolTensor ``[rows, T]`` or None
        False marks padding or holes that do not count; None means all valid.
    alpha : float or FloatTensor ``[rows]``
        Weight of the penalty, in ``[0, 1]``.
    backend : {"auto", "reference", "torch", "triton"}
        ``auto``: Triton for CUDA tensors, the vectorized torch path otherwise.

    Returns
    -------
    FloatTensor ``[rows, k]``
        float32 scores; contrastive search picks the argmax per row.

    Raises
    ------
    ValueError
        Shapes that do not match (naming the argument), or ``alpha`` outside ``[0, 1]``.

    Examples
    --------
    >>> import torch, decodekit_kernels as K
    >>> probs = torch.tensor([[0.6, 0.4]])
    >>> cand = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> context = torch.tensor([[[1.0, 0.0]]])
    >>> K.degeneration_penalty(probs, cand, context, alpha=0.5).tolist()
    [[-0.19999998807907104, 0.20000000298023224]]
    """
    op = "degeneration_penalty"
    mask, a = _check(probs, candidate_hidden, context_hidden, context_mask, alpha)
    chosen = resolve_backend(op, backend, probs.device)
    if chosen == "reference":
        from decodekit_kernels.degeneration_penalty import reference

        return reference.degeneration_penalty(probs, candidate_hidden, context_hidden, mask, a)
    if chosen == "triton":
        from decodekit_kernels._triton import require_triton

        require_triton(op, probs.device.type)
        from decodekit_kernels.degeneration_penalty import triton as triton_impl

        return triton_impl.degeneration_penalty(probs, candidate_hidden, context_hidden, mask, a)
    from decodekit_kernels.degeneration_penalty import vectorized

    return vectorized.degeneration_penalty(probs, candidate_hidden, context_hidden, mask, a)
