"""The Python API: an :class:`Engine` holds a loaded model and runs generations.

>>> import decodekit
>>> engine = decodekit.Engine()                      # the embedded SmolLM2 model
>>> engine.generate("Name a colour.", strategy="greedy", max_new_tokens=8).text
'...'

:func:`decodekit.generate` is the one-call form; it keeps one engine per model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from decodekit.components import CompiledConstraint
from decodekit.config import GenerationConfig, validate_config
from decodekit.errors import ConfigError, PromptError
from decodekit.loop import DecodeState, RowResult, StepEvent, StopChecker, run, start
from decodekit.model import DTypeName, LanguageModel, load_model
from decodekit.plugins import Registry, get_registry, pm
from decodekit.strategy import BuildContext, Pipeline, Strategy

__all__ = [
    "Completion",
    "Engine",
    "GenerationRequest",
    "GenerationResult",
    "GenerationStats",
    "Stream",
    "StreamChunk",
    "generate",
]

Prompt = str | Sequence[int]


@dataclass(frozen=True)
class GenerationStats:
    """Statistics of one generation call (or of one row of it).

    Attributes
    ----------
    new_tokens : int
        Tokens generated.
    forward_passes : int
        Target-model forwards.
    seconds : float
        Wall time of decoding, model load excluded.
    tokens_per_second : float
        ``new_tokens / seconds``.
    drafted_tokens : int
        Draft nodes proposed.
    accepted_draft_tokens : int
        Draft tokens committed.
    mean_accepted_per_forward : float
        Tokens committed per target forward (1.0 without drafts).
    """

    new_tokens: int
    forward_passes: int
    seconds: float
    tokens_per_second: float
    drafted_tokens: int = 0
    accepted_draft_tokens: int = 0
    mean_accepted_per_forward: float = 0.0

    @classmethod
    def of(
        cls, new_tokens: int, forwards: int, seconds: float, drafted: int, accepted: int
    ) -> GenerationStats:
        """Stats with the derived rates filled in."""
        return cls(
            new_tokens=new_tokens,
            forward_passes=forwards,
            seconds=seconds,
            tokens_per_second=new_tokens / seconds if seconds > 0 else 0.0,
            drafted_tokens=drafted,
            accepted_draft_tokens=accepted,
            mean_accepted_per_forward=new_tokens / forwards if forwards else 0.0,
        )

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict for JSON output."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Completion:
    """One row's output.

    Attributes
    ----------
    text : str
        Generated text only, special tokens skipped, cut before a stop string.
    token_ids : list of int
        Generated token ids (EOS included when it ended the row).
    finish_reason : str
        ``"stop"`` (EOS, stop string or completed constraint) or ``"length"``.
    strategy : str
    stats : GenerationStats
        This row's statistics (``seconds`` is the whole call's).
    prompt_index : int
        Which prompt of the call this row answers.
    score : float or None
        The strategy's score for the row, if it reports one.
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    strategy: str
    stats: GenerationStats
    prompt_index: int = 0
    score: float | None = None
    parsed: Any = None

    def as_dict(self) -> dict[str, Any]:
        """The CLI's JSON object for this row."""
        stats = self.stats.as_dict()
        stats["finish_reason"] = self.finish_reason
        out: dict[str, Any] = {
            "text": self.text,
            "token_ids": self.token_ids,
            "strategy": self.strategy,
            "stats": stats,
        }
        if self.score is not None:
            out["score"] = self.score
        if self.parsed is not None:
            out["parsed"] = _jsonable(self.parsed)
        return out


def _jsonable(value: Any) -> Any:
    from pydantic import BaseModel

    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


@dataclass
class GenerationRequest:
    """A validated generation call, as the ``run_generation`` hook receives it.

    Attributes
    ----------
    prompt_ids : list of list of int
        Token ids per row.
    config : GenerationConfig
    model : LanguageModel
    strategy : Strategy
    pipeline : Pipeline
    seeds : list of int
        One per row.
    constraint : CompiledConstraint or None
    """

    prompt_ids: list[list[int]]
    config: GenerationConfig
    model: LanguageModel
    strategy: Strategy
    pipeline: Pipeline
    seeds: list[int]
    constraint: CompiledConstraint | None = None
    output_type: type | None = None


@dataclass
class GenerationResult:
    """Every row's completion and the call's statistics."""

    completions: list[Completion]
    stats: GenerationStats


