"""``verify_tree``: lossless multi-draft verification of a token tree.

Recursive rejection sampling over a tree (SpecInfer, Miao et al. 2024; Recursive
Speculative Decoding, Jeon et al. 2024). Per row, with ``p_j = target_probs[r, j + 1]``
(the target distribution after node ``j``; index 0 is the root), ``q_c = draft_probs[r, c]``
(one-hot on the node's token when None) and ``x_c = tokens[r, c]``::

    node, p = root, target_probs[r, 0]
    loop:
        for c in children(node), in index order:            # parents[r, c] == node, x_c >= 0
            if greedy:  accept = x_c == argmax(target at node)
            else:       accept = uniforms[r, c] * q_c(x_c) < p(x_c)
            if accept:  path.append(c); node, p = c, p_c; continue loop
            p = norm(max(0, p - q_c))                        # residual for the next sibling
        next = argmax(target at node) if greedy else draw from p; stop

Draws are Gumbel-max ``argmax_t log p(t) + G(seeds[r], len(path), t)`` over ``p(t) > 0``
with the counter-based noise of :mod:`decodekit_kernels._noise`, so every backend returns
the same result for the same inputs. When a residual has no mass (rounding only), ``p``
falls back to the target distribution at the node.

The output follows the target distribution exactly whenever each node's ``q_c`` is the
exact distribution its token was drawn from given its earlier siblings: i.i.d. siblings
(SpecInfer), siblings without replacement (RSD) and one-hot deterministic drafts all
qualify. A chain is the special case of one child per node (:func:`verify_chain`).
"""

from __future__ import annotations

from typing import Literal

import torch

from decodekit_kernels._checks import check_shape, check_tensor, resolve_backend
from decodekit_kernels.verify_chain import check_verify_inputs

__all__ = ["verify_tree"]

Backend = Literal["auto", "reference", "torch", "triton"]


def verify_tree(
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor | None,
    tokens: torch.Tensor,
    parents: torch.Tensor,
    uniforms: torch.Tensor,
    seeds: torch.Tensor,
    *,
    greedy: bool = False,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Verify one draft tree per row; see the module docstring for the exact semantics.

    Parameters
    ----------
    target_probs : FloatTensor ``[rows, N + 1, V]``
        Target distributions: index 0 at the root, ``i + 1`` after node ``i``.
    draft_probs : FloatTensor ``[rows, N, V]`` or None
        Each node's exact proposal distribution; None for one-hot (deterministic) drafts.
    tokens : LongTensor ``[rows, N]``
        Node tokens; ``-1`` marks padding.
    parents : LongTensor ``[rows, N]``
        Parent index of each node, ``-1`` for children of the root; topological order
        (``parents[r, c] < c``).
    uniforms : FloatTensor ``[rows, N]``
        Independent U[0, 1) draws, one per node's acceptance test.
    seeds : LongTensor ``[rows]``
        Seeds of the final draw.
    greedy : bool
        Exact-match verification against the argmax of ``target_probs``.
    backend : {"auto", "reference", "torch", "triton"}

    Returns
    -------
    path : LongTensor ``[rows, N]``
        Accepted node indices, root side first, padded with ``-1``.
    accepted : LongTensor ``[rows]``
        Length of each row's path.
    next_token : LongTensor ``[rows]``
        The token committed after the path.
    """
    op = "verify_tree"
    check_verify_inputs(op, target_probs, draft_probs, tokens, uniforms, seeds, "tokens")
    check_tensor(op, "parents", parents, ndim=2, dtypes=(torch.int64,), device=tokens.device)
    check_shape(op, "parents", parents, tuple(tokens.shape))
    n_nodes = tokens.shape[1]
    index = torch.arange(n_nodes, device=parents.device).unsqueeze(0)
    if bool(((parents < -1) | (parents >= index)).any()):
        raise ValueError(f"{op}: parents must satisfy -1 <= parents[r, c] < c (topological order)")
    seeds = seeds.to(target_probs.device)
    chosen = resolve_backend(op, backend, target_probs.device)
    if chosen == "reference":
        from decodekit_kernels.verify_tree import reference

        return reference.verify_tree(target_probs, draft_probs, tokens, parents,
                                     uniforms.float(), seeds, greedy)
    if chosen == "triton":
        from decodekit_kernels._triton import require_triton

        require_triton(op, target_probs.device.type)
        from decodekit_kernels.verify_tree import triton as triton_impl

        return triton_impl.verify_tree(target_probs, draft_probs, tokens, parents,
                                       uniforms.float(), seeds.contiguous(), greedy)
    from decodekit_kernels.verify_tree import vectorized

    return vectorized.verify_tree(target_probs, draft_probs, tokens, parents, uniforms.float(),
                                  seeds, greedy)
