"""The verifier protocol: how a registered verifier is built, by any strategy or test.

A verifier is a :class:`decodekit.contracts.Verifier` subclass registered through the
``register_verifiers`` hook. A strategy (and the conformance kit,
:func:`decodekit.testing.assert_lossless`) builds it with :func:`build_verifier`::

    verifier = build_verifier("rejection_tree", {"backend": "torch"}, context=context,
                              warper=warper)

which validates the options and calls the class::

    factory = context.registry.get("verifiers", name)
    options = factory.Options.model_validate(options)
    verifier = factory(options, context=context, warper=warper)

so a verifier class provides:

``name`` (str)
    The name it is registered and reported under.
``Options`` (a :class:`decodekit.config.StrategyParams` subclass, ``extra="forbid"``)
    Its own settings (beam widths, contrastive search's ``alpha``); an empty model when
    it has none. Every field has a default, so the test kit can build it unconfigured.
``__init__(options=None, *, context=None, warper=None)``
    ``context`` is the :class:`~decodekit.strategy.BuildContext` (target model,
    registry, kernel backends); ``warper`` the :class:`~decodekit.sampling.Warper` of
    the strategy's sampling settings, or None for a strategy without them. A verifier
    that does not sample ignores it. The defaults let Python code build a verifier
    directly (``ContrastiveVerifier(ContrastiveVerifier.Options(alpha=0.4))``).
``select(view, output, draft) -> Selection``
    The step's commit; ``finalize(rows)`` and ``select_rows(rows)`` are optional
    (:class:`~decodekit.contracts.Verifier`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from decodekit.config import StrategyParams
from decodekit.contracts import Verifier
from decodekit.errors import PluginContractError
from decodekit.sampling import Warper
from decodekit.strategy import BuildContext, protocol_options

__all__ = ["VerifierFactory", "build_verifier", "validate_verifier_options"]


@runtime_checkable
class VerifierFactory(Protocol):
    """What a strategy needs from a registered verifier class (see the module docs)."""

    name: ClassVar[str]
    Options: ClassVar[type[StrategyParams]]

    def __call__(
        self, options: Any = None, *, context: BuildContext | None = None,
        warper: Warper | None = None,
    ) -> Verifier:
        """Build the verifier for one generation call."""
        ...


def validate_verifier_options(
    factory: Any, options: Any = None, *, where: str = "verifier_options."
) -> StrategyParams:
    """Validate ``options`` (a mapping, an ``Options`` instance or None) for ``factory``.

    Raises
    ------
    ConfigError
        Naming ``<where><field>`` and the reason; or the verifier has no ``Options``
        model.
    """
    validated: StrategyParams = protocol_options(factory, "verifier", options, where=where)
    return validated


def build_verifier(
    factory: str | type[Verifier],
    options: Any = None,
    *,
    context: BuildContext,
    warper: Warper | None = None,
    where: str = "verifier_options.",
) -> Verifier:
    """Look up (by name), validate the options of, and construct a verifier.

    Parameters
    ----------
    factory : str or Verifier subclass
        A registered verifier's name, or its class.
    options : mapping, Options instance or None
        The verifier's options; None takes the defaults.
    context : BuildContext
    warper : Warper or None
        The strategy's sampling settings.
    where : str
        Prefix of field paths in errors.

    Raises
    ------
    UnknownComponentError
        No verifier of that name is installed (the message lists the installed ones).
    ConfigError
        ``options`` do not validate.
    PluginContractError
        The class built something that is not a Verifier.
    """
    if isinstance(factory, str):
        factory = context.registry.get("verifiers", factory)
    validated = validate_verifier_options(factory, options, where=where)
    verifier = factory(validated, context=context, warper=warper)  # type: ignore[call-arg]
    if not isinstance(verifier, Verifier):
        plugin = context.registry.plugin_of("verifiers", factory)
        raise PluginContractError(
            plugin, "verifier", str(getattr(factory, "name", factory)),
            f"built a {type(verifier).__name__}, not a Verifier",
        )
    return verifier
