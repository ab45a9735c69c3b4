"""The conformance kit: hold a plugin to decodekit's contracts and to its guarantees.

- :func:`check_plugin` validates hook implementations, what the registration hooks
  register, and runs the check of every strategy's declared guarantee.
- :func:`assert_lossless` compares a strategy's outputs with the exact target
  distribution (chi-square); :func:`assert_greedy_equivalent` compares its tokens with
  plain greedy decoding. Both run on :class:`~decodekit.testing.AttentionModel` by
  default, so tree masks, positions and cache commits are part of what they check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from decodekit.model import LanguageModel
from decodekit.testing.distributions import exact_sequence_distribution
from decodekit.testing.models import AttentionModel
from decodekit.testing.registration import registered_plugin
from decodekit.testing.stats import ChiSquareResult, assert_matches_distribution, sample_sequences

__all__ = [
    "PluginCheckError",
    "PluginReport",
    "assert_greedy_equivalent",
    "assert_lossless",
    "check_plugin",
]


class PluginCheckError(AssertionError):
    """A plugin does not conform; the message lists every problem found."""


@dataclass(frozen=True)
class PluginReport:
    """What :func:`check_plugin` found in a conforming plugin.

    Attributes
    ----------
    name : str
    hooks : tuple of str
        Hooks the plugin implements.
    registered : dict of str to tuple of str
        Per family (``strategies``, ``drafters``, ...), the names it registers.
    """

    name: str
    hooks: tuple[str, ...]
    registered: dict[str, tuple[str, ...]]


def _family_contracts() -> dict[str, type]:
    from decodekit.contracts import (
        CachePolicy,
        ConstraintFactory,
        Drafter,
        LogitsProcessor,
        Verifier,
    )

    return {
        "register_drafters": Drafter,
        "register_verifiers": Verifier,
        "register_samplers": LogitsProcessor,
        "register_caches": CachePolicy,
        "register_constraints": ConstraintFactory,
    }


def _check_strategy(obj: Any, problems: list[str]) -> bool:
    """Add the strategy's problems to ``problems``; whether it had none."""
    before = len(problems)
    _strategy_problems(obj, problems)
    return len(problems) == before


def _strategy_problems(obj: Any, problems: list[str]) -> None:
    from pydantic import BaseModel

    from decodekit.config import StrategyParams
    from decodekit.strategy import Strategy

    if not isinstance(obj, Strategy):
        problems.append(f"register_strategies: {obj!r} is not a decodekit.Strategy")
        return
    params = obj.params
    if not (isinstance(params, type) and issubclass(params, StrategyParams)):
        problems.append(f"strategy {obj.name!r}: params {params!r} is not a StrategyParams")
        return
    if params.model_config.get("extra") != "forbid":
        problems.append(f"strategy {obj.name!r}: params model must forbid extra fields")
    try:
        params.model_json_schema()
    except Exception as exc:
        problems.append(f"strategy {obj.name!r}: params model has no JSON Schema: {exc}")
    for field_name, info in params.model_fields.items():
        if info.is_required():
            continue
        try:  # a default must validate against its own field
            default = info.get_default(call_default_factory=True)
            if not isinstance(default, BaseModel):
                params.__pydantic_validator__.validate_assignment(
                    params.model_construct(), field_name, default
                )
        except Exception as exc:
            problems.append(
                f"strategy {obj.name!r}: default of params.{field_name} is invalid: {exc}"
            )
    families = {"drafter", "verifier", "sampler", "cache", "constraint"}
    for family, _component in obj.components:
        if family not in families:
            problems.append(
                f"strategy {obj.name!r}: component family {family!r} is not one of "
                f"{sorted(families)}"
            )
    if not callable(obj.build):
        problems.append(f"strategy {obj.name!r}: build is not callable")


