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

from decodekit.hookspecs import hookimpl

_LAZY: dict[str, str] = {
    # engine and results
    "Engine": "decodekit.engine",
    "generate": "decodekit.engine",
    "Completion": "decodekit.generation",
    "GenerationRequest": "decodekit.generation",
    "GenerationResult": "decodekit.generation",
    "GenerationStats": "decodekit.generation",
    "Stream": "decodekit.execute",
    "StreamChunk": "decodekit.generation",
    # strategies and components
    "Strategy": "decodekit.strategy",
    "Pipeline": "decodekit.strategy",
    "Guarantee": "decodekit.strategy",
    "BuildContext": "decodekit.strategy",
    "Drafter": "decodekit.contracts",
    "Verifier": "decodekit.contracts",
    "LogitsProcessor": "decodekit.contracts",
    "CachePolicy": "decodekit.contracts",
    "ConstraintFactory": "decodekit.contracts",
    "CompiledConstraint": "decodekit.contracts",
    "DraftTree": "decodekit.contracts",
    "DecodeView": "decodekit.contracts",
    "Selection": "decodekit.contracts",
    "StepOutput": "decodekit.contracts",
    "RowResult": "decodekit.contracts",
    "StepBatch": "decodekit.contracts",
    "ForwardResult": "decodekit.contracts",
    "KVCache": "decodekit.contracts",
    "Warper": "decodekit.sampling",
    # config
    "GenerationConfig": "decodekit.config",
    "StrategyParams": "decodekit.config",
    "SamplingParams": "decodekit.config",
    "validate_config": "decodekit.settings",
    "load_config_file": "decodekit.settings",
    # plugins
    "get_registry": "decodekit.plugins",
    "get_plugins": "decodekit.plugins",
    "load_plugins": "decodekit.plugins",
    # models
    "LanguageModel": "decodekit.contracts",
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
    "ForwardResult",
    "GenerationConfig",
    "GenerationRequest",
    "GenerationResult",
    "GenerationStats",
    "Guarantee",
    "HFModel",
    "KVCache",
    "LanguageModel",
    "LogitsProcessor",
    "ModelLoadError",
    "Pipeline",
    "PluginConflictError",
    "PluginContractError",
    "PromptError",
    "RowResult",
    "SamplingParams",
    "Selection",
    "StepBatch",
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
    from decodekit.config import (
        GenerationConfig,
        SamplingParams,
        StrategyParams,
    )
    from decodekit.contracts import (
        CachePolicy,
        CompiledConstraint,
        ConstraintFactory,
        DecodeView,
        Drafter,
        DraftTree,
        ForwardResult,
        KVCache,
        LanguageModel,
        LogitsProcessor,
        RowResult,
        Selection,
        StepBatch,
        StepOutput,
        Verifier,
    )
    from decodekit.engine import Engine, generate
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
    from decodekit.execute import Stream
    from decodekit.generation import (
        Completion,
        GenerationRequest,
        GenerationResult,
        GenerationStats,
        StreamChunk,
    )
    from decodekit.model import HFModel, load_model
    from decodekit.plugins import get_plugins, get_registry, load_plugins
    from decodekit.sampling import Warper
    from decodekit.settings import load_config_file, validate_config
    from decodekit.strategy import BuildContext, Guarantee, Pipeline, Strategy
