"""The Python API: an :class:`Engine` holds a loaded model and runs generations.

>>> import decodekit
>>> engine = decodekit.Engine()                      # the embedded SmolLM2 model
>>> engine.generate("Name a colour.", strategy="greedy", max_new_tokens=8).text
'...'

:func:`decodekit.generate` is the one-call form; it keeps one engine per model.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from decodekit.config import GenerationConfig, component_spec
from decodekit.contracts import LanguageModel
from decodekit.errors import ConfigError, ModelLoadError, PluginContractError
from decodekit.execute import Stream
from decodekit.generation import Completion, GenerationRequest, GenerationResult
from decodekit.model import DTypeName, HFModel, load_model
from decodekit.plugins import get_registry, loop_replacements, pm
from decodekit.prompts import Prompt, encode_prompts, prompt_items
from decodekit.settings import constraint_from, merge_config, row_seeds
from decodekit.strategy import BuildContext, Pipeline, Registry
from decodekit.transformers_processor import as_processor

__all__ = ["Engine", "generate"]


def _backend_choice(op: str, device: str) -> str | None:
    """The installed plugins' ``select_kernel_backend`` choice for ``op`` on ``device``."""
    choice: str | None = pm.hook.select_kernel_backend(op=op, device=device)
    return choice


def _check_rows_are_outputs(cfg: GenerationConfig, pipeline: Pipeline) -> None:
    """Refuse constraints and processors for verifiers whose rows are no outputs.

    Both read a row's committed tokens; superposed decoding's rows carry a superposition.
    """
    if pipeline.verifier.rows_are_outputs:
        return
    if cfg.constraint is not None:
        raise ConfigError(
            f"constraint: strategy {cfg.strategy!r} does not support constraints (its rows "
            "are no output sequences)"
        )
    if pipeline.processors:
        raise ConfigError(
            f"processors: strategy {cfg.strategy!r} does not support logits processors (its "
            "rows are no output sequences)"
        )


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
        rows = encode_prompts(self.model, prompts, raw=raw)
        registry = get_registry()
        strategy = registry.strategies[cfg.strategy].strategy
        context = BuildContext(model=self.model, registry=registry, backend_choice=_backend_choice)
        pipeline = strategy.build_pipeline(cfg.params, context)
        extra = []
        for i, entry in enumerate(cfg.processors):
            spec = component_spec(entry)
            extra.append(context.build("samplers", spec.name, spec.options,
                                       where=f"processors.{i}.options."))
        pipeline.processors[:0] = extra
        if logits_processors:
            pipeline.processors[:0] = [as_processor(p) for p in logits_processors]
        # the config's policy, built like any component (the loop skips exact ones: `full`);
        # a policy the strategy chose itself stays unless the config names another
        cache = component_spec(cfg.cache)
        if pipeline.cache_policy is None or cache != component_spec("full"):
            pipeline.cache_policy = context.build("caches", cache.name, cache.options,
                                                  where="cache.options.")
        _check_rows_are_outputs(cfg, pipeline)
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
            seeds=row_seeds(cfg.seed, len(rows)),
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
        items, single = prompt_items(prompts)
        result = self.run(self.request(items, config, raw=raw, **settings))
        if single and len(result.completions) == 1:
            return result.completions[0]
        return result.completions

    def run(self, request: GenerationRequest) -> GenerationResult:
        """Decode a prepared request through the ``run_generation`` hook.

        Raises
        ------
        PluginContractError
            A plugin registered a ``run_generation`` that is no wrapper (it would replace
            the decode loop); the message names it.
        """
        for plugin in loop_replacements():
            raise PluginContractError(
                plugin, "hook", "run_generation",
                "must be a wrapper (@hookimpl(wrapper=True)); a plugin may wrap the decode "
                "loop but not replace it",
            )
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