@dataclass(frozen=True)
class StreamChunk:
    """Tokens one row gained in one step.

    Attributes
    ----------
    prompt_index : int
    token_ids : list of int
        New token ids this step.
    text : str
        New text this step (may be empty while a character is incomplete).
    finish_reason : str or None
        Set on the row's last chunk.
    """

    prompt_index: int
    token_ids: list[int]
    text: str
    finish_reason: str | None


def _start(request: GenerationRequest) -> tuple[DecodeState, Iterator[StepEvent]]:
    config = request.config
    state = start(
        request.model, request.prompt_ids, max_new_tokens=config.max_new_tokens,
        seeds=request.seeds,
    )
    if request.constraint is not None:
        request.constraint.start(len(request.prompt_ids))
    stops = StopChecker(request.model, config.stop) if config.stop else None
    events = run(state, request.pipeline, constraint=request.constraint, stop_checker=stops)
    return state, events


def _row_text(model: LanguageModel, row: RowResult) -> str:
    text = model.decode(row.token_ids)
    return text[: row.stop_index] if row.stop_index is not None else text


def _finish(request: GenerationRequest, state: DecodeState, seconds: float) -> GenerationResult:
    rows = request.pipeline.verifier.finalize(sorted(state.done, key=lambda r: r.prompt_index))
    completions = []
    for row in rows:
        stats = GenerationStats.of(
            len(row.token_ids), row.forward_passes, seconds, row.drafted_tokens,
            row.accepted_draft_tokens,
        )
        text = _row_text(request.model, row)
        completions.append(
            Completion(
                text=text,
                parsed=_parse_output(request, text, row.finish_reason),
                token_ids=list(row.token_ids),
                finish_reason=row.finish_reason or "length",
                strategy=request.config.strategy,
                stats=stats,
                prompt_index=row.prompt_index,
                score=row.score,
            )
        )
    total = GenerationStats.of(  # over the reported rows (beam search keeps its own)
        sum(len(r.token_ids) for r in rows),
        state.forward_passes,
        seconds,
        sum(r.drafted_tokens for r in rows),
        sum(r.accepted_draft_tokens for r in rows),
    )
    return GenerationResult(completions=completions, stats=total)


def _parse_output(request: GenerationRequest, text: str, finish_reason: str | None) -> Any:
    """The output as an instance of the requested pydantic model (complete values only)."""
    if request.output_type is None or finish_reason != "stop":
        return None
    from pydantic import ValidationError

    try:
        return request.output_type.model_validate_json(text)  # type: ignore[attr-defined]
    except ValidationError:  # a stop string cut the value short: it is not a complete value
        return None


def constraint_from(value: Any) -> tuple[dict[str, Any] | None, type | None]:
    """Normalize a ``constraint`` setting: a spec mapping, a pydantic model class, or None.

    A pydantic model class becomes a ``json_schema`` constraint on its JSON Schema, and
    complete outputs are parsed into it (:attr:`Completion.parsed`).
    """
    from pydantic import BaseModel

    if isinstance(value, type) and issubclass(value, BaseModel):
        return {"type": "json_schema", "schema": value.model_json_schema()}, value
    if value is None or isinstance(value, Mapping):
        return (dict(value) if value is not None else None), None
    if hasattr(value, "model_dump"):
        return value.model_dump(), None
    raise ConfigError(
        f"constraint: expected a mapping with a 'type' or a pydantic model class, got {value!r}"
    )


def execute(request: GenerationRequest) -> GenerationResult:
    """Run the decode loop for a request to the end (the default ``run_generation``)."""
    began = time.perf_counter()
    state, events = _start(request)
    for _ in events:
        pass
    return _finish(request, state, time.perf_counter() - began)