def _options_problems(hook_name: str, name: str, factory: type) -> list[str]:
    """What keeps a drafter or verifier class from its protocol's ``Options`` model.

    Both protocols (:mod:`decodekit.drafting`, :mod:`decodekit.verifying`) build the
    class from a validated ``Options`` instance; a verifier's options must all have
    defaults, since strategies and the test kit build verifiers unconfigured.
    """
    from decodekit.config import StrategyParams

    model = getattr(factory, "Options", None)
    if not (isinstance(model, type) and issubclass(model, StrategyParams)):
        return [f"{hook_name}: {name!r} has no Options model (a "
                "decodekit.config.StrategyParams subclass)"]
    if model.model_config.get("extra") != "forbid":
        return [f"{hook_name}: {name!r}: its Options model must forbid extra fields"]
    required = [f for f, info in model.model_fields.items() if info.is_required()]
    if hook_name == "register_verifiers" and required:
        return [f"{hook_name}: {name!r}: Options fields without a default: "
                f"{', '.join(required)}"]
    return []


def _installed_plugin(name: str) -> object:
    """The loaded plugin object ``name``; a plugin that failed to import says why."""
    from decodekit.plugins import failed_plugins, get_registry, pm

    get_registry()
    found = pm.get_plugin(name)
    if found is not None:
        return found
    for failure in failed_plugins():
        if failure.name == name and failure.stage == "load":
            raise PluginCheckError(
                f"plugin {name!r} is installed but failed to import: {failure.error}"
            )
    raise PluginCheckError(f"no installed decodekit plugin is named {name!r}")

