"""Adaptive draft length: choose each step's draft length from the observed acceptance.

The wrapper estimates the per-token acceptance rate ``alpha`` (exponentially weighted
over recent steps: every accepted draft token is a success, every rejection a failure)
and picks the draft length ``k`` that maximizes the expected tokens per unit of cost
(Leviathan et al. 2023, section 3.4)::

    tokens(k) = (1 - alpha ** (k + 1)) / (1 - alpha)
    cost(k)   = 1 + draft_cost * k         # one target forward + k draft steps
    k*        = argmax over 1 <= k <= max_length of tokens(k) / cost(k)

so drafts grow while the drafter is right and shrink when it is not (as SpecDec++ does
with a learned stopping rule). It works with any drafter.

The estimate and the length are kept **per row** (and follow the rows when they finish
or are reordered), so a row's draft lengths depend on that row's own acceptance only,
never on the other rows of the batch. Each step every row's draft is cut to the row's
own length; drafters with a ``draft_length`` attribute that declare
``prefix_consistent`` (a long draft begins with the short one) are told the longest
length any row wants, other drafters draft at the full length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from decodekit.contracts import DecodeView, Drafter, DraftTree, Selection, StepOutput

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


def truncate_depth(draft: DraftTree, depth: int | Sequence[int]) -> DraftTree | None:
    """The draft without nodes deeper than ``depth`` (padding where rows keep fewer nodes).

    Parameters
    ----------
    draft : DraftTree
    depth : int or sequence of int
        The deepest level kept: one for every row, or one per row.
    """
    depths = draft.depths()
    limit = torch.as_tensor(depth, dtype=torch.long)
    if limit.ndim == 1:
        limit = limit.unsqueeze(1)
    keep = (depths <= limit) & (draft.tokens >= 0)
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
    """Wraps a drafter and adapts each row's draft length to that row's acceptance.

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

    Notes
    -----
    A row that drafts no node in a step learns nothing from it (its estimate does not
    even decay), so a step without any draft and a step where only other rows drafted
    are the same for the row.
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
        # per row, created at the first step: a weak prior, alpha = 0.5
        self.successes: list[float] = []
        self.failures: list[float] = []
        self.lengths: list[int] = []
        #: Every row's draft length at every step, for inspection and tests.
        self.history: list[list[int]] = []

    @property
    def alpha(self) -> list[float]:
        """Current estimate of the per-token acceptance rate, per row."""
        return [s / (s + f) for s, f in zip(self.successes, self.failures, strict=True)]

    def _ensure_rows(self, rows: int) -> None:
        if not self.lengths:  # the first step of a generation
            self.successes, self.failures = [1.0] * rows, [1.0] * rows
            self.lengths = [self.max_length] * rows
        elif len(self.lengths) != rows:
            raise RuntimeError(
                f"adaptive draft length holds {len(self.lengths)} rows for a batch of {rows}; "
                "rows changed without select_rows"
            )

    def draft(self, view: DecodeView) -> DraftTree | None:
        """The inner drafter's proposal, each row at most its own length deep."""
        if view.step == 0:
            self.lengths = []  # a new generation: fresh estimates
        self._ensure_rows(len(view.sequences))
        lengths = list(self.lengths)
        if hasattr(self.inner, "draft_length"):
            consistent = getattr(self.inner, "prefix_consistent", False)
            self.inner.draft_length = (  # type: ignore[attr-defined]
                max(lengths, default=self.max_length) if consistent else self.max_length
            )
        self.history.append(lengths)
        draft = self.inner.draft(view)
        return None if draft is None else truncate_depth(draft, lengths)

    def observe(
        self,
        view: DecodeView,
        draft: DraftTree | None,
        output: StepOutput,
        selection: Selection,
    ) -> None:
        """Update every drafting row's acceptance estimate and choose its next length."""
        if draft is not None:
            depth = draft.depths().masked_fill(draft.tokens < 0, 0).max(1).values.tolist()
            for r, (accepted, deepest) in enumerate(
                zip(selection.accepted_draft, depth, strict=True)
            ):
                if deepest == 0:
                    continue  # no node: nothing learned (as in a step without a draft)
                self.successes[r] = self.decay * self.successes[r] + float(accepted)
                self.failures[r] = self.decay * self.failures[r] + float(accepted < deepest)
                alpha = self.successes[r] / (self.successes[r] + self.failures[r])
                self.lengths[r] = best_draft_length(alpha, self.draft_cost, self.max_length)
        self.inner.observe(view, draft, output, selection)

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep (and reorder) the rows' estimates; forward to the inner drafter."""
        index = rows.tolist()
        if self.lengths:
            self.successes = [self.successes[i] for i in index]
            self.failures = [self.failures[i] for i in index]
            self.lengths = [self.lengths[i] for i in index]
        self.inner.select_rows(rows)
