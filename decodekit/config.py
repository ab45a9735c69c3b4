"""Typed, validated configuration: strategy parameters and whole generation configs.

A generation config names a strategy, carries that strategy's parameters and the
settings every strategy shares (token limit, stop strings, seed, constraint). It
validates in one step against a pydantic model built for the chosen strategy, so an
error names the exact field path (:func:`decodekit.validate_config` passes the installed
strategies to :func:`validate_config`)::

    >>> import decodekit
    >>> decodekit.validate_config({"strategy": "sample", "params": {"temperature": 0.7}}).params
    SampleParams(temperature=0.7, top_k=0, top_p=1.0, ...)

Configs load from TOML, YAML or JSON files with :func:`load_config_file`.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from decodekit.errors import ConfigError, UnknownComponentError
from decodekit.textio import read_text_file

__all__ = [
    "Component",
    "ComponentSpec",
    "ConstraintSpec",
    "FileConfig",
    "GenerationConfig",
    "KernelBackend",
    "ModelSettings",
    "SamplingParams",
    "StrategyParams",
    "StrategySpec",
    "component_spec",
    "format_validation_error",
    "generation_config_schema",
    "load_config_file",
    "merge_params",
    "validate_config",
]


#: A kernel backend a component may be pinned to (``"auto"``: the installed
#: ``select_kernel_backend`` plugins' choice, else the kernels' own by device).
KernelBackend = Literal["auto", "reference", "torch", "triton"]


class StrategyParams(BaseModel):
    """Base class of every strategy's parameter model: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingParams(StrategyParams):
    """The usual sampling settings; strategies that sample subclass this model.

    Warpers apply in Hugging Face's order: temperature, top-k, top-p, min-p, typical-p.
    Penalties apply to the logits first, following vLLM: the repetition penalty counts
    prompt and generated tokens, presence and frequency penalties generated tokens only.
    """

    temperature: float = Field(1.0, ge=0.0, description="Softmax temperature; 0 means argmax.")
    top_k: int = Field(0, ge=0, description="Keep the k most likely tokens; 0 turns it off.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus: smallest set with this mass.")
    min_p: float = Field(0.0, ge=0.0, lt=1.0, description="Keep tokens with p >= min_p * p_max.")
    typical_p: float = Field(1.0, gt=0.0, le=1.0, description="Locally typical sampling mass.")
    repetition_penalty: float = Field(
        1.0, gt=0.0, description="CTRL penalty on tokens seen in prompt or output; 1 is off."
    )
    presence_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="Subtracted once from every token already generated."
    )
    frequency_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="Subtracted per occurrence in the generated tokens."
    )

    @property
    def is_greedy(self) -> bool:
        """Whether these settings reduce to argmax decoding."""
        return self.temperature == 0.0 or self.top_k == 1

    @property
    def has_penalties(self) -> bool:
        """Whether any history-dependent penalty is active."""
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )


class ConstraintSpec(BaseModel):
    """A constraint on the output, compiled by the constraint factory named by ``type``.

    The other fields belong to that constraint type (for example ``schema`` for
    ``json_schema``) and are validated by its factory.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(description="Registered constraint type, e.g. 'json_schema' or 'regex'.")


class ComponentSpec(BaseModel):
    """A registered component chosen by name, with its options (its ``Options`` model).

    Where a config takes a component (``processors``, ``cache``), a bare name is the same
    as ``{name = "...", options = {}}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The registered component's name.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Its options, validated by its Options model."
    )


#: A component entry of a config: a registered name, or a name with options.
Component = str | ComponentSpec


def component_spec(entry: Component) -> ComponentSpec:
    """The entry as a :class:`ComponentSpec` (a bare name has no options)."""
    return ComponentSpec(name=entry) if isinstance(entry, str) else entry


