"""Adaptive draft length: choose each step's draft length from the observed acceptance.

The wrapper estimates the per-token acceptance rate ``alpha`` (exponentially weighted
over recent steps: every accepted draft token is a success, every rejection a failure)
and picks the draft length ``k`` that maximizes the expected tokens per unit of cost
(Leviathan et al. 2023, section 3.4)::

    tokens(k) = (1 - alpha ** (k + 1)) / (1 - alpha)
    cost(k)   = 1 + draft_cost * k         # one target forward + k draft steps
    k*        = argmax over 1 <= k <= max_length of tokens(k) / cost(k)

so drafts grow while the drafter is right and shrink when it is not (as SpecDec++ does
with a learned stopping rule). It works with any drafter: drafters with a
``draft_length`` attribute are told the length before each step, and deeper nodes are
cut from every draft.
"""

from __future__ import annotations

import torch

from decodekit.components import DecodeView, Drafter, DraftTree, Selection, StepOutput

__all__ = ["AdaptiveDraftLength", "best_draft_length", "truncate_depth"]


def best_draft_length(alpha: float, draft_cost: float, max_length: int) -> int:
    """The ``k`` in ``1 .. max_length`` maximizing expected tokens per cost."""
    alpha = min(max(alpha, 0.0), 0.999)
    best_k, best_value = 1, -1.0
    for k in range(1, max_length + 1):
        value = (1 - alpha ** (k + 1)) / (1 - alpha) / (1 + draft_cost * k)
        if value > best_value + 1e-12:
            best_k, best_value = k, value
    return best_k


def truncate_depth(draft: DraftTree, depth: int) -> DraftTree | None:
    """The draft without nodes deeper than ``depth`` (padding where rows keep fewer nodes)."""
    depths = draft.depths()
    keep = (depths <= depth) & (draft.tokens >= 0)
    if bool(keep.all()):
        return draft
    if not bool(keep.any()):
        return None
    # kept nodes keep their relative order; remap parents to the new indices
    rows, nodes = draft.tokens.shape
    width = int(keep.sum(1).max())
    tokens = torch.full((rows, width), -1, dtype=torch.long)
    parents = torch.full((rows, width), -1, dtype=torch.long)
    proposals = None
    if draft.proposals is not None:
        proposals = torch.zeros((rows, width, draft.proposals.shape[2]),
                                dtype=draft.proposals.dtype)
    for r in range(rows):
        index = keep[r].nonzero().squeeze(1)
        remap = torch.full((nodes,), -1, dtype=torch.long)
        remap[index] = torch.arange(index.numel())
        count = index.numel()
        tokens[r, :count] = draft.tokens[r, index]
        old_parents = draft.parents[r, index]
        parents[r, :count] = torch.where(old_parents >= 0, remap[old_parents.clamp(min=0)], -1)
        if proposals is not None and draft.proposals is not None:
            proposals[r, :count] = draft.proposals[r, index]
    return DraftTree(tokens=tokens, parents=parents, proposals=proposals)


class AdaptiveDraftLength(Drafter):
    """Wraps a drafter and adapts its draft length to the observed acceptance.

    Parameters
    ----------
    inner : Drafter
        The drafter to wrap.
    max_length : int
        Longest draft (the strategy's ``draft_length``).
    draft_cost : float
        Cost of one draft step relative to one target forward.
    decay : float
        Weight of the past in the acceptance estimate (0.9: about the last 10 steps).
    """

    def __init__(
        self, inner: Drafter, max_length: int, draft_cost: float, decay: float = 0.9
    ) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.deterministic = inner.deterministic  # type: ignore[misc]
        self.max_length = max_length
        self.draft_cost = draft_cost
        self.decay = decay
        self.successes, self.failures = 1.0, 1.0  # a weak prior: alpha = 0.5
        self.length = max_length
        #: The draft length of every step, for inspection and tests.
        self.history: list[int] = []

    @property
    def alpha(self) -> float:
        """Current estimate of the per-token acceptance rate."""
        return self.successes / (self.successes + self.failures)

    def draft(self, view: DecodeView) -> DraftTree | None:
        """The inner drafter's proposal, at most :attr:`length` deep."""
        if hasattr(self.inner, "draft_length"):
            self.inner.draft_length = self.length  # type: ignore[attr-defined]
        self.history.append(self.length)
        draft = self.inner.draft(view)
        return None if draft is None else truncate_depth(draft, self.length)

    def observe(
        self,
        view: DecodeView,
        draft: DraftTree | None,
        output: StepOutput,
        selection: Selection,
    ) -> None:
        """Update the acceptance estimate and choose the next draft length."""
        if draft is not None:
            depth = draft.depths().masked_fill(draft.tokens < 0, 0).max(1).values.tolist()
            successes = float(sum(selection.accepted_draft))
            failures = float(sum(1 for a, d in zip(selection.accepted_draft, depth, strict=True)
                                 if a < d))
            self.successes = self.decay * self.successes + successes
            self.failures = self.decay * self.failures + failures
            self.length = best_draft_length(self.alpha, self.draft_cost, self.max_length)
        self.inner.observe(view, draft, output, selection)

    def select_rows(self, rows: torch.Tensor) -> None:
        """Forward to the inner drafter."""
        self.inner.select_rows(rows)
