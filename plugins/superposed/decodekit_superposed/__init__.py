"""Superposed decoding (Shen et al., 2024) as a decodekit plugin: ``k`` drafts per forward.

"Superposed Decoding: Multiple Generations from a Single Autoregressive Inference Pass".
One sequence of forwards serves ``k`` drafts of the same prompt:

1. The prompt runs once; the ``k`` most likely first tokens start ``k`` drafts.
2. Each step feeds **one** input embedding: the superposition
   ``sum_i w_i * E(last token of draft i)`` with ``w_i`` the drafts' probabilities,
   normalized. The KV cache is shared by every draft.
3. The ``k`` most likely next tokens extend every draft: ``k * k`` candidates, each scored
   ``P(draft) * ((1 - w) * p_LM(token) + w * p_ngram(token | draft))``.
4. The ``k`` best candidates become the new drafts (a draft that produced EOS is kept as
   it is and no longer takes part in the superposition).

The n-gram model (orders 2 to ``ngram_order``) is built from a corpus (``corpus``: a text
file; by default a small English corpus shipped with this package) plus the prompt; where
it has seen none of a draft's contexts it keeps the language model's probability (see
:class:`~decodekit_superposed.ngram.NGramModel`). It is what keeps the drafts fluent: the
superposed input is not a real token, and the n-gram model pulls each draft back to text
that is plausible on its own.

It runs in the decode loop like every strategy: a prompt is one row, and the row's
KV cache is the shared cache of its ``k`` drafts. The :class:`SuperposedDecoder` verifier
keeps the drafts (as beam search keeps its beams), commits one *carrier* token per step
(the newest token of the likeliest unfinished draft, so the row's length and budget are
the drafts') and hands the superposition to the next forward through
:attr:`~decodekit.Selection.next_inputs`, which the loop feeds as the row's input
embedding. ``finalize`` reports the ``k`` drafts of every prompt; the loop cuts them at
stop strings. Prompts of a batch share every forward. Constraints and logits processors
read a row's tokens, which here are no output, so they are refused when a call is built.

``k = 1`` with ``ngram_weight = 0`` is greedy decoding exactly (the superposition of one
draft is its token's embedding).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from decodekit import (
    BuildContext,
    DecodeView,
    DraftTree,
    Guarantee,
    Pipeline,
    RowResult,
    Selection,
    StepOutput,
    Strategy,
    StrategyParams,
    Verifier,
    hookimpl,
)
from decodekit.errors import ConfigError
from decodekit_superposed.ngram import NGramModel

__all__ = [
    "SUPERPOSED",
    "Draft",
    "NGramModel",
    "SuperposedDecoder",
    "SuperposedParams",
    "default_corpus_path",
]


class SuperposedParams(StrategyParams):
    """Parameters of ``superposed``."""

    k: int = Field(3, ge=1, le=32, description="Drafts per prompt (outputs per prompt).")
    ngram_weight: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Weight of the n-gram model against the language model; 0 turns it off.",
    )
    ngram_order: int = Field(4, ge=2, le=8, description="Longest n-gram of the filter.")
    corpus: str | None = Field(
        None, description="Text file the n-gram model is built from (and the prompt); "
        "None uses the small corpus shipped with the plugin.",
    )


def default_corpus_path() -> Path:
    """The small English corpus shipped as package data."""
    return Path(str(resources.files("decodekit_superposed") / "data" / "default_corpus.txt"))


@cache
def _corpus_model(path: str, mtime: float, tokenizer_id: int, order: int,
                  tokenizer: Any) -> NGramModel:
    text = Path(path).read_text(encoding="utf-8")
    model = NGramModel(order)
    for paragraph in text.split("\n\n"):
        if paragraph.strip():
            model.add(tokenizer.encode(paragraph.strip(), add_special_tokens=False))
    return model


@dataclass
class Draft:
    """One of a prompt's ``k`` drafts.

    Attributes
    ----------
    tokens : list of int
        Generated tokens.
    logprob : float
        Log of the draft's probability under the interpolated model (its score).
    finished : bool
        Whether it ended with EOS.
    """

    tokens: list[int] = field(default_factory=list)
    logprob: float = 0.0
    finished: bool = False


@dataclass
class _RowDrafts:
    """One prompt's drafts and the n-grams of its prompt."""

    prompt: list[int]
    prompt_model: NGramModel
    drafts: list[Draft] = field(default_factory=lambda: [Draft()])


