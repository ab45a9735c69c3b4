"""Contrastive search (Su et al., 2022, "A Contrastive Framework for Neural Text Generation").

At every step the ``top_k`` most likely tokens ``v`` are candidates, and the row commits

    argmax_v  (1 - alpha) * p(v | x)  -  alpha * max_t cos(h_v, h_t)

where ``h_v`` is the last-layer hidden state of the candidate (computed with ``v`` as
input) and ``h_t`` runs over the hidden states of every token of the row so far (prompt
and generated). ``alpha = 0`` is greedy decoding; larger ``alpha`` penalizes tokens whose
representation repeats the context, which is what makes greedy text loop.

How it fits the decode loop (one forward per committed token):

* **drafter** ``top_k_siblings``: proposes the ``top_k`` tokens of the root distribution
  as ``top_k`` siblings of a depth-1 tree. It needs the root logits before the forward,
  so it drafts only when the loop has them (``DecodeView.root_logits``).
* **forward**: the ``top_k`` siblings in one pass, with hidden states.
* **verifier** ``contrastive``: scores the candidates with the
  :func:`decodekit_kernels.degeneration_penalty` kernel against the row's context hidden
  states, which it keeps, and commits the winner as a *kept node*: its cache entry, its
  logits and its hidden state are reused, so the next step needs no forward for it.

The first step (the prompt) has no root logits yet: it is an ordinary forward over the
prompt and commits nothing; the verifier stores the prompt's hidden states as the
context and the loop keeps the logits after the prompt as the next root. The first token
is then chosen like every other one, against the prompt's hidden states: this is what
the paper and the transformers implementation do (the first token is *not* plain argmax).

Candidates are ordered by logit, lowest token id first on ties, and the first of equal
scores wins, so ``alpha = 0`` commits exactly greedy decoding's tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import decodekit_kernels as kernels
import torch
from pydantic import Field

from decodekit import (
    BuildContext,
    DecodeView,
    Drafter,
    DraftTree,
    Guarantee,
    Pipeline,
    Selection,
    StepOutput,
    Strategy,
    StrategyParams,
    Verifier,
    Warper,
    hookimpl,
)
from decodekit.config import KernelBackend
from decodekit.drafting import build_drafter
from decodekit.errors import ConfigError
from decodekit.verifying import build_verifier

__all__ = [
    "CONTRASTIVE",
    "ContextStore",
    "ContrastiveParams",
    "ContrastiveVerifier",
    "TopKSiblingsDrafter",
    "top_k_candidates",
]


class ContrastiveParams(StrategyParams):
    """Parameters of ``contrastive``."""

    top_k: int = Field(4, ge=1, description="Candidates per step (the k most likely tokens).")
    alpha: float = Field(
        0.6, ge=0.0, le=1.0, description="Weight of the degeneration penalty; 0 is greedy."
    )


def top_k_candidates(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` largest logits' token ids per row, by logit then lowest id: ``[rows, k]``.

    Parameters
    ----------
    logits : FloatTensor ``[rows, V]``
    k : int
        ``1 <= k <= V``.
    """
    values, ids = torch.topk(logits, k, dim=-1)
    order = ids.argsort(dim=-1, stable=True)  # lowest id first, then stable by value
    ids, values = ids.gather(1, order), values.gather(1, order)
    order = values.argsort(dim=-1, descending=True, stable=True)
    return ids.gather(1, order)


