"""Lossless rejection-sampling verifiers for chain and tree drafts.

Both verifiers turn the processed target logits into the exact distribution the target
samples from (:meth:`decodekit.sampling.Warper.probs`, i.e. after processors and
warpers), draw their randomness from the rows' generators, and call the kernel ops
:func:`decodekit_kernels.verify_chain` / :func:`decodekit_kernels.verify_tree`.
"""

from __future__ import annotations

import decodekit_kernels as kernels
import torch

from decodekit.builtin.sample import draw_seeds
from decodekit.components import DecodeView, DraftTree, Selection, StepOutput, Verifier
from decodekit.sampling import Warper

__all__ = ["RejectionChainVerifier", "RejectionTreeVerifier", "draw_node_uniforms"]


def draw_node_uniforms(generators: list[torch.Generator], nodes: int) -> torch.Tensor:
    """``nodes`` uniforms in [0, 1) per row, each row from its own generator: ``[rows, nodes]``."""
    if nodes == 0:
        return torch.zeros((len(generators), 0))
    return torch.stack([torch.rand(nodes, generator=g) for g in generators])


class _RejectionVerifier(Verifier):
    """Shared by the chain and tree verifiers."""

    lossless = True
    greedy_equivalent = True

    def __init__(self, warper: Warper | None = None, backend: str = "auto") -> None:
        self.warper = warper or Warper()
        self.backend = backend

    def _chain(self, view: DecodeView, output: StepOutput, draft: DraftTree) -> Selection:
        """Speculative sampling of a chain draft (``verify_chain``)."""
        target, proposals, tokens, uniforms, seeds = self._inputs(view, output, draft)
        accepted, next_token = kernels.verify_chain(
            target, proposals, tokens, uniforms, seeds,
            greedy=self.warper.is_greedy, backend=self.backend,  # type: ignore[arg-type]
        )
        rows_tokens, kept, counts = [], [], []
        token_lists = draft.tokens.tolist()
        for r, (n, nxt) in enumerate(zip(accepted.tolist(), next_token.tolist(), strict=True)):
            rows_tokens.append([*token_lists[r][:n], nxt])
            kept.append(list(range(n)))
            counts.append(n)
        return Selection(tokens=rows_tokens, kept_nodes=kept, accepted_draft=counts)

    def _plain(self, view: DecodeView, output: StepOutput) -> Selection:
        tokens = self.warper.sample(output.logits[:, 0], draw_seeds(view.generators))
        return Selection.single(tokens.tolist())

    def _inputs(
        self, view: DecodeView, output: StepOutput, draft: DraftTree
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
        device = output.logits.device
        target = self.warper.probs(output.logits)  # [rows, 1 + N, V]
        proposals = None
        if draft.proposals is not None and not self.warper.is_greedy:
            proposals = draft.proposals.to(device=device, dtype=torch.float32)
        seeds = draw_seeds(view.generators).to(device)
        uniforms = draw_node_uniforms(view.generators, draft.num_nodes).to(device)
        return target, proposals, draft.tokens.to(device), uniforms, seeds


class RejectionChainVerifier(_RejectionVerifier):
    """Speculative sampling of a chain draft (Leviathan et al. 2023; Chen et al. 2023).

    Accepts draft token ``x_i`` with probability ``min(1, p_i(x_i) / q_i(x_i))``; after a
    rejection the next token comes from ``norm(max(0, p_i - q_i))``, after a fully
    accepted draft from ``p_K`` (bonus token). Lossless for any drafter that reports its
    proposals exactly; exact match under greedy settings.

    Parameters
    ----------
    warper : Warper
        The target's sampling settings.
    backend : str
        Kernel backend of :func:`decodekit_kernels.verify_chain`.
    """

    name = "rejection_chain"

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Commit the accepted prefix of each row's chain plus one new token."""
        if draft is None:
            return self._plain(view, output)
        if not draft.is_chain():
            raise ValueError(
                "the rejection_chain verifier got a draft tree (a node whose parent is not "
                "the previous node); use verify='tree' for drafters that propose trees"
            )
        return self._chain(view, output, draft)

class RejectionTreeVerifier(_RejectionVerifier):
    """Multi-draft recursive rejection sampling over a token tree (SpecInfer; RSD).

    At each node the children are tried in index order against the current residual;
    lossless whenever each node's proposal is the exact distribution its token was drawn
    from given its earlier siblings. Chains are verified too (a chain is a tree).

    Parameters
    ----------
    warper : Warper
        The target's sampling settings.
    backend : str
        Kernel backend of :func:`decodekit_kernels.verify_tree`.
    """

    name = "rejection_tree"

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Commit each row's accepted path plus one new token."""
        if draft is None:
            return self._plain(view, output)
        if draft.is_chain():  # the same result, with the cheaper chain kernel
            return self._chain(view, output, draft)
        target, proposals, tokens, uniforms, seeds = self._inputs(view, output, draft)
        path, accepted, next_token = kernels.verify_tree(
            target, proposals, tokens, draft.parents.to(tokens.device), uniforms, seeds,
            greedy=self.warper.is_greedy, backend=self.backend,  # type: ignore[arg-type]
        )
        rows_tokens, kept, counts = [], [], []
        token_lists = draft.tokens.tolist()
        paths = path.tolist()
        for r, (n, nxt) in enumerate(zip(accepted.tolist(), next_token.tolist(), strict=True)):
            nodes = paths[r][:n]
            rows_tokens.append([token_lists[r][c] for c in nodes] + [nxt])
            kept.append(nodes)
            counts.append(n)
        return Selection(tokens=rows_tokens, kept_nodes=kept, accepted_draft=counts)