class GenerationConfig(BaseModel):
    """One generation: strategy, its parameters and the settings all strategies share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: str = Field("greedy", description="Name of an installed strategy.")
    params: StrategyParams = Field(
        default_factory=StrategyParams, description="The strategy's parameters."
    )
    max_new_tokens: int = Field(128, ge=1, description="Most new tokens per row.")
    # an empty stop string would match at once and end every row with no output
    stop: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Stop strings; the text ends before the first one."
    )
    seed: int | list[int] | None = Field(
        None,
        description=(
            "Random seed. An int seeds row 0 with seed and row i > 0 with a 63-bit hash of "
            "(seed, i), so different seeds never share rows; a list gives one seed per row; "
            "None draws a fresh seed."
        ),
    )
    constraint: ConstraintSpec | None = Field(None, description="Constraint on the output.")
    processors: list[Component] = Field(
        default_factory=list,
        description="Extra registered logits processors, applied before the strategy's: "
        "names, or {name, options} tables.",
    )
    cache: Component = Field(
        "full", description="A registered KV-cache policy: a name, or a {name, options} table."
    )


class ModelSettings(BaseModel):
    """Which model to load, as given in a config file's ``[model]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(None, description="Local Hugging Face model directory.")
    dtype: Literal["float32", "bfloat16"] = "float32"
    raw: bool = Field(False, description="Skip the chat template.")


class FileConfig(BaseModel):
    """A config file: the generation config plus an optional ``[model]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generation: GenerationConfig
    model: ModelSettings = Field(default_factory=ModelSettings)


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """Render a pydantic error on one line: ``field.path: reason (got X)``, ``; `` between.

    pydantic's ``"Value error, "`` prefix of validator messages is dropped: the reason
    reads the same whether a type or a validator refused the value.
    """
    problems = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"] if part != "__root__")
        path = f"{prefix}{path}" if path else (prefix.rstrip(".") or "config")
        got = item.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        reason = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{path}: {reason}{shown}")
    return "; ".join(problems)


class StrategySpec(Protocol):
    """What config validation needs of a strategy (a :class:`~decodekit.Strategy` has it).

    Config validation receives the installed strategies from its caller instead of
    asking the plugin manager, so this module depends on nothing above it.
    """

    @property
    def name(self) -> str:
        """The name users select it by."""

    @property
    def summary(self) -> str:
        """One line, used as the ``strategy`` field's description."""

    @property
    def params(self) -> type[StrategyParams]:
        """Its parameter model."""


#: The installed strategies by name, as config validation receives them.
Strategies = Mapping[str, StrategySpec]


@cache
def _config_model_for(strategy: StrategySpec) -> type[GenerationConfig]:
    """The GenerationConfig model specialised to one strategy's name and parameters."""
    model: type[GenerationConfig] = create_model(  # type: ignore[call-overload]
        f"GenerationConfig_{strategy.name}",
        __base__=GenerationConfig,
        strategy=(Literal[strategy.name], Field(description=strategy.summary)),  # type: ignore[valid-type]
        params=(strategy.params, Field(default_factory=strategy.params)),
    )
    return model


def validate_config(
    data: Mapping[str, Any] | GenerationConfig, strategies: Strategies
) -> GenerationConfig:
    """Validate a whole generation config in one step.

    Parameters
    ----------
    data : mapping or GenerationConfig
        ``{"strategy": ..., "params": {...}, "max_new_tokens": ..., ...}``.
    strategies : mapping of str to Strategy
        The installed strategies by name (``decodekit.validate_config`` passes the
        plugin manager's).

    Returns
    -------
    GenerationConfig
        With ``params`` an instance of the strategy's parameter model.

    Raises
    ------
    UnknownComponentError
        The strategy is not installed (the message lists installed strategies).
    ConfigError
        A value is invalid (the message names the field path and the reason).
    """
    if isinstance(data, GenerationConfig):
        data = data.model_dump()
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping, got {type(data).__name__}")
    data = dict(data)
    name = data.get("strategy", "greedy")
    if not isinstance(name, str):
        raise ConfigError(f"strategy: expected a strategy name, got {name!r}")
    if name not in strategies:
        raise UnknownComponentError("strategy", name, list(strategies))
    if isinstance(data.get("params"), BaseModel):
        data["params"] = data["params"].model_dump()
    data["strategy"] = name
    try:
        return _config_model_for(strategies[name]).model_validate(data)
    except ValidationError as exc:
        raise ConfigError("Invalid config: " + format_validation_error(exc)) from None


