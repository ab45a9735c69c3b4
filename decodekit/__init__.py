"""decodekit: pluggable decoding strategies for language models.

A small core (hook specs, plugin manager, config, model adapter, decode loop) and
strategies packaged as plugins that register through the ``decodekit`` entry-point group.

>>> import decodekit
>>> decodekit.generate("Write a haiku.", strategy="sample", temperature=0.7, seed=0).text
'...'

Importing this package is cheap; torch and transformers load on first use of a name
that needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

#: Marker for hook implementations: ``@decodekit.hookimpl``.
hookimpl = pluggy.HookimplMarker("decodekit")

_LAZY: dict[str, str] = {
    # engine and results
    "Engine": "decodekit.engine",
    "generate": "decodekit.engine",
    "Completion": "decodekit.engine",
    "GenerationRequest": "decodekit.engine",
    "GenerationResult": "decodekit.engine",
    "GenerationStats": "decodekit.engine",
    "Stream": "decodekit.engine",
    "StreamChunk": "decodekit.engine",
    # strategies and components
    "Strategy": "decodekit.strategy",
    "Pipeline": "decodekit.strategy",
    "Guarantee": "decodekit.strategy",
    "BuildContext": "decodekit.strategy",
    "Drafter": "decodekit.components",
    "Verifier": "decodekit.components",
    "LogitsProcessor": "decodekit.components",
    "CachePolicy": "decodekit.components",
    "ConstraintFactory": "decodekit.components",
    "CompiledConstraint": "decodekit.components",
    "DraftTree": "decodekit.components",
    "DecodeView": "decodekit.components",
    "Selection": "decodekit.components",
    "StepOutput": "decodekit.components",
    "Warper": "decodekit.sampling",
    # config
    "GenerationConfig": "decodekit.config",
    "StrategyParams": "decodekit.config",
    "SamplingParams": "decodekit.config",
    "validate_config": "decodekit.config",
    "load_config_file": "decodekit.config",
    # plugins
    "get_registry": "decodekit.plugins",
    "get_plugins": "decodekit.plugins",
    "load_plugins": "decodekit.plugins",
    # models
    "LanguageModel": "decodekit.model",
    "HFModel": "decodekit.model",
    "load_model": "decodekit.model",
    # errors
    "DecodekitError": "decodekit.errors",
    "ConfigError": "decodekit.errors",
    "ConstraintError": "decodekit.errors",
    "ModelLoadError": "decodekit.errors",
    "PluginConflictError": "decodekit.errors",
    "PluginContractError": "decodekit.errors",
    "PromptError": "decodekit.errors",
    "UnknownComponentError": "decodekit.errors",
}

__all__ = [
    "BuildContext",
    "CachePolicy",
    "CompiledConstraint",
    "Completion",
    "ConfigError",
    "ConstraintError",
    "ConstraintFactory",
    "DecodeView",
    "DecodekitError",
    "DraftTree",
    "Drafter",
    "Engine",
    "GenerationConfig",
    "GenerationRequest",
    "GenerationResult",
    "GenerationStats",
    "Guarantee",
    "HFModel",
    "LanguageModel",
    "LogitsProcessor",
    "ModelLoadError",
    "Pipeline",
    "PluginConflictError",
    "PluginContractError",
    "PromptError",
    "SamplingParams",
    "Selection",
    "StepOutput",
    "Strategy",
    "StrategyParams",
    "Stream",
    "StreamChunk",
    "UnknownComponentError",
    "Verifier",
    "Warper",
    "__version__",
    "generate",
    "get_plugins",
    "get_registry",
    "hookimpl",
    "load_config_file",
    "load_model",
    "load_plugins",
    "validate_config",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("decodekit")
        except PackageNotFoundError:
            return "0+unknown"
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'decodekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from decodekit.components import (
        CachePolicy,
        CompiledConstraint,
        ConstraintFactory,
        DecodeView,
        Drafter,
        DraftTree,
        LogitsProcessor,
        Selection,
        StepOutput,
        Verifier,
    )
    from decodekit.config import (
        GenerationConfig,
        SamplingParams,
        StrategyParams,
        load_config_file,
        validate_config,
    )
    from decodekit.engine import (
        Completion,
        Engine,
        GenerationRequest,
        GenerationResult,
        GenerationStats,
        Stream,
        StreamChunk,
        generate,
    )
    from decodekit.errors import (
        ConfigError,
        ConstraintError,
        DecodekitError,
        ModelLoadError,
        PluginConflictError,
        PluginContractError,
        PromptError,
        UnknownComponentError,
    )
    from decodekit.model import HFModel, LanguageModel, load_model
    from decodekit.plugins import get_plugins, get_registry, load_plugins
    from decodekit.sampling import Warper
    from decodekit.strategy import BuildContext, Guarantee, Pipeline, Strategy
