"""The drafter protocol: how any plugin's drafter plugs into the ``speculative`` strategy.

A drafter is a :class:`decodekit.components.Drafter` subclass registered through the
``register_drafters`` hook. The ``speculative`` strategy builds it from its parameters::

    factory = context.registry.get("drafters", params.drafter)
    options = factory.Options.model_validate(params.drafter_options)
    drafter = factory(options, context=context, draft_length=params.draft_length,
                      max_nodes=params.max_nodes, warper=warper)

so a drafter class provides:

``name`` (str)
    The name users select it by (``drafter = "prompt_lookup"``).
``deterministic`` (bool)
    True if every draft is one-hot (``DraftTree.proposals is None``).
``Options`` (a :class:`decodekit.config.StrategyParams` subclass, ``extra="forbid"``)
    Its own settings, given as ``drafter_options``; errors name ``drafter_options.<field>``.
``__init__(options, *, context, draft_length, max_nodes, warper)``
    ``context`` is the :class:`~decodekit.strategy.BuildContext` (target model, registry);
    ``draft_length`` the chain length or tree depth to propose (at least 1);
    ``max_nodes`` a node budget for trees (None: no budget beyond ``draft_length`` for
    chains); ``warper`` the :class:`~decodekit.sampling.Warper` of the target's sampling
    settings. A drafter that samples must report, for every node, the exact float32
    distribution it drew the node from (``DraftTree.proposals``); warping its own logits
    with ``warper.probs`` makes the proposals close to the target's and acceptance high.
    Under greedy settings (``warper.is_greedy``) it should propose argmax tokens.
``draft(view) -> DraftTree | None``
    One tree per row (``-1`` pads rows with fewer nodes), or None for a plain step.
``draft_length`` (int attribute, optional)
    When present, the strategy's adaptive mode sets it between steps; drafters read it
    at each :meth:`draft`. Drafts deeper than the current length are cut anyway.
``observe(view, draft, output, selection)``, ``select_rows(rows)`` (optional)
    Learn from each step; keep per-row state aligned when rows finish or are reordered.

Randomness must come from ``view.generators`` (one per row) so that runs are reproducible.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import ValidationError

from decodekit.components import Drafter
from decodekit.config import StrategyParams, format_validation_error
from decodekit.errors import ConfigError
from decodekit.sampling import Warper
from decodekit.strategy import BuildContext

__all__ = ["DrafterFactory", "build_drafter", "validate_drafter_options"]


@runtime_checkable
class DrafterFactory(Protocol):
    """What the ``speculative`` strategy needs from a registered drafter class."""

    name: ClassVar[str]
    deterministic: ClassVar[bool]
    Options: ClassVar[type[StrategyParams]]

    def __call__(
        self,
        options: Any,
        *,
        context: BuildContext,
        draft_length: int,
        max_nodes: int | None,
        warper: Warper,
    ) -> Drafter:
        """Build the drafter for one generation call."""
        ...


def validate_drafter_options(factory: Any, options: dict[str, Any]) -> StrategyParams:
    """Validate ``drafter_options`` against the drafter's ``Options`` model.

    Raises
    ------
    ConfigError
        Naming ``drafter_options.<field>`` and the reason; or the drafter has no
        ``Options`` model.
    """
    model = getattr(factory, "Options", None)
    name = getattr(factory, "name", repr(factory))
    if not (isinstance(model, type) and issubclass(model, StrategyParams)):
        raise ConfigError(
            f"drafter {name!r} has no Options model (a decodekit.config.StrategyParams "
            "subclass), so it cannot be used by the speculative strategy"
        )
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "drafter_options.")) from None


def build_drafter(
    name: str,
    options: dict[str, Any],
    *,
    context: BuildContext,
    draft_length: int,
    max_nodes: int | None,
    warper: Warper,
) -> Drafter:
    """Look up, validate and construct the registered drafter ``name``.

    Raises
    ------
    UnknownComponentError
        No drafter of that name is installed (the message lists the installed ones).
    ConfigError
        ``options`` do not validate.
    """
    factory = context.registry.get("drafters", name)
    validated = validate_drafter_options(factory, options)
    drafter = factory(
        validated, context=context, draft_length=draft_length, max_nodes=max_nodes,
        warper=warper,
    )
    if not isinstance(drafter, Drafter):
        raise TypeError(f"drafter {name!r} built a {type(drafter).__name__}, not a Drafter")
    return drafter