class TopKSiblingsDrafter(Drafter):
    """Proposes the ``k`` most likely next tokens as ``k`` siblings of a depth-1 tree.

    Deterministic (one-hot proposals). Drafts for the rows whose root logits the loop
    holds (``DecodeView.root_valid``: nothing pending) and pads the others, whose pending
    tokens this step's forward scores; returns None, an ordinary step, when no row has
    root logits.

    Built like every registered drafter (:mod:`decodekit.drafting`): the options give
    ``k``; the draft length is 1 by nature (siblings of the root), and it ignores the
    warper (its drafts are one-hot).

    Parameters
    ----------
    options : TopKSiblingsDrafter.Options
        ``k``, the siblings per row.
    context, draft_length, max_nodes, warper
        As in the drafter protocol.
    """

    class Options(StrategyParams):
        """Options of ``top_k_siblings``."""

        k: int = Field(4, ge=1, description="Siblings per row (the candidates).")

    name = "top_k_siblings"
    deterministic = True

    def __init__(
        self,
        options: Options,
        *,
        context: BuildContext,
        draft_length: int = 1,
        max_nodes: int | None = None,
        warper: Warper | None = None,
    ) -> None:
        self.k = options.k

    @classmethod
    def drafts_trees(
        cls, options: StrategyParams, *, draft_length: int, max_nodes: int | None
    ) -> bool:
        """Always: ``k`` siblings (a chain only for ``k = 1``)."""
        return getattr(options, "k", 2) > 1

    def draft(self, view: DecodeView) -> DraftTree | None:
        """``k`` siblings per row with root logits (``-1`` for the others), or None."""
        if view.root_logits is None:
            return None
        tokens = top_k_candidates(view.root_logits, self.k).cpu()
        if view.root_valid is not None and not all(view.root_valid):
            valid = torch.tensor(view.root_valid).unsqueeze(1)
            tokens = torch.where(valid, tokens, torch.full_like(tokens, -1))
        return DraftTree(tokens=tokens, parents=torch.full_like(tokens, -1))


