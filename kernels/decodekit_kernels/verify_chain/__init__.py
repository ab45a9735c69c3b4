"""``verify_chain``: lossless verification of a chain draft (speculative sampling).

Leviathan et al. 2023 / Chen et al. 2023. Per row ``r``, with ``p_i = target_probs[r, i]``
(the target distribution after ``i`` draft tokens), ``q_i = draft_probs[r, i]`` (one-hot on
the draft token when ``draft_probs`` is None) and ``x_i = draft_tokens[r, i]``::

    for i in 0 .. K-1:
        if x_i == -1:                       break                  # shorter draft: pad
        if greedy:  accept = x_i == argmax(p_i)                    # lowest index on ties
        else:       accept = uniforms[r, i] * q_i(x_i) < p_i(x_i)  # i.e. u < p/q
        if not accept:                      break
    n = number of accepted tokens
    if greedy:                   next = argmax(p_n)
    elif rejected at n:          next ~ norm(max(0, p_n - q_n))     # residual
    else (all accepted / pad):   next ~ p_n                          # bonus token
    return accepted = n, next_token = next

Draws are Gumbel-max: ``argmax_t log d(t) + G(seeds[r], n, t)`` over ``d(t) > 0``, with the
counter-based noise of :mod:`decodekit_kernels._noise` (counter = the position ``n``), so
every backend returns the same tokens for the same inputs. If the residual has no mass
(``p_n <= q_n`` everywhere, which happens only through rounding, since a rejection has
probability 0 when ``p_n <= q_n`` exactly), the draw falls back to ``p_n``.

The committed tokens ``x_0 .. x_{n-1}, next`` are distributed exactly as ``K+1`` ... tokens
sampled from the target (lossless) whenever ``x_i`` was drawn from ``q_i`` and ``uniforms``
are independent U[0, 1).
"""

from __future__ import annotations

from typing import Literal

import torch

from decodekit_kernels._checks import FLOAT_DTYPES, check_shape, check_tensor, resolve_backend

__all__ = ["check_verify_inputs", "verify_chain"]

Backend = Literal["auto", "reference", "torch", "triton"]


def check_verify_inputs(
    op: str,
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor | None,
    tokens: torch.Tensor,
    uniforms: torch.Tensor,
    seeds: torch.Tensor,
    tokens_name: str,
) -> None:
    """Shapes, dtypes, devices and token ranges shared by the verify ops."""
    check_tensor(op, "target_probs", target_probs, ndim=3, dtypes=FLOAT_DTYPES)
    rows, nodes_plus_one, vocab = target_probs.shape
    device = target_probs.device
    check_tensor(op, tokens_name, tokens, ndim=2, dtypes=(torch.int64,), device=device)
    check_shape(op, tokens_name, tokens, (rows, nodes_plus_one - 1))
    n = nodes_plus_one - 1
    if draft_probs is not None:
        check_tensor(op, "draft_probs", draft_probs, ndim=3, dtypes=FLOAT_DTYPES, device=device)
        check_shape(op, "draft_probs", draft_probs, (rows, n, vocab))
    check_tensor(op, "uniforms", uniforms, ndim=2, dtypes=(torch.float32, torch.float64),
                 device=device)
    check_shape(op, "uniforms", uniforms, (rows, n))
    check_tensor(op, "seeds", seeds, ndim=1, dtypes=(torch.int64,))
    check_shape(op, "seeds", seeds, (rows,))
    if bool(((tokens < -1) | (tokens >= vocab)).any()):
        bad = tokens[(tokens < -1) | (tokens >= vocab)][0]
        raise ValueError(f"{op}: {tokens_name} holds {int(bad)}, outside -1 .. {vocab - 1}")


def verify_chain(
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor | None,
    draft_tokens: torch.Tensor,
    uniforms: torch.Tensor,
    seeds: torch.Tensor,
    *,
    greedy: bool = False,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Verify one chain draft per row; see the module docstring for the exact semantics.

    Parameters
    ----------
    target_probs : FloatTensor ``[rows, K + 1, V]``
        Target distributions (after processors and warpers): index ``i`` is the
        distribution after ``i`` draft tokens.
    draft_probs : FloatTensor ``[rows, K, V]`` or None
        The exact distribution each draft token was drawn from; None for deterministic
        (one-hot) drafts.
    draft_tokens : LongTensor ``[rows, K]``
        Draft tokens; ``-1`` pads rows with shorter drafts (padding is a suffix).
    uniforms : FloatTensor ``[rows, K]``
        Independent U[0, 1) draws for the acceptance tests (unused when ``greedy``).
    seeds : LongTensor ``[rows]``
        Seeds of the residual / bonus draw (Gumbel-max, counter = position).
    greedy : bool
        Exact-match verification against the argmax of ``target_probs``.
    backend : {"auto", "reference", "torch", "triton"}
        ``auto``: Triton for CUDA tensors, the vectorized torch path otherwise.

    Returns
    -------
    accepted : LongTensor ``[rows]``
        Number of accepted draft tokens ``n`` (``0 <= n <= K``).
    next_token : LongTensor ``[rows]``
        The token committed after them (correction or bonus token).

    Examples
    --------
    >>> import torch, decodekit_kernels as K
    >>> p = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    >>> K.verify_chain(p, None, torch.tensor([[1]]), torch.tensor([[0.5]]), torch.tensor([0]))
    (tensor([1]), tensor([0]))
    """
    op = "verify_chain"
    check_verify_inputs(op, target_probs, draft_probs, draft_tokens, uniforms, seeds,
                        "draft_tokens")
    seeds = seeds.to(target_probs.device)
    chosen = resolve_backend(op, backend, target_probs.device)
    if chosen == "reference":
        from decodekit_kernels.verify_chain import reference

        return reference.verify_chain(target_probs, draft_probs, draft_tokens, uniforms.float(),
                                      seeds, greedy)
    if chosen == "triton":
        from decodekit_kernels._triton import require_triton

        require_triton(op, target_probs.device.type)
        from decodekit_kernels.verify_chain import triton as triton_impl

        return triton_impl.verify_chain(target_probs, draft_probs, draft_tokens,
                                        uniforms.float(), seeds.contiguous(), greedy)
    from decodekit_kernels.verify_chain import vectorized

    return vectorized.verify_chain(target_probs, draft_probs, draft_tokens, uniforms.float(),
                                   seeds, greedy)
