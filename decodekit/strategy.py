"""Strategies: named presets that combine components, with parameters and a guarantee.

Also what a strategy builds its pipeline from: the :class:`BuildContext` of a call and
the :class:`Registry` of everything plugins registered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from decodekit.config import StrategyParams
from decodekit.errors import ConfigError, PluginContractError, UnknownComponentError

if TYPE_CHECKING:
    from decodekit.contracts import CachePolicy, Drafter, LanguageModel, LogitsProcessor, Verifier

__all__ = [
    "BuildContext",
    "Guarantee",
    "Pipeline",
    "Registered",
    "Registry",
    "Strategy",
    "build_component",
]

#: A plugin's choice of kernel backend: ``(op, device type) -> backend or None``.
BackendChoice = Callable[[str, str], "str | None"]


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
    backend_choice : callable or None
        ``(op, device type) -> backend or None``: the ``select_kernel_backend`` hook of
        the installed plugins (the engine passes it); None chooses ``"auto"`` everywhere.
    """

    model: LanguageModel
    registry: Registry
    backend_choice: BackendChoice | None = None

    def build(
        self, family: str, name: str, options: Mapping[str, Any] | None = None, *, where: str = ""
    ) -> Any:
        """Build the registered component ``name`` of ``family`` with ``options``.

        See :func:`build_component`; ``where`` prefixes field paths in errors (e.g.
        ``"processors.0.options."``).
        """
        factory = self.registry.get(family, name)
        return build_component(factory, family, name, options, context=self, where=where)

    def kernel_backend(self, op: str) -> str:
        """The backend for a kernel op: a ``select_kernel_backend`` plugin's, else ``auto``."""
        if self.backend_choice is None:
            return "auto"
        device = getattr(self.model.device, "type", str(self.model.device))
        return self.backend_choice(op, device) or "auto"


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
            raise PluginContractError(plugin, "strategy", self.name, problem)
        pipeline.strategy, pipeline.plugin = self.name, plugin
        return pipeline


def _pipeline_problem(pipeline: Any) -> str | None:
    """What makes ``pipeline`` break the Pipeline contract, or None."""
    from decodekit.contracts import Drafter, Verifier  # torch loads on first build only

    if not isinstance(pipeline, Pipeline):
        return f"build returned a {type(pipeline).__name__}, expected a decodekit.Pipeline"
    if not isinstance(pipeline.verifier, Verifier):
        kind = type(pipeline.verifier).__name__
        return f"build returned a Pipeline whose verifier is a {kind}, not a decodekit.Verifier"
    if pipeline.drafter is not None and not isinstance(pipeline.drafter, Drafter):
        kind = type(pipeline.drafter).__name__
        return f"build returned a Pipeline whose drafter is a {kind}, not a decodekit.Drafter"
    return None


@dataclass(frozen=True)
class Registered:
    """A registered component or strategy, with the plugin that registered it."""

    name: str
    plugin: str
    obj: Any

    @property
    def strategy(self) -> Strategy:
        """The object as a :class:`Strategy` (for the ``strategies`` family)."""
        assert isinstance(self.obj, Strategy)
        return self.obj


@dataclass
class Registry:
    """Everything plugins registered, by family and name."""

    strategies: dict[str, Registered] = field(default_factory=dict)
    drafters: dict[str, Registered] = field(default_factory=dict)
    verifiers: dict[str, Registered] = field(default_factory=dict)
    samplers: dict[str, Registered] = field(default_factory=dict)
    caches: dict[str, Registered] = field(default_factory=dict)
    constraints: dict[str, Registered] = field(default_factory=dict)

    def named_strategies(self) -> dict[str, Strategy]:
        """Every registered strategy by name (what config validation receives)."""
        return {name: entry.strategy for name, entry in self.strategies.items()}

    def get(self, family: str, name: str) -> Any:
        """Return the registered object of ``family`` (e.g. ``"drafters"``) named ``name``.

        Raises
        ------
        UnknownComponentError
            Nothing of that family is registered under ``name``; lists what is.
        """
        table: dict[str, Registered] = getattr(self, family)
        if name not in table:
            raise UnknownComponentError(family.rstrip("s"), name, list(table))
        return table[name].obj

    def plugin_of(self, family: str, component: Any) -> str | None:
        """The plugin that registered ``component`` (a factory, or an object it built).

        Parameters
        ----------
        family : str
            The registry family to look in, e.g. ``"drafters"``.
        component : object
            A registered factory or an instance of a registered class (exact class: a
            subclass defined elsewhere belongs to whoever defined it). Failing that, the
            plugin that registered the component's ``name``: wrappers (speculative's
            adaptive draft length) carry the name of the component they wrap.
        """
        table: dict[str, Registered] = getattr(self, family)
        for entry in table.values():
            if entry.obj is component or entry.obj is type(component):
                return entry.plugin
        named = table.get(getattr(component, "name", None))  # type: ignore[arg-type]
        return named.plugin if named is not None else None


def component_options(
    factory: Any, family: str, name: str, options: Mapping[str, Any] | None, *, where: str = ""
) -> Any:
    """Validate ``options`` for a registered component, as the component contract says.

    A component with options declares them as a pydantic ``Options`` model (a
    :class:`~decodekit.StrategyParams` subclass); one without takes none.

    Returns
    -------
    Options instance or None
        None for a component without an ``Options`` model.

    Raises
    ------
    ConfigError
        The options do not validate (the message gives the field path, prefixed by
        ``where``), or options were given to a component that takes none.
    """
    from decodekit.config import StrategyParams

    model = getattr(factory, "Options", None)
    if not (isinstance(model, type) and issubclass(model, StrategyParams)):
        if options:
            raise ConfigError(
                f"{where or 'options: '}{family.rstrip('s')} {name!r} takes no options, got "
                f"{', '.join(sorted(options))}"
            )
        return None
    return protocol_options(factory, family.rstrip("s"), options, where=where)


def protocol_options(factory: Any, family: str, options: Any, *, where: str) -> Any:
    """Validate the options of a drafter or verifier class, whose protocol needs ``Options``.

    ``options`` is a mapping, an instance of the class's ``Options`` model, or None (the
    defaults).

    Raises
    ------
    ConfigError
        Naming ``<where><field>`` and the reason; or the class has no ``Options`` model
        (a :class:`~decodekit.config.StrategyParams` subclass).
    """
    from pydantic import ValidationError

    from decodekit.config import StrategyParams, format_validation_error

    model = getattr(factory, "Options", None)
    name = getattr(factory, "name", repr(factory))
    if not (isinstance(model, type) and issubclass(model, StrategyParams)):
        raise ConfigError(
            f"{family} {name!r} has no Options model (a decodekit.config.StrategyParams "
            "subclass), so no strategy can build it"
        )
    if isinstance(options, model):
        return options
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None


def build_component(
    factory: Any,
    family: str,
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    context: BuildContext,
    where: str = "",
    **arguments: Any,
) -> Any:
    """Build a registered component the way every strategy and the test kit do.

    The component contract: a registered factory (usually a class) has a ``name`` and,
    when it takes options, a pydantic ``Options`` model; it is built as
    ``factory(options, context=context, **arguments)``. A factory without ``Options``
    is built as ``factory()``. Drafters add ``draft_length``, ``max_nodes`` and
    ``warper`` as ``arguments`` (:func:`decodekit.drafting.build_drafter`).

    Raises
    ------
    ConfigError
        As in :func:`component_options`.
    """
    validated = component_options(factory, family, name, options, where=where)
    if validated is None and not arguments:
        return factory()
    return factory(validated, context=context, **arguments)

