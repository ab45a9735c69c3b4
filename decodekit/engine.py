"""The Python API: an :class:`Engine` holds a loaded model and runs generations.

>>> import decodekit
>>> engine = decodekit.Engine()                      # the embedded SmolLM2 model
>>> engine.generate("Name a colour.", strategy="greedy", max_new_tokens=8).text
'...'

:func:`decodekit.generate` is the one-call form; it keeps one engine per model.
"""

from __future__ import annotations

import operator
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import torch
from decodekit_kernels import derive_seed

from decodekit.components import CompiledConstraint
from decodekit.config import GenerationConfig, merge_params, validate_config
from decodekit.errors import ConfigError, ModelLoadError, PromptError
from decodekit.loop import DecodeState, RowResult, StepEvent, StopChecker, run, start
from decodekit.model import DTypeName, HFModel, LanguageModel, load_model
from decodekit.plugins import Registry, get_registry, pm
from decodekit.strategy import BuildContext, Pipeline, Strategy
from decodekit.textio import require_utf8

__all__ = [
    "Completion",
    "Engine",
    "GenerationRequest",
    "GenerationResult",
    "GenerationStats",
    "Stream",
    "StreamChunk",
    "generate",
    "merge_config",
]

#: A text prompt or one prompt's token ids; a 1-D integer tensor works too, and a 2-D one
#: stands for several prompts, one per row.
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
    """One generator seed per row, from the config's ``seed``.

    An int seeds row 0 with itself (one prompt with ``seed=s`` is seeded with ``s``) and
    row ``i > 0`` with a 63-bit hash of ``(seed, i)``, so that calls with different seeds
    never share rows in practice (``seed + i`` gave ``seed=0``'s row 1 the seed of
    ``seed=1``'s row 0). A list gives every row its own seed; None draws a random base.
    """
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little") >> 1
    if isinstance(seed, int):
        return [seed if i == 0 else derive_seed(seed, i) for i in range(rows)]
    if len(seed) != rows:
        raise ConfigError(f"seed: a list of seeds needs one per prompt ({rows}), got {len(seed)}")
    return list(seed)


def merge_config(
    config: GenerationConfig | Mapping[str, Any] | None,
    settings: Mapping[str, Any],
    *,
    source: str = "config",
) -> GenerationConfig:
    """Validate ``config`` overridden by ``settings``, as :meth:`Engine.request` does.

    It needs no model, so a command can report a bad value before loading one.

    Parameters
    ----------
    config : GenerationConfig or mapping or None
        The base config; of a :class:`GenerationConfig`, only the fields that were given
        count (defaults do not).
    settings : mapping
        Config fields (``strategy``, ``max_new_tokens``, ...), ``params`` (a mapping) and
        any other key as a strategy parameter. Mapping-valued parameters merge key by key
        with those of ``config``.
    source : str
        Names ``config`` in errors, e.g. ``"config file a.toml"``.

    Raises
    ------
    ConfigError
        A value is invalid, a name is not installed, or ``settings`` switch to a strategy
        that does not take some parameter that ``config`` sets.
    """
    base = _given(config, "config")
    params = _given(base.get("params"), "params")
    old = base.get("strategy", "greedy")
    new = settings.get("strategy", old)
    if new != old:
        _check_carried(params, old, new, source)
    overrides = _given(settings.get("params"), "params")
    fields = set(GenerationConfig.model_fields) - {"params"}
    for key, value in settings.items():
        if key in fields:
            base[key] = value
        elif key != "params":
            overrides[key] = value
    base["params"] = merge_params(params, overrides)
    cfg = validate_config(base)
    _check_components(cfg)
    return cfg


def _given(value: Any, what: str) -> dict[str, Any]:
    """A config or parameter set as a plain dict of the fields that were actually given."""
    from pydantic import BaseModel

    if value is None:
        return {}
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _check_carried(params: Mapping[str, Any], old: Any, new: Any, source: str) -> None:
    """Refuse parameters set for strategy ``old`` that strategy ``new`` does not take.

    Those the new strategy takes carry over (``temperature`` from ``sample`` to
    ``speculative``); dropping the others quietly would decode with settings nobody chose.
    """
    strategies = get_registry().strategies
    if not isinstance(new, str) or new not in strategies:
        return  # validate_config names the unknown strategy
    accepted = strategies[new].strategy.params.model_fields
    refused = sorted(key for key in params if key not in accepted)
    if refused:
        raise ConfigError(
            f"params {', '.join(refused)} of the {source} (strategy {old!r}) are not "
            f"parameters of strategy {new!r}; remove them or keep strategy {old!r}"
        )


def _check_components(cfg: GenerationConfig) -> None:
    """Fail on unknown processor, cache or constraint names before any model work."""
    registry = get_registry()
    for name in cfg.processors:
        registry.get("samplers", name)
    if cfg.cache != "full":
        registry.get("caches", cfg.cache)
    if cfg.constraint is not None:
        registry.get("constraints", cfg.constraint.type)


def _as_model(
    model: Any, tokenizer: Any, *, dtype: DTypeName, device: str
) -> LanguageModel:
    """The :class:`LanguageModel` for what was passed to :class:`Engine`."""
    if model is None or isinstance(model, str | os.PathLike):
        if tokenizer is not None:
            raise ConfigError(
                "tokenizer: a model directory brings its own tokenizer; pass tokenizer= "
                "only with a transformers model object"
            )
        return load_model(model, dtype=dtype, device=device)
    if isinstance(model, LanguageModel):
        if tokenizer is not None:
            raise ConfigError(f"tokenizer: {type(model).__name__} already has its tokenizer")
        return model
    if _is_transformers_model(model):
        if model.get_output_embeddings() is None:
            raise ModelLoadError(
                f"model: {type(model).__name__} has no language-model head; pass a causal "
                "LM (AutoModelForCausalLM)"
            )
        return HFModel(model, tokenizer)
    raise ModelLoadError(
        "model: expected a local model directory, a transformers causal LM or a decodekit "
        f"LanguageModel, got {type(model).__name__}"
    )


