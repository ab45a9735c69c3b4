"""Strategies: named presets that combine components, with parameters and a guarantee."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from decodekit.config import StrategyParams

if TYPE_CHECKING:
    from decodekit.components import CachePolicy, Drafter, LogitsProcessor, Verifier
    from decodekit.model import LanguageModel
    from decodekit.plugins import Registry
    from decodekit.sampling import Warper

__all__ = ["BuildContext", "Guarantee", "Pipeline", "Strategy"]


class Guarantee(StrEnum):
    """What a strategy promises about its output, and what the test kit checks.

    - ``lossless``: the output distribution equals the target model's (after the
      configured processors and warpers).
    - ``greedy-equivalent``: under greedy settings the tokens equal plain greedy decoding.
    - ``none``: neither (beam search, contrastive search, ...).
    """

    LOSSLESS = "lossless"
    GREEDY_EQUIVALENT = "greedy-equivalent"
    NONE = "none"


@dataclass
class BuildContext:
    """What a strategy may use to build its pipeline for one generation call.

    Attributes
    ----------
    model : LanguageModel
        The target model.
    registry : Registry
        Every registered component, to look up drafters, verifiers and processors by name.
    """

    model: LanguageModel
    registry: Registry

    def kernel_backend(self, op: str) -> str:
        """The backend for a kernel op: a ``select_kernel_backend`` plugin's, else ``auto``."""
        from decodekit.plugins import pm

        device = getattr(self.model.device, "type", str(self.model.device))
        choice = pm.hook.select_kernel_backend(op=op, device=device)
        return choice or "auto"


@dataclass
class Pipeline:
    """The components one generation call runs, in decode-step order.

    Attributes
    ----------
    verifier : Verifier
        Decides what each step commits (argmax, sampling, rejection sampling, beams).
    drafter : Drafter or None
        Proposes a token tree per row each step; None for one token per forward.
    processors : list of LogitsProcessor
        Applied to the logits, in order, after constraints.
    warper : Warper or None
        Temperature and truncation settings the verifier samples with.
    cache_policy : CachePolicy or None
        Evicts KV-cache slots after each step; None keeps everything.
    needs_hidden_states : bool
        Whether the forward must return the last layer's hidden states.
    strategy : str or None
        The strategy that built it; set by :meth:`Strategy.build_pipeline`.
    plugin : str or None
        The plugin that registered that strategy; errors about components no plugin
        registered (a strategy's own helpers) name it.
    """

    verifier: Verifier
    drafter: Drafter | None = None
    processors: list[LogitsProcessor] = field(default_factory=list)
    warper: Warper | None = None
    cache_policy: CachePolicy | None = None
    needs_hidden_states: bool = False
    strategy: str | None = None
    plugin: str | None = None


@dataclass(frozen=True)
class Strategy:
    """A decoding strategy users select by name.

    Attributes
    ----------
    name : str
        The name users select it by (``strategy = "sample"``).
    summary : str
        One line for listings.
    params : type of StrategyParams
        The pydantic model that validates its parameters (``extra="forbid"``).
    guarantee : Guarantee
        What it promises: lossless, greedy-equivalent or none.
    components : tuple of (str, str)
        The (family, component name) pairs it combines, for listings and docs; a
        component chosen by a parameter is listed with the parameter's name in braces.
    build : callable
        ``build(params, context) -> Pipeline``; called once per generation call.
    """

    name: str
    summary: str
    params: type[StrategyParams]
    guarantee: Guarantee
    components: tuple[tuple[str, str], ...]
    build: Callable[[Any, BuildContext], Pipeline]

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"Strategy name must be a non-empty identifier, got {self.name!r}")
        if not (isinstance(self.params, type) and issubclass(self.params, StrategyParams)):
            raise TypeError(
                f"Strategy {self.name!r}: params must be a subclass of StrategyParams, "
                f"got {self.params!r}"
            )
        if self.params.model_config.get("extra") != "forbid":
            raise TypeError(
                f"Strategy {self.name!r}: params model {self.params.__name__} must forbid "
                "extra fields (model_config = ConfigDict(extra='forbid'))"
            )
        if not isinstance(self.guarantee, Guarantee):
            object.__setattr__(self, "guarantee", Guarantee(self.guarantee))

    def build_pipeline(self, params: Any, context: BuildContext) -> Pipeline:
        """Call :attr:`build` and hold the result to the :class:`Pipeline` contract.

        The pipeline is labelled with the strategy and its plugin, so that the decode
        loop's contract errors can name the plugin.

        Raises
        ------
        PluginContractError
            ``build`` returned no Pipeline, or one without a Verifier (or with a drafter
            that is no Drafter); the message names the plugin and the strategy.
        """
        entry = context.registry.strategies.get(self.name)
        plugin = entry.plugin if entry is not None and entry.obj is self else None
        pipeline = self.build(params, context)
        problem = _pipeline_problem(pipeline)
        if problem is not None:
            from decodekit.errors import PluginContractError

            raise PluginContractError(plugin, "strategy", self.name, problem)
        pipeline.strategy, pipeline.plugin = self.name, plugin
        return pipeline


def _pipeline_problem(pipeline: Any) -> str | None:
    """What makes ``pipeline`` break the Pipeline contract, or None."""
    from decodekit.components import Drafter, Verifier

    if not isinstance(pipeline, Pipeline):
        return f"build returned a {type(pipeline).__name__}, expected a decodekit.Pipeline"
    if not isinstance(pipeline.verifier, Verifier):
        kind = type(pipeline.verifier).__name__
        return f"build returned a Pipeline whose verifier is a {kind}, not a decodekit.Verifier"
    if pipeline.drafter is not None and not isinstance(pipeline.drafter, Drafter):
        kind = type(pipeline.drafter).__name__
        return f"build returned a Pipeline whose drafter is a {kind}, not a decodekit.Drafter"
    return None