def _parse_file(path: Path) -> Any:
    """Parse a TOML/YAML/JSON file; syntax errors name the file and line."""
    text = read_text_file(path, "config")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # Python < 3.14 has no lineno/msg attributes; the message ends "(at line N, ...)"
            message = str(exc)
            found = re.search(r"\(at line (\d+), column \d+\)", message)
            line = getattr(exc, "lineno", None) or (int(found.group(1)) if found else None)
            where = f"{path}:{line}" if line else str(path)
            reason = getattr(exc, "msg", None) or (
                message[: found.start()].strip() if found else message
            )
            raise ConfigError(f"{where}: TOML syntax error: {reason}") from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: JSON syntax error: {exc.msg}") from None
    raise ConfigError(f"{path}: unsupported config format {suffix!r}; use .toml, .yaml or .json")


def load_config_file(path: str | Path, strategies: Strategies) -> FileConfig:
    """Load and validate a config file (TOML, YAML or JSON).

    The file holds the generation config at its top level, plus an optional ``model``
    table (``path``, ``dtype``, ``raw``)::

        strategy = "sample"
        max_new_tokens = 64
        seed = 0

        [params]
        temperature = 0.7
        top_p = 0.9

        [model]
        dtype = "bfloat16"

    ``strategies`` are the installed strategies by name (:func:`decodekit.load_config_file`
    passes the plugin manager's).

    Raises
    ------
    ConfigError
        The file is missing, has a syntax error (the message gives its line) or an
        invalid value (the message gives the field path).
    """
    path = Path(path)
    data = _parse_file(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of settings at the top level")
    model_data = data.pop("model", {})
    try:
        model = ModelSettings.model_validate(model_data)
    except ValidationError as exc:
        raise ConfigError(
            f"{path}: invalid config: " + format_validation_error(exc, "model.")
        ) from None
    try:
        generation = validate_config(data, strategies)
    except UnknownComponentError:
        raise
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return FileConfig(generation=generation, model=model)


def generation_config_schema(
    strategies: Strategies, strategy: str | None = None, *, file: bool = False
) -> dict[str, Any]:
    """JSON Schema of the generation config, for one strategy or for all installed ones.

    Without a strategy the schema is a ``oneOf`` over the installed strategies,
    discriminated by the ``strategy`` field.

    Parameters
    ----------
    strategies : mapping of str to Strategy
        The installed strategies by name.
    strategy : str, optional
        Only this strategy.
    file : bool
        Describe a whole config file: the generation config plus the optional ``model``
        table (:class:`ModelSettings`) that :func:`load_config_file` accepts.
    """
    model_for = _file_model_for if file else _config_model_for
    if strategy is not None:
        if strategy not in strategies:
            raise UnknownComponentError("strategy", strategy, list(strategies))
        return model_for(strategies[strategy]).model_json_schema()
    from pydantic import TypeAdapter

    models = tuple(model_for(spec) for spec in strategies.values())
    union = Annotated[Union[models], Field(discriminator="strategy")]  # type: ignore[valid-type]  # noqa: UP007
    schema: dict[str, Any] = TypeAdapter(union).json_schema()
    schema["title"] = "ConfigFile" if file else "GenerationConfig"
    return schema


@cache
def _file_model_for(strategy: StrategySpec) -> type[BaseModel]:
    """A config file's model for one strategy: its generation config plus ``model``."""
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"ConfigFile_{strategy.name}",
        __base__=_config_model_for(strategy),
        model=(
            ModelSettings,
            Field(default_factory=ModelSettings, description="Which model to load."),
        ),
    )
    return model


def merge_params(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``; where both hold a mapping, they merge key by key.

    So ``drafter_options.layers=4`` from the command line keeps the other
    ``drafter_options`` of a config file.
    """
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_params(old, value)
        else:
            merged[key] = value
    return merged