def _is_transformers_model(obj: Any) -> bool:
    # an object can only be a transformers model if transformers is already imported
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(obj, transformers.PreTrainedModel)


def _prompt_items(prompts: Any) -> tuple[list[Any], bool]:
    """The prompts as a list, and whether the call gave one prompt rather than a list."""
    if isinstance(prompts, torch.Tensor):
        return _tensor_rows(prompts, "prompts"), prompts.dim() == 1
    if _is_single(prompts):
        return [prompts], True
    if isinstance(prompts, bytes) or not isinstance(prompts, Sequence):
        raise PromptError(
            "prompts: expected a string, token ids, a tensor of token ids or a list of "
            f"those, got {type(prompts).__name__}"
        )
    return list(prompts), False


def _tensor_rows(tensor: torch.Tensor, what: str) -> list[list[int]]:
    """Token-id rows of a 1-D (one prompt) or 2-D (one prompt per row) integer tensor."""
    dtype = tensor.dtype
    if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        raise PromptError(f"{what}: a tensor of token ids needs an integer dtype, got {dtype}")
    if tensor.dim() == 1:
        return [tensor.tolist()]
    if tensor.dim() == 2:
        return tensor.tolist()  # type: ignore[no-any-return]
    raise PromptError(
        f"{what}: a tensor of token ids must be 1-D (one prompt) or 2-D (one prompt per "
        f"row), got {tensor.dim()}-D"
    )


def _token_ids(item: Any, index: int) -> list[int]:
    """One prompt's token ids; floats and other non-integers are refused, not truncated."""
    if isinstance(item, torch.Tensor):
        if item.dim() != 1:
            raise PromptError(f"prompt {index}: a tensor prompt must be 1-D, got {item.dim()}-D")
        item = _tensor_rows(item, f"prompt {index}")[0]
    if not isinstance(item, Sequence):
        raise PromptError(
            f"prompt {index}: expected a string or token ids, got {type(item).__name__}"
        )
    try:
        return [operator.index(t) for t in item]
    except TypeError:
        bad = next(t for t in item if not hasattr(t, "__index__"))
        raise PromptError(
            f"prompt {index}: token ids must be integers, got {type(bad).__name__}"
        ) from None


class Engine:
    """Holds a loaded model and runs generations with any installed strategy.

    Parameters
    ----------
    model : LanguageModel, transformers model, str, Path or None
        A loaded model, a transformers causal LM object (wrapped in
        :class:`~decodekit.HFModel`), a local Hugging Face model directory, or None for the
        embedded SmolLM2-135M-Instruct.
    tokenizer : transformers tokenizer, optional
        The tokenizer of a transformers model object; needed for text prompts.
    dtype : {"float32", "bfloat16"}
        Used when loading from a directory.
    device : str
        Used when loading from a directory.

    Examples
    --------
    >>> engine = Engine()
    >>> out = engine.generate(["Hi", "Hello"], strategy="sample", temperature=0.7, seed=1)
    >>> [c.finish_reason for c in out]
    ['length', 'stop']
    """

    def __init__(
        self,
        model: LanguageModel | str | Path | Any | None = None,
        *,
        tokenizer: Any = None,
        dtype: DTypeName = "float32",
        device: str = "cpu",
    ) -> None:
        self.model = _as_model(model, tokenizer, dtype=dtype, device=device)

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
        is a parameter of the strategy. They override ``config`` (see
        :func:`merge_config`: a ``strategy`` other than the config's keeps the config's
        parameters it also takes and refuses the others). ``logits_processors`` are
        processor objects (decodekit :class:`~decodekit.LogitsProcessor` or transformers
        ``LogitsProcessor``) applied first, in order.
        """
        output_type = None
        if "constraint" in settings:
            settings = dict(settings)
            settings["constraint"], output_type = constraint_from(settings["constraint"])
        cfg = self._config(config, settings)
        rows = self._encode(prompts, raw=raw)
        registry = get_registry()
        strategy = registry.strategies[cfg.strategy].strategy
        pipeline = strategy.build_pipeline(
            cfg.params, BuildContext(model=self.model, registry=registry)
        )
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
        prompts : str, list of int, tensor, or a list of those
            Text prompts (the chat template applies unless ``raw``) or token ids; an
            integer tensor is one prompt (1-D) or one prompt per row (2-D).
        config : GenerationConfig or mapping, optional
            A whole generation config; ``settings`` override its fields.
        raw : bool
            Skip the chat template.
        **settings
            Config fields or strategy parameters, e.g. ``strategy="sample"``,
            ``temperature=0.7``, ``max_new_tokens=64``, ``seed=0``; and
            ``logits_processors``, processor objects as for :meth:`request`.
        """
        items, single = _prompt_items(prompts)
        result = self.run(self.request(items, config, raw=raw, **settings))
        if single and len(result.completions) == 1:
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
        return merge_config(config, settings)

    def _encode(self, prompts: Prompt | Sequence[Prompt], *, raw: bool) -> list[list[int]]:
        items, _ = _prompt_items(prompts)
        if not items:
            raise PromptError("no prompts given")
        rows = []
        for index, item in enumerate(items):
            if isinstance(item, str):
                if not item.strip():
                    raise PromptError(f"prompt {index} is empty")
                ids = self.model.encode(require_utf8(item, f"prompt {index}", PromptError), raw=raw)
            else:
                ids = _token_ids(item, index)
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