class ContextStore:
    """Per-row context hidden states with room to grow: ``[rows, capacity, H]``.

    Attributes
    ----------
    hidden : FloatTensor ``[rows, capacity, H]`` or None
    mask : BoolTensor ``[rows, capacity]`` or None
        Which slots hold a context token.
    lengths : LongTensor ``[rows]``
        Slots used per row (a row's tokens are ``hidden[r, :lengths[r]]``).
    """

    def __init__(self) -> None:
        self.hidden: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None
        self.lengths = torch.zeros(0, dtype=torch.long)

    def append(self, rows: list[int], vectors: list[torch.Tensor], hidden: int,
               device: torch.device, batch: int) -> None:
        """Append ``vectors[i]`` (``[n_i, H]``) to row ``rows[i]`` of a batch of ``batch``."""
        if self.hidden is None:
            self.hidden = torch.zeros((batch, 16, hidden), dtype=torch.float32, device=device)
            self.mask = torch.zeros((batch, 16), dtype=torch.bool, device=device)
            self.lengths = torch.zeros(batch, dtype=torch.long)
        assert self.mask is not None
        need = max((int(self.lengths[r]) + v.shape[0] for r, v in zip(rows, vectors, strict=True)),
                   default=0)
        if need > self.hidden.shape[1]:
            grow = max(need, 2 * self.hidden.shape[1]) - self.hidden.shape[1]
            self.hidden = torch.cat([self.hidden, self.hidden.new_zeros(batch, grow, hidden)], 1)
            self.mask = torch.cat([self.mask, self.mask.new_zeros(batch, grow)], 1)
        for r, vector in zip(rows, vectors, strict=True):
            start, count = int(self.lengths[r]), vector.shape[0]
            self.hidden[r, start : start + count] = vector.float()
            self.mask[r, start : start + count] = True
            self.lengths[r] = start + count

    def append_one(self, vectors: torch.Tensor, where: torch.Tensor) -> None:
        """Append ``vectors[r]`` (``[rows, H]``) to every row ``r`` where ``where[r]``."""
        assert self.hidden is not None and self.mask is not None
        rows, hidden = vectors.shape
        if int(self.lengths.max()) + 1 > self.hidden.shape[1]:
            grow = self.hidden.shape[1]
            self.hidden = torch.cat([self.hidden, self.hidden.new_zeros(rows, grow, hidden)], 1)
            self.mask = torch.cat([self.mask, self.mask.new_zeros(rows, grow)], 1)
        index = where.nonzero().squeeze(1).to(self.hidden.device)
        at = self.lengths.to(self.hidden.device)[index]
        self.hidden[index, at] = vectors[index].float()
        self.mask[index, at] = True
        self.lengths = self.lengths + where.cpu().long()

    def view(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The used part: hidden ``[rows, T, H]`` and mask ``[rows, T]``."""
        assert self.hidden is not None and self.mask is not None
        width = int(self.lengths.max()) if self.lengths.numel() else 0
        return self.hidden[:, :width], self.mask[:, :width]

    def select_rows(self, rows: torch.Tensor) -> None:
        """New row ``r`` is old row ``rows[r]``."""
        if self.hidden is None or self.mask is None:
            return
        self.hidden = self.hidden.index_select(0, rows.to(self.hidden.device))
        self.mask = self.mask.index_select(0, rows.to(self.mask.device))
        self.lengths = self.lengths.index_select(0, rows.cpu())


class ContrastiveVerifier(Verifier):
    """Commits each row's candidate with the best contrastive score, as a kept node.

    Keeps every row's context hidden states: the pending tokens' hidden states of a
    draftless step (the prompt at the first step), then the hidden state of each
    committed candidate.

    A row with pending tokens (the prompt, or tokens a constraint forced) has no
    candidates in its step: the verifier commits nothing for it and only records the
    pending tokens' hidden states; the loop keeps the logits after them, and the next step
    drafts the row's candidates from them. Rows with and without pending tokens share a
    step, each handled its own way. A candidate the processors or a constraint masked
    (``-inf``) never wins; if all are masked the row commits the argmax of its processed
    root logits.

    Parameters
    ----------
    options : ContrastiveVerifier.Options, optional
        ``alpha``, the weight of the degeneration penalty, and ``backend``, the kernel
        backend of :func:`decodekit_kernels.degeneration_penalty`.
    context : BuildContext, optional
        Chooses the backend when ``backend="auto"``.
    warper : Warper, optional
        Unused: contrastive search is deterministic.
    """

    name = "contrastive"

    class Options(StrategyParams):
        """Options of the ``contrastive`` verifier."""

        alpha: float = Field(
            0.6, ge=0.0, le=1.0, description="Weight of the degeneration penalty; 0 is greedy."
        )
        backend: KernelBackend = Field(
            "auto", description="Kernel backend of the degeneration penalty."
        )

    def __init__(
        self, options: Options | None = None, *, context: Any = None, warper: Any = None
    ) -> None:
        options = options if options is not None else self.Options()
        self.alpha = options.alpha
        self.backend: str = options.backend
        if self.backend == "auto" and context is not None:
            self.backend = context.kernel_backend("degeneration_penalty")
        self.context = ContextStore()

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Score the candidates (or absorb pending hidden states) for every row."""
        if output.hidden_states is None:
            raise RuntimeError("contrastive: the pipeline must request hidden states")
        rows = len(view.sequences)
        root = output.logits[:, 0]
        if draft is None:
            return self._absorb(view, output, list(range(rows)))
        candidates = draft.tokens.to(root.device)  # [rows, k]
        drafted = (candidates >= 0).any(dim=-1).tolist()  # rows without: pending tokens
        # rows without candidates have pending tokens: store their hidden states first
        self._absorb(view, output, [r for r in range(rows) if not drafted[r]])
        candidate_logits = root.gather(1, candidates.clamp(min=0))
        probs = torch.softmax(root.float(), dim=-1).gather(1, candidates.clamp(min=0))
        context, mask = self.context.view()
        scores = kernels.degeneration_penalty(
            probs, output.hidden_states[:, 1:], context, mask, alpha=self.alpha,
            backend=self.backend,  # type: ignore[arg-type]
        )
        allowed = (candidates >= 0) & (candidate_logits > float("-inf"))
        scores = scores.masked_fill(~allowed, float("-inf"))
        best = scores.argmax(dim=-1)  # first of equal scores: the higher logit
        index = torch.arange(rows, device=best.device)
        any_allowed_mask = allowed.any(dim=-1)
        self.context.append_one(output.hidden_states[index, 1 + best], any_allowed_mask)
        tokens = candidates[index, best].tolist()
        any_allowed = any_allowed_mask.tolist()
        fallback = root.argmax(dim=-1).tolist()
        out_tokens, kept = [], []
        for r in range(rows):
            if not drafted[r]:  # its pending tokens were scored and absorbed
                out_tokens.append([])
                kept.append([])
            elif any_allowed[r]:
                out_tokens.append([tokens[r]])
                kept.append([int(best[r])])
            else:  # every candidate masked: the processed argmax, as a new pending token
                out_tokens.append([fallback[r]])
                kept.append([])  # its hidden state is absorbed when it is processed
        return Selection(tokens=out_tokens, kept_nodes=kept,
                         accepted_draft=[len(k) for k in kept], scores=None)

    def _absorb(self, view: DecodeView, output: StepOutput, rows: list[int]) -> Selection:
        """Store the hidden states of ``rows``' pending tokens; commit nothing for any row.

        Every row of a step without candidates has pending tokens (the loop drafts for a
        row as soon as it has root logits), and so has every row without candidates in a
        step with them.
        """
        batch = len(view.sequences)
        empty = Selection(tokens=[[] for _ in range(batch)],
                          kept_nodes=[[] for _ in range(batch)], accepted_draft=[0] * batch)
        if not rows:
            return empty
        pending_hidden = output.pending_hidden_states
        assert pending_hidden is not None and output.hidden_states is not None
        width = pending_hidden.shape[1]
        stored = self.context.lengths.tolist() if self.context.hidden is not None else [0] * batch
        vectors = []
        for r in rows:
            count = len(view.sequences[r]) - stored[r]  # tokens whose hidden states we lack
            if count <= 0:
                raise RuntimeError(
                    f"contrastive: row {r} has no candidates but no pending tokens either"
                )
            vectors.append(pending_hidden[r, width - count :])
        self.context.append(rows, vectors, pending_hidden.shape[2], pending_hidden.device,
                            batch)
        return empty

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep each remaining row's context."""
        self.context.select_rows(rows)


def _build(params: ContrastiveParams, context: BuildContext) -> Pipeline:
    vocab = context.model.vocab_size
    if params.top_k > vocab:
        raise ConfigError(
            f"params.top_k: {params.top_k} candidates is more than the vocabulary "
            f"({vocab} tokens)"
        )
    verifier = build_verifier(ContrastiveVerifier, {"alpha": params.alpha}, context=context,
                              where="params.")
    drafter = build_drafter("top_k_siblings", {"k": params.top_k}, context=context,
                            draft_length=1, max_nodes=None, warper=None)
    return Pipeline(verifier=verifier, drafter=drafter, needs_hidden_states=True)


CONTRASTIVE = Strategy(
    name="contrastive",
    summary="Contrastive search: top-k candidates scored by confidence minus a degeneration "
    "penalty, one forward per token.",
    params=ContrastiveParams,
    guarantee=Guarantee.NONE,
    components=(("drafter", "top_k_siblings"), ("verifier", "contrastive")),
    build=_build,
)


@hookimpl
def register_strategies(register: Callable[[Strategy], None]) -> None:
    """Register ``contrastive``."""
    register(CONTRASTIVE)


@hookimpl
def register_drafters(register: Callable[[type[Drafter]], None]) -> None:
    """Register the ``top_k_siblings`` drafter."""
    register(TopKSiblingsDrafter)


@hookimpl
def register_verifiers(register: Callable[[type[Verifier]], None]) -> None:
    """Register the ``contrastive`` verifier."""
    register(ContrastiveVerifier)