class SuperposedDecoder(Verifier):
    """Keeps each prompt's ``k`` drafts and feeds their superposition as the next input.

    One loop row per prompt. Each step it extends the row's drafts from the logits after
    the row's input (the prompt, then the previous superposition), commits a carrier
    token and returns the new superposition in :attr:`~decodekit.Selection.next_inputs`.

    Parameters
    ----------
    k : int
        Drafts per prompt.
    ngram_weight : float
        ``w`` in ``(1 - w) * p_LM + w * p_ngram``.
    corpus_model : NGramModel
        The corpus n-grams (the prompt's are added per prompt).
    """

    name = "superposed"
    rows_are_outputs = False

    def __init__(self, k: int, ngram_weight: float, corpus_model: NGramModel) -> None:
        self.k = k
        self.ngram_weight = ngram_weight
        self.corpus_model = corpus_model
        self._rows: list[_RowDrafts] = []  # per current row
        self._by_prompt: dict[int, _RowDrafts] = {}  # every prompt's drafts, kept to the end

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Extend every row's drafts; commit a carrier token; superpose the next input."""
        if draft is not None:
            raise ValueError("superposed decoding does not verify drafts")
        if not self._rows:  # the prompt's step
            self._rows = [self._start(view, r) for r in range(len(view.sequences))]
        probs = torch.softmax(output.logits[:, 0].float(), dim=-1)  # [rows, V]
        tokens: list[list[int]] = []
        inputs: list[torch.Tensor | None] = []
        finished: list[bool] = []
        eos = view.model.eos_token_ids
        for r, row in enumerate(self._rows):
            row.drafts = self._extend(row.drafts, probs[r], row.prompt, row.prompt_model, eos)
            active = [d for d in row.drafts if not d.finished]
            best = max(active or row.drafts, key=lambda d: d.logprob)
            tokens.append([best.tokens[-1]])
            finished.append(not active)
            last_step = view.budgets is not None and view.budgets[r] <= 1
            inputs.append(None if not active or last_step else self._superpose(view, active))
        return Selection(
            tokens=tokens,
            kept_nodes=[[] for _ in tokens],
            accepted_draft=[0] * len(tokens),
            finished=finished,
            next_inputs=inputs,
        )

    def _start(self, view: DecodeView, r: int) -> _RowDrafts:
        prompt = view.sequences[r][: view.prompt_lengths[r]]
        prompt_model = NGramModel(self.corpus_model.order).add(prompt)
        row = _RowDrafts(prompt=prompt, prompt_model=prompt_model)
        self._by_prompt[view.row_ids[r]] = row
        return row

    @staticmethod
    def _superpose(view: DecodeView, active: list[Draft]) -> torch.Tensor:
        """``sum_i w_i E(last token of draft i)``, ``w`` the drafts' normalized probabilities."""
        logprobs = torch.tensor([d.logprob for d in active], dtype=torch.float32)
        weights = torch.softmax(logprobs, dim=0).to(view.model.device)
        last = torch.tensor([d.tokens[-1] for d in active], device=view.model.device)
        vectors = view.model.embed(last)  # [active, H] float32
        return (weights.unsqueeze(1) * vectors).sum(0)

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep the drafts of the rows that stay in the batch."""
        if self._rows:
            self._rows = [self._rows[i] for i in rows.tolist()]

    def finalize(self, rows: list[RowResult]) -> list[RowResult]:
        """Every prompt's ``k`` drafts, best first, as the call's results."""
        out = []
        for row in rows:
            drafts = sorted(self._by_prompt[row.prompt_index].drafts, key=lambda d: -d.logprob)
            out.extend(
                RowResult(
                    prompt_index=row.prompt_index,
                    prompt_ids=row.prompt_ids,
                    token_ids=list(d.tokens),
                    finish_reason="stop" if d.finished else "length",
                    forward_passes=row.forward_passes,
                    score=d.logprob,
                )
                for d in drafts
            )
        return out

    def _interpolated(self, lm: float, context: Sequence[int], token: int,
                      prompt_model: NGramModel) -> float:
        if self.ngram_weight == 0.0:
            return lm
        ngram = self.corpus_model.prob(context, token, prompt_model)
        if ngram is None:
            return lm
        return (1.0 - self.ngram_weight) * lm + self.ngram_weight * ngram

    def _extend(self, drafts: list[Draft], probs: torch.Tensor, prompt: list[int],
                prompt_model: NGramModel, eos: frozenset[int]) -> list[Draft]:
        """The ``k`` best of (finished drafts) + (active drafts x top-k tokens)."""
        values, ids = torch.topk(probs, min(self.k, probs.shape[0]))
        top = list(zip(ids.tolist(), values.tolist(), strict=True))
        finished = [d for d in drafts if d.finished]
        candidates: list[tuple[float, int, int]] = []
        for i, d in enumerate(drafts):
            if d.finished:
                continue
            context = prompt + d.tokens
            for token, lm in top:
                p = self._interpolated(lm, context, token, prompt_model)
                score = d.logprob + (math.log(p) if p > 0 else -math.inf)
                candidates.append((score, i, token))
        candidates.sort(key=lambda c: -c[0])  # stable: earlier draft, likelier token first
        chosen = [
            Draft(tokens=[*drafts[i].tokens, token], logprob=score, finished=token in eos)
            for score, i, token in candidates[: self.k - len(finished)]
        ]
        return finished + chosen


def _build(params: SuperposedParams, context: BuildContext) -> Pipeline:
    if not context.model.accepts_input_embeddings:
        raise ConfigError(
            "strategy superposed needs a model that takes input embeddings (an HFModel); "
            f"got {type(context.model).__name__}"
        )
    tokenizer = context.model.tokenizer
    if params.corpus is not None:
        path = Path(params.corpus).expanduser()
        if not path.is_file():
            raise ConfigError(f"params.corpus: file not found: {path}")
        if tokenizer is None:
            raise ConfigError("params.corpus: this model has no tokenizer to read a corpus with")
    else:
        path = default_corpus_path()
    if tokenizer is None:  # token-id models: the prompt's n-grams only
        corpus_model = NGramModel(params.ngram_order)
    else:
        corpus_model = _corpus_model(str(path), path.stat().st_mtime, id(tokenizer),
                                     params.ngram_order, tokenizer)
    return Pipeline(verifier=SuperposedDecoder(params.k, params.ngram_weight, corpus_model))


SUPERPOSED = Strategy(
    name="superposed",
    summary="Superposed decoding: k drafts per prompt from one forward per token, "
    "filtered by an n-gram model.",
    params=SuperposedParams,
    guarantee=Guarantee.NONE,
    components=(("verifier", "superposed"),),
    build=_build,
)


@hookimpl
def register_strategies(register: Callable[[Strategy], None]) -> None:
    """Register ``superposed``."""
    register(SUPERPOSED)
