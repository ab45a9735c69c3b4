"""Vectorized torch path for ``verify_tree``: one pass over the nodes, all rows at once.

Nodes are in topological order and a node's children come after it, so visiting nodes
in index order meets every child of the current node in index order, and every child of
a newly accepted node after it.
"""

from __future__ import annotations

import torch

from decodekit_kernels.verify_chain.vectorized import gumbel_max


@torch.no_grad()
def verify_tree(
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor | None,
    tokens: torch.Tensor,
    parents: torch.Tensor,
    uniforms: torch.Tensor,
    seeds: torch.Tensor,
    greedy: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Walk every row's tree at once; see the dispatcher for the semantics."""
    rows, n_nodes = tokens.shape
    device = target_probs.device
    row_ids = torch.arange(rows, device=device)
    current = torch.full((rows,), -1, dtype=torch.long, device=device)
    p = target_probs[:, 0].float().clone()  # the current (residual) distribution
    best = p.argmax(-1)  # argmax of the target at the current node (greedy)
    path = torch.full((rows, n_nodes), -1, dtype=torch.long, device=device)
    accepted = torch.zeros(rows, dtype=torch.long, device=device)
    for c in range(n_nodes):
        x = tokens[:, c]
        here = (parents[:, c] == current) & (x >= 0)
        if not bool(here.any()):
            continue
        xc = x.clamp(min=0)
        if greedy:
            ok = here & (xc == best)
        else:
            px = p.gather(1, xc.unsqueeze(1)).squeeze(1)
            qx = (torch.ones_like(px) if draft_probs is None
                  else draft_probs[:, c].float().gather(1, xc.unsqueeze(1)).squeeze(1))
            ok = here & (uniforms[:, c].float() * qx < px)
            reject = here & ~ok
            if bool(reject.any()):
                if draft_probs is None:
                    q = torch.zeros_like(p).scatter_(1, xc.unsqueeze(1), 1.0)
                else:
                    q = draft_probs[:, c].float()
                res = torch.clamp(p - q, min=0.0)
                total = res.sum(-1, keepdim=True)
                p_node = target_probs[row_ids, current + 1].float()
                update = torch.where(total > 0, res / torch.where(total > 0, total, 1.0), p_node)
                p = torch.where(reject.unsqueeze(1), update, p)
        if bool(ok.any()):
            path[row_ids[ok], accepted[ok]] = c
            accepted = accepted + ok.long()
            current = torch.where(ok, c, current)
            p = torch.where(ok.unsqueeze(1), target_probs[:, c + 1].float(), p)
            best = torch.where(ok, target_probs[:, c + 1].float().argmax(-1), best)
    next_token = best if greedy else gumbel_max(p, seeds, accepted)
    return path, accepted, next_token