def check_plugin(
    plugin: object | str,
    name: str | None = None,
    *,
    check_guarantees: bool = True,
    guarantee_params: Mapping[str, Mapping[str, Any]] | None = None,
) -> PluginReport:
    """Check that a plugin conforms to decodekit's hook specs, contracts and guarantees.

    The plugin is registered on a fresh plugin manager (the installed ones are not
    touched), so its hook implementations are validated against the specs by pluggy
    (unknown hook names, unknown arguments). Every registration hook is then called and
    what it registers is checked: strategies are :class:`~decodekit.Strategy` objects with
    a valid parameter model (``extra="forbid"``, a JSON Schema, defaults that validate);
    components subclass their contract (:class:`~decodekit.Drafter`, ...), are concrete,
    and have a ``name``; no name is registered twice, nor clashes with another installed
    plugin.

    When all of that holds, every strategy is held to the :class:`~decodekit.Guarantee`
    it declares, on the default toy model (:class:`~decodekit.testing.AttentionModel`):

    - ``lossless``: :func:`assert_lossless` (3,000 outputs, chi-square at alpha = 1e-4)
      with the strategy's parameters, and :func:`assert_greedy_equivalent` at
      ``temperature=0`` when its parameters have a temperature (the warped target is then
      the argmax);
    - ``greedy-equivalent``: :func:`assert_greedy_equivalent`, at ``temperature=0`` when
      its parameters have a temperature;
    - ``none``: nothing.

    A plugin that is not installed is registered for the duration of these checks.

    Parameters
    ----------
    plugin : object or str
        A plugin object (usually the plugin's module), or the name of an installed plugin.
    name : str, optional
        The name to report it under; defaults to the module or object name.
    check_guarantees : bool
        Run the guarantee checks (the slow part: about a second per lossless strategy).
    guarantee_params : mapping of str to mapping, optional
        Per strategy name, the parameters to check its guarantee with (a strategy whose
        defaults cannot run on a toy model, e.g. one whose default drafter needs a
        Hugging Face model, names a drafter that can). A strategy whose check cannot run
        at all is reported as a problem.

    Returns
    -------
    PluginReport

    Raises
    ------
    PluginCheckError
        Listing every problem found (a strategy that breaks its declared guarantee
        among them, with the failed check's message); for the name of an installed
        plugin that failed to import, saying so with the import error.

    Examples
    --------
    >>> import decodekit_mirostat
    >>> check_plugin(decodekit_mirostat).registered["strategies"]
    ('mirostat',)
    """
    import inspect

    import pluggy

    from decodekit import hookspecs
    from decodekit.plugins import get_registry

    if isinstance(plugin, str):
        name, plugin = plugin, _installed_plugin(plugin)
    label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    problems: list[str] = []
    fresh = pluggy.PluginManager("decodekit")
    fresh.add_hookspecs(hookspecs)
    try:
        fresh.register(plugin, name=label)
        fresh.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginCheckError(f"plugin {label!r}: {exc}") from None
    hooks = tuple(sorted(h.name for h in fresh.get_hookcallers(plugin) or []))
    if not hooks:
        problems.append(f"plugin {label!r} implements no decodekit hook")
    contracts = _family_contracts()
    registered: dict[str, tuple[str, ...]] = {}
    strategies: list[Any] = []
    installed = get_registry()
    for hook_name in hooks:
        if not hook_name.startswith("register_"):
            continue
        objects: list[Any] = []
        try:
            getattr(fresh.hook, hook_name)(register=objects.append)
        except Exception as exc:
            problems.append(f"{hook_name} raised {type(exc).__name__}: {exc}")
            continue
        names: list[str] = []
        for obj in objects:
            obj_name = getattr(obj, "name", None)
            if not isinstance(obj_name, str) or not obj_name:
                problems.append(f"{hook_name}: {obj!r} has no non-empty 'name'")
                continue
            if obj_name in names:
                problems.append(f"{hook_name}: {obj_name!r} is registered twice")
            names.append(obj_name)
            if hook_name == "register_strategies":
                if _check_strategy(obj, problems):
                    strategies.append(obj)
            else:
                contract = contracts[hook_name]
                if not (isinstance(obj, type) and issubclass(obj, contract)):
                    problems.append(
                        f"{hook_name}: {obj_name!r} must be a subclass of "
                        f"decodekit.{contract.__name__}"
                    )
                elif inspect.isabstract(obj):
                    missing = ", ".join(sorted(obj.__abstractmethods__))
                    problems.append(f"{hook_name}: {obj_name!r} does not implement {missing}")
                elif hook_name in ("register_drafters", "register_verifiers"):
                    problems += _options_problems(hook_name, obj_name, obj)
            family = hook_name.removeprefix("register_")
            other = getattr(installed, family, {}).get(obj_name)
            if other is not None and other.obj is not obj:
                problems.append(
                    f"{hook_name}: {obj_name!r} is already registered by plugin {other.plugin!r}"
                )
        registered[hook_name.removeprefix("register_")] = tuple(names)
    if not problems and check_guarantees:
        problems += _check_guarantees(plugin, label, strategies, guarantee_params or {})
    if problems:
        raise PluginCheckError(
            f"plugin {label!r} does not conform:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return PluginReport(name=label, hooks=hooks, registered=registered)


def _check_guarantees(
    plugin: object,
    label: str,
    strategies: Sequence[Any],
    params: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """Run each strategy's guarantee check; the problems found (see :func:`check_plugin`)."""
    from decodekit.plugins import get_registry
    from decodekit.strategy import Guarantee

    declared = [s for s in strategies if s.guarantee != Guarantee.NONE]
    if not declared:
        return []
    installed = get_registry().strategies
    needs_registering = any(
        s.name not in installed or installed[s.name].obj is not s for s in declared
    )
    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        if needs_registering:
            try:
                stack.enter_context(registered_plugin(plugin, name=f"decodekit-check-{label}"))
            except Exception as exc:
                return [f"plugin {label!r} could not be registered to check its guarantees: "
                        f"{type(exc).__name__}: {exc}"]
        for strategy in declared:
            given = dict(params.get(strategy.name, {}))
            greedy = dict(given)
            if "temperature" in strategy.params.model_fields:
                greedy["temperature"] = 0.0
            checks: list[tuple[str, Any, dict[str, Any]]] = []
            if strategy.guarantee == Guarantee.LOSSLESS:
                checks.append(("assert_lossless", assert_lossless, given))
                if "temperature" in greedy:
                    checks.append(("assert_greedy_equivalent at temperature 0",
                                   assert_greedy_equivalent, greedy))
            else:
                checks.append(("assert_greedy_equivalent", assert_greedy_equivalent, greedy))
            for check_name, check, check_params in checks:
                try:
                    check(strategy.name, **check_params)
                except AssertionError as failure:
                    detail = str(failure).replace("\n", "\n      ")
                    problems.append(
                        f"strategy {strategy.name!r} declares {strategy.guarantee.value} but "
                        f"fails {check_name}: {detail}"
                    )
                    break
                except Exception as exc:
                    problems.append(
                        f"strategy {strategy.name!r}: its {strategy.guarantee.value} check "
                        f"({check_name}) could not run on the toy model: "
                        f"{type(exc).__name__}: {exc} (give parameters that can in "
                        "guarantee_params, or pass check_guarantees=False)"
                    )
                    break
    return problems


def _sampling_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    from decodekit.config import SamplingParams

    return {k: v for k, v in params.items() if k in SamplingParams.model_fields}


def _as_strategy_params(
    strategy: Any, drafter: Any, verifier: Any, params: dict[str, Any]
) -> tuple[Any, Any]:
    """With a strategy given, ``drafter`` / ``verifier`` are its parameters (speculative's)."""
    if strategy is None:
        return drafter, verifier
    for key, value in (("drafter", drafter), ("verifier", verifier)):
        if value is not None:
            params[key] = value
    return None, None


@contextlib.contextmanager
def _strategy_named(
    strategy: Any, drafter: Any = None, verifier: Any = None
) -> Iterator[str]:
    """Yield a registered strategy name for a name, a Strategy, or components."""
    from decodekit.plugins import get_registry

    if isinstance(strategy, str) and drafter is None and verifier is None:
        get_registry().strategies[strategy]
        yield strategy
        return
    from decodekit import hookimpl
    from decodekit.strategy import Strategy

    if isinstance(strategy, Strategy) and drafter is None and verifier is None:
        entry = get_registry().strategies.get(strategy.name)
        if entry is not None and entry.obj is strategy:  # installed: run it by name
            yield strategy.name
            return
    target = strategy if isinstance(strategy, Strategy) else _component_strategy(
        drafter, verifier
    )

    class _Probe:
        @hookimpl
        def register_strategies(self, register: Any) -> None:
            register(target)

    with registered_plugin(_Probe(), name=f"decodekit-testing-{target.name}"):
        yield target.name


#: Draft length the kit builds drafters with (:mod:`decodekit.drafting`'s protocol).
DRAFT_LENGTH = 3


def _component_strategy(drafter: Any, verifier: Any) -> Any:
    """A throwaway ``sample``-like strategy around a verifier (and optional drafter)."""
    import inspect

    from decodekit.builtin.processors import PenaltiesProcessor
    from decodekit.config import SamplingParams
    from decodekit.sampling import Warper
    from decodekit.strategy import Guarantee, Pipeline, Strategy

    if verifier is None:
        raise ValueError("give a strategy, or a verifier (and optionally a drafter)")

    class ProbeParams(SamplingParams):
        """Sampling settings of the probe strategy."""

    def _make(component: Any, family: str, warper: Warper, context: Any) -> Any:
        if isinstance(component, str):
            component = context.registry.get(family, component)
        if not isinstance(component, type):
            return component
        if family == "verifiers":
            # exactly as strategies build verifiers (the verifier protocol), default options
            from decodekit.verifying import build_verifier

            return build_verifier(component, context=context, warper=warper)
        if hasattr(component, "Options"):
            # exactly as strategies build drafters (the drafter protocol), default options
            from decodekit.drafting import validate_drafter_options

            options = validate_drafter_options(component, {})
            return component(options, context=context, draft_length=DRAFT_LENGTH,
                             max_nodes=None, warper=warper)
        accepted = inspect.signature(component).parameters
        return component(warper) if "warper" in accepted else component()

    def build(params: ProbeParams, context: Any) -> Pipeline:
        warper = Warper.from_params(params)
        processors = [PenaltiesProcessor.from_params(params)] if params.has_penalties else []
        return Pipeline(
            verifier=_make(verifier, "verifiers", warper, context),
            drafter=None if drafter is None else _make(drafter, "drafters", warper, context),
            processors=processors,
        )

    name = "probe_" + "_".join(
        str(getattr(c, "name", c)) for c in (drafter, verifier) if c is not None
    )
    return Strategy(
        name=name.replace("-", "_"),
        summary="conformance probe",
        params=ProbeParams,
        guarantee=Guarantee.LOSSLESS,
        components=(),
        build=build,
    )


def assert_lossless(
    strategy: Any = None,
    *,
    drafter: Any = None,
    verifier: Any = None,
    model: LanguageModel | None = None,
    prompt: Sequence[int] = (0,),
    length: int = 3,
    samples: int = 3000,
    alpha: float = 1e-4,
    seed: int = 0,
    **params: Any,
) -> ChiSquareResult:
    """Fail unless a strategy's outputs follow exactly the target model's distribution.

    Generates ``samples`` outputs of ``length`` tokens and runs
    :func:`~decodekit.testing.assert_matches_distribution` against
    :func:`~decodekit.testing.exact_sequence_distribution` under the sampling settings
    among ``params`` (temperature, top-k, top-p, min-p, typical-p, penalties). The default
    model is a random 5-token :class:`~decodekit.testing.AttentionModel`, whose logits
    depend on positions and on every attended token, so the decode loop's tree masks,
    positions and cache commits are checked along with the strategy. A correct strategy
    fails with probability ``alpha``; run it with fixed seeds so that it cannot flake.

    Parameters
    ----------
    strategy : str or Strategy, optional
        A registered strategy name or a Strategy object.
    drafter, verifier : str, class or object, optional
        Instead of a strategy: check a verifier (a registered name, a class following the
        :mod:`verifier protocol <decodekit.verifying>`, built with its default options
        and the sampling settings' warper, or an instance), optionally with a drafter
        feeding it (a name, a class following the :mod:`drafter protocol
        <decodekit.drafting>`, or an instance).
        With a strategy they are strategy parameters (``speculative``'s ``drafter``).
    model : LanguageModel, optional
        A model :func:`~decodekit.testing.next_token_logits` accepts; default
        ``AttentionModel.random(5, seed=seed)``.
    prompt, length, samples, alpha, seed
        The experiment.
    **params
        Strategy parameters (sampling settings among them).

    Returns
    -------
    ChiSquareResult

    Raises
    ------
    AssertionError
        An output of probability zero appeared, or the chi-square test rejects at ``alpha``.

    Examples
    --------
    >>> assert_lossless("sample", temperature=0.8, top_p=0.9)
    """
    drafter, verifier = _as_strategy_params(strategy, drafter, verifier, params)
    model = model or AttentionModel.random(5, seed=seed)
    exact = exact_sequence_distribution(model, prompt, length, **_sampling_settings(params))
    with _strategy_named(strategy, drafter, verifier) as name:
        counts = sample_sequences(
            model, prompt, length=length, n=samples, strategy=name, seed=seed, **params
        )
    return assert_matches_distribution(counts, exact, alpha=alpha)


def assert_greedy_equivalent(
    strategy: Any = None,
    *,
    drafter: Any = None,
    verifier: Any = None,
    model: LanguageModel | None = None,
    prompts: Sequence[Sequence[int]] = ((0,), (1, 2), (3, 1, 4)),
    max_new_tokens: int = 12,
    **params: Any,
) -> None:
    """Fail unless a strategy's tokens equal plain greedy decoding's, prompt by prompt.

    Parameters are those of :func:`assert_lossless`; ``params`` should make the strategy
    greedy (for example ``temperature=0``). The default model is a random 8-token
    :class:`~decodekit.testing.AttentionModel` (use :func:`~decodekit.testing.tiny_llama`
    or a real model for the model path). The prompts run as one batch of different
    lengths (left padding), so padding and per-row positions are exercised too.

    Raises
    ------
    AssertionError
        Naming the first prompt whose tokens differ.
    """
    from decodekit.engine import Engine

    drafter, verifier = _as_strategy_params(strategy, drafter, verifier, params)
    engine = Engine(model or AttentionModel.random(8, seed=0))
    plain = engine.generate([list(p) for p in prompts], strategy="greedy",
                            max_new_tokens=max_new_tokens)
    with _strategy_named(strategy, drafter, verifier) as name:
        tested = engine.generate([list(p) for p in prompts], strategy=name,
                                 max_new_tokens=max_new_tokens, **params)
    by_prompt = {c.prompt_index: c.token_ids for c in tested}
    for index, completion in enumerate(plain):
        got = by_prompt.get(index)
        if got != completion.token_ids:
            raise AssertionError(
                f"prompt {index}: {name!r} produced {got}, greedy produced "
                f"{completion.token_ids}"
            )