class Stream:
    """Iterator of :class:`StreamChunk` for a generation; ``result`` is set at the end."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.result: GenerationResult | None = None

    def __iter__(self) -> Iterator[StreamChunk]:
        """Yield chunks as steps complete."""
        began = time.perf_counter()
        state, events = _start(self.request)
        model = self.request.model
        shown: dict[int, str] = {}
        for event in events:
            for row, tokens in event.appended:
                text = _row_text(model, row)
                # hold back a trailing replacement char: a multi-byte character is incomplete
                visible = text.rstrip("\ufffd") if row.finish_reason is None else text
                before = shown.get(row.prompt_index, "")
                delta = visible[len(before) :] if visible.startswith(before) else ""
                shown[row.prompt_index] = before + delta
                yield StreamChunk(row.prompt_index, tokens, delta, row.finish_reason)
        self.result = _finish(self.request, state, time.perf_counter() - began)


def _seeds(seed: int | list[int] | None, rows: int) -> list[int]:
    if seed is None:
        base = int.from_bytes(os.urandom(4), "little")
        return [base + i for i in range(rows)]
    if isinstance(seed, int):
        return [seed + i for i in range(rows)]
    if len(seed) != rows:
        raise ConfigError(f"seed: a list of seeds needs one per prompt ({rows}), got {len(seed)}")
    return list(seed)


class Engine:
    """Holds a loaded model and runs generations with any installed strategy.

    Parameters
    ----------
    model : LanguageModel, str, Path or None
        A loaded model, a local Hugging Face model directory, or None for the embedded
        SmolLM2-135M-Instruct.
    dtype : {"float32", "bfloat16"}
        Used when loading.
    device : str
        Used when loading.

    Examples
    --------
    >>> engine = Engine()
    >>> out = engine.generate(["Hi", "Hello"], strategy="sample", temperature=0.7, seed=1)
    >>> [c.finish_reason for c in out]
    ['length', 'stop']
    """

    def __init__(
        self,
        model: LanguageModel | str | Path | None = None,
        *,
        dtype: DTypeName = "float32",
        device: str = "cpu",
    ) -> None:
        if isinstance(model, LanguageModel):
            self.model = model
        else:
            self.model = load_model(model, dtype=dtype, device=device)

    @property
    def registry(self) -> Registry:
        """Installed strategies and components."""
        return get_registry()

    def request(
        self,
        prompts: Prompt | Sequence[Prompt],
        config: GenerationConfig | Mapping[str, Any] | None = None,
        *,
        raw: bool = False,
        logits_processors: Sequence[Any] = (),
        **settings: Any,
    ) -> GenerationRequest:
        """Validate a call and build its pipeline (everything short of decoding).

        ``settings`` are generation-config fields (``strategy``, ``max_new_tokens``,
        ``stop``, ``seed``, ``constraint``, ``processors``, ``cache``); any other keyword
        is a parameter of the strategy. They override ``config``. ``logits_processors``
        are processor objects (decodekit :class:`~decodekit.LogitsProcessor` or
        transformers ``LogitsProcessor``) applied first, in order.
        """
        output_type = None
        if "constraint" in settings:
            settings = dict(settings)
            settings["constraint"], output_type = constraint_from(settings["constraint"])
        cfg = self._config(config, settings)
        rows = self._encode(prompts, raw=raw)
        registry = get_registry()
        strategy = registry.strategies[cfg.strategy].strategy
        pipeline = strategy.build(cfg.params, BuildContext(model=self.model, registry=registry))
        for spec in reversed(cfg.processors):
            pipeline.processors.insert(0, registry.get("samplers", spec)())
        if logits_processors:
            from decodekit.hf import as_processor

            pipeline.processors[:0] = [as_processor(p) for p in logits_processors]
        if cfg.cache != "full":
            pipeline.cache_policy = registry.get("caches", cfg.cache)()
        constraint = None
        if cfg.constraint is not None:
            factory = registry.get("constraints", cfg.constraint.type)()
            spec_data = cfg.constraint.model_dump()
            constraint = factory.compile(spec_data, self.model.tokenizer)
        return GenerationRequest(
            prompt_ids=rows,
            config=cfg,
            model=self.model,
            strategy=strategy,
            pipeline=pipeline,
            seeds=_seeds(cfg.seed, len(rows)),
            constraint=constraint,
            output_type=output_type,
        )

    @overload
    def generate(
        self, prompts: str, config: GenerationConfig | Mapping[str, Any] | None = ...,
        *, raw: bool = ..., **settings: Any,
    ) -> Completion: ...

    @overload
    def generate(
        self, prompts: Sequence[Prompt], config: GenerationConfig | Mapping[str, Any] | None = ...,
        *, raw: bool = ..., **settings: Any,
    ) -> list[Completion]: ...

    def generate(
        self,
        prompts: Prompt | Sequence[Prompt],
        config: GenerationConfig | Mapping[str, Any] | None = None,
        *,
        raw: bool = False,
        **settings: Any,
    ) -> Completion | list[Completion]:
        """Generate for one prompt (returns a Completion) or several (returns a list).

        Strategies that return several sequences per prompt (beam search with
        ``num_return_sequences``) return a list even for one prompt; each completion's
        ``prompt_index`` names its prompt.

        Parameters
        ----------
        prompts : str, list of int, or a list of those
            Text prompts (the chat template applies unless ``raw``) or token ids.
        config : GenerationConfig or mapping, optional
            A whole generation config; ``settings`` override its fields.
        raw : bool
            Skip the chat template.
        **settings
            Config fields or strategy parameters, e.g. ``strategy="sample"``,
            ``temperature=0.7``, ``max_new_tokens=64``, ``seed=0``; and
            ``logits_processors``, processor objects as for :meth:`request`.
        """
        result = self.run(self.request(prompts, config, raw=raw, **settings))
        if _is_single(prompts) and len(result.completions) == 1:
            return result.completions[0]
        return result.completions

    def run(self, request: GenerationRequest) -> GenerationResult:
        """Decode a prepared request through the ``run_generation`` hook."""
        result = pm.hook.run_generation(request=request)
        if result is None:
            raise RuntimeError("no run_generation implementation returned a result")
        return result

    def stream(
        self,
        prompts: Prompt | Sequence[Prompt],
        config: GenerationConfig | Mapping[str, Any] | None = None,
        *,
        raw: bool = False,
        **settings: Any,
    ) -> Stream:
        """Like :meth:`generate`, but iterate over :class:`StreamChunk` as tokens arrive."""
        return Stream(self.request(prompts, config, raw=raw, **settings))

    def _config(
        self, config: GenerationConfig | Mapping[str, Any] | None, settings: dict[str, Any]
    ) -> GenerationConfig:
        base: dict[str, Any] = {}
        if isinstance(config, GenerationConfig):
            base = config.model_dump()
        elif config is not None:
            base = dict(config)
        if "strategy" in settings and settings["strategy"] != base.get("strategy", "greedy"):
            base.pop("params", None)  # parameters of another strategy do not carry over
        params = dict(base.get("params") or {})
        params.update(settings.get("params") or {})
        fields = set(GenerationConfig.model_fields) - {"params"}
        for key, value in settings.items():
            if key in fields:
                base[key] = value
            elif key != "params":
                params[key] = value
        base["params"] = params
        return validate_config(base)

    def _encode(self, prompts: Prompt | Sequence[Prompt], *, raw: bool) -> list[list[int]]:
        items: list[Prompt] = [prompts] if _is_single(prompts) else list(prompts)  # type: ignore[list-item]
        if not items:
            raise PromptError("no prompts given")
        rows = []
        for index, item in enumerate(items):
            if isinstance(item, str):
                if not item.strip():
                    raise PromptError(f"prompt {index} is empty")
                ids = self.model.encode(item, raw=raw)
            else:
                ids = [int(t) for t in item]
                if not ids:
                    raise PromptError(f"prompt {index} is empty")
                bad = [t for t in ids if not 0 <= t < self.model.vocab_size]
                if bad:
                    raise PromptError(
                        f"prompt {index}: token id {bad[0]} is outside the vocabulary "
                        f"(0..{self.model.vocab_size - 1})"
                    )
            if len(ids) >= self.model.context_length:
                raise PromptError(
                    f"prompt {index} is {len(ids)} tokens long; the model's context holds "
                    f"{self.model.context_length} tokens (prompt plus output)"
                )
            rows.append(ids)
        return rows


def _is_single(prompts: Any) -> bool:
    if isinstance(prompts, str):
        return True
    return bool(prompts) and isinstance(prompts, Sequence) and isinstance(prompts[0], int)


_engines: dict[tuple[str, str, str], Engine] = {}


def generate(
    prompts: Prompt | Sequence[Prompt],
    *,
    model: str | Path | None = None,
    dtype: DTypeName = "float32",
    device: str = "cpu",
    **settings: Any,
) -> Completion | list[Completion]:
    """Generate in one call, loading (and keeping) an :class:`Engine` for the model.

    Parameters
    ----------
    prompts : str, list of int, or a list of those
    model : str or Path or None
        A local Hugging Face model directory; None for the embedded model.
    dtype, device
        As for :class:`Engine`.
    **settings
        Generation config fields and strategy parameters, as for :meth:`Engine.generate`.

    Examples
    --------
    >>> import decodekit
    >>> decodekit.generate("Say hi.", strategy="greedy", max_new_tokens=4).finish_reason
    'length'
    """
    key = (str(model), dtype, device)
    if key not in _engines:
        _engines[key] = Engine(model, dtype=dtype, device=device)
    return _engines[key].generate(prompts, **settings)

