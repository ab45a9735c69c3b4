"""A call's settings resolved into one validated :class:`~decodekit.GenerationConfig`.

Config validation itself (:mod:`decodekit.config`) knows nothing of plugins; the
functions here give it the installed strategies and check the names of the components a
config selects, so a command can report a bad value before it loads any model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from decodekit_kernels import derive_seed

from decodekit import config as _config
from decodekit.config import FileConfig, GenerationConfig, component_spec, merge_params
from decodekit.errors import ConfigError
from decodekit.plugins import get_registry
from decodekit.strategy import component_options

__all__ = [
    "constraint_from",
    "generation_config_schema",
    "load_config_file",
    "merge_config",
    "row_seeds",
    "validate_config",
]


def validate_config(data: Mapping[str, Any] | GenerationConfig) -> GenerationConfig:
    """Validate a whole generation config against the installed strategies, in one step.

    :func:`decodekit.config.validate_config` with the plugin manager's strategies: the
    same parameters, result and errors (an unknown strategy lists the installed ones).
    """
    return _config.validate_config(data, get_registry().named_strategies())


def load_config_file(path: str | Path) -> FileConfig:
    """Load and validate a config file against the installed strategies.

    See :func:`decodekit.config.load_config_file` for the format.

    Raises
    ------
    ConfigError
        The file is missing, has a syntax error (the message gives its line) or an
        invalid value (the message gives the field path).
    """
    return _config.load_config_file(path, get_registry().named_strategies())


def generation_config_schema(strategy: str | None = None, *, file: bool = False) -> dict[str, Any]:
    """JSON Schema of the generation config for the installed strategies.

    See :func:`decodekit.config.generation_config_schema`; ``strategy`` limits it to one.
    """
    return _config.generation_config_schema(
        get_registry().named_strategies(), strategy, file=file
    )


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


def row_seeds(seed: int | list[int] | None, rows: int) -> list[int]:
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
    for i, entry in enumerate(cfg.processors):
        spec = component_spec(entry)
        component_options(registry.get("samplers", spec.name), "samplers", spec.name,
                          spec.options, where=f"processors.{i}.options.")
    cache = component_spec(cfg.cache)
    component_options(registry.get("caches", cache.name), "caches", cache.name, cache.options,
                      where="cache.options.")
    if cfg.constraint is not None:
        registry.get("constraints", cfg.constraint.type)
