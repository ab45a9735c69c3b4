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

Why it runs outside the decode loop: the loop's :class:`~decodekit.model.LanguageModel`
forward takes token ids, one sequence per row, and every row returns one sequence. The
superposed input is a weighted sum of embeddings that is no token, and one row yields
``k`` sequences. So the plugin implements the ``run_generation`` hook for this strategy
and runs its own forward on the Hugging Face model (``inputs_embeds``) with its own
``DynamicCache``; every other strategy still goes through the loop. Constraints and
logits processors are not supported (a clear error says so). Prompts of a batch are
decoded one after the other.

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
    Completion,
    DecodeView,
    DraftTree,
    GenerationRequest,
    GenerationResult,
    GenerationStats,
    Guarantee,
    Pipeline,
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


class SuperposedDecoder(Verifier):
    """Runs superposed decoding over a Hugging Face model (its own forward and cache).

    It is the pipeline's verifier so that the strategy builds like every other one, but it
    never verifies loop steps: the plugin's ``run_generation`` hook calls
    :meth:`generate` instead of the decode loop.

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

    def __init__(self, k: int, ngram_weight: float, corpus_model: NGramModel) -> None:
        self.k = k
        self.ngram_weight = ngram_weight
        self.corpus_model = corpus_model

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Not used: superposed decoding cannot run in the token-id decode loop."""
        raise RuntimeError(
            "superposed decoding feeds superposed embeddings, which the decode loop cannot; "
            "it runs through its run_generation hook (decodekit.Engine.generate)"
        )

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

    @torch.inference_mode()
    def generate(
        self, model: Any, prompt: list[int], max_new_tokens: int
    ) -> tuple[list[Draft], int]:
        """Decode one prompt into ``k`` drafts.

        Parameters
        ----------
        model : decodekit.model.HFModel
            The target model (its ``hf`` module is called with ``inputs_embeds``).
        prompt : list of int
        max_new_tokens : int

        Returns
        -------
        (list of Draft, int)
            The drafts, best first, and the number of forwards run.
        """
        from transformers import DynamicCache

        hf = model.hf
        device = model.device
        embed = hf.get_input_embeddings()
        prompt_model = NGramModel(self.corpus_model.order).add(prompt)
        cache_kv = DynamicCache(config=hf.config)
        out = hf(input_ids=torch.tensor([prompt], device=device), cache=cache_kv,
                 use_cache=True, logits_to_keep=1)
        forwards = 1
        drafts = [Draft()]
        for step in range(max_new_tokens):
            probs = torch.softmax(out.logits[0, -1].float(), dim=-1)
            drafts = self._extend(drafts, probs, prompt, prompt_model, model.eos_token_ids)
            active = [d for d in drafts if not d.finished]
            if not active or step == max_new_tokens - 1:
                break
            logprobs = torch.tensor([d.logprob for d in active], dtype=torch.float32)
            weights = torch.softmax(logprobs, dim=0).to(device)  # normalized probabilities
            last = torch.tensor([d.tokens[-1] for d in active], device=device)
            vectors = embed(last).float()  # [active, H]
            mixed = (weights.unsqueeze(1) * vectors).sum(0).to(model.dtype)
            position = torch.tensor([[len(prompt) + step]], device=device)
            out = hf(inputs_embeds=mixed.view(1, 1, -1), position_ids=position,
                     cache=cache_kv, use_cache=True, logits_to_keep=1)
            forwards += 1
        drafts.sort(key=lambda d: -d.logprob)
        return drafts, forwards


def _build(params: SuperposedParams, context: BuildContext) -> Pipeline:
    if not hasattr(context.model, "hf"):
        raise ConfigError(
            "strategy superposed needs a Hugging Face model (it feeds input embeddings); "
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


@hookimpl
def run_generation(request: GenerationRequest) -> GenerationResult | None:
    """Run superposed decoding for its own strategy; None (the decode loop) otherwise."""
    decoder = request.pipeline.verifier
    if not isinstance(decoder, SuperposedDecoder):
        return None
    if request.constraint is not None:
        raise ConfigError("constraint: superposed decoding does not support constraints")
    if request.pipeline.processors:
        raise ConfigError("processors: superposed decoding does not support logits processors")
    import time

    config = request.config
    model = request.model
    start = time.perf_counter()
    results: list[tuple[int, Draft, int]] = []
    total_forwards = 0
    for index, prompt in enumerate(request.prompt_ids):
        budget = min(config.max_new_tokens, model.context_length - len(prompt))
        drafts, forwards = decoder.generate(model, list(prompt), budget)
        total_forwards += forwards
        results.extend((index, d, forwards) for d in drafts)
    seconds = time.perf_counter() - start
    completions = []
    for index, draft, forwards in results:
        text = model.decode(draft.tokens)
        reason = "stop" if draft.finished else "length"
        cuts = [i for i in (text.find(s) for s in config.stop if s) if i >= 0]
        if cuts:
            text, reason = text[: min(cuts)], "stop"
        completions.append(Completion(
            text=text, token_ids=list(draft.tokens), finish_reason=reason,
            strategy=config.strategy, stats=GenerationStats.of(len(draft.tokens), forwards,
                                                               seconds, 0, 0),
            prompt_index=index, score=draft.logprob,
        ))
    stats = GenerationStats.of(sum(len(c.token_ids) for c in completions), total_forwards,
                               seconds, 0, 0)
    return GenerationResult(completions=completions, stats=stats)
