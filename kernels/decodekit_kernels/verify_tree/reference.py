"""Plain torch reference for ``verify_tree``: loops over rows and nodes."""

from __future__ import annotations

import torch

from decodekit_kernels.verify_chain.reference import gumbel_max_row, residual_row


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
    """Row by row: walk down the tree, trying each node's children in index order."""
    rows, n_nodes = tokens.shape
    paths: list[list[int]] = []
    next_token = torch.zeros(rows, dtype=torch.long)
    for r in range(rows):
        node, path = -1, []
        while True:
            p_node = target_probs[r, node + 1].float()
            p = p_node
            children = [c for c in range(n_nodes)
                        if int(parents[r, c]) == node and int(tokens[r, c]) >= 0]
            chosen = None
            for c in children:
                x = int(tokens[r, c])
                if greedy:
                    if x == int(p_node.argmax()):
                        chosen = c
                        break
                    continue
                qx = 1.0 if draft_probs is None else float(draft_probs[r, c, x])
                if float(uniforms[r, c]) * qx < float(p[x]):
                    chosen = c
                    break
                if draft_probs is None:
                    q = torch.zeros_like(p)
                    q[x] = 1.0
                else:
                    q = draft_probs[r, c].float()
                residual = residual_row(p, q)
                p = p_node if residual is p else residual  # no mass left: back to the target
            if chosen is None:
                token = int(p.argmax()) if greedy else gumbel_max_row(p, seeds[r], len(path))
                next_token[r] = token
                break
            path.append(chosen)
            node = chosen
        paths.append(path)
    out = torch.full((rows, n_nodes), -1, dtype=torch.long)
    for r, path in enumerate(paths):
        out[r, : len(path)] = torch.tensor(path, dtype=torch.long)
    accepted = torch.tensor([len(p) for p in paths], dtype=torch.long)
    device = tokens.device
    return out.to(device), accepted.to(device), next_token.to(device)
