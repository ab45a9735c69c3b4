"""The drafter protocol: how a registered drafter is built, by any strategy or test.

A drafter is a :class:`decodekit.contracts.Drafter` subclass registered through the
``register_drafters`` hook. A strategy that drafts (``speculative``, a lookup strategy,
the conformance kit's :func:`decodekit.testing.assert_lossless`) builds it with
:func:`build_drafter`::

    drafter = build_drafter(params.drafter, params.drafter_options, context=context,
                            draft_length=params.draft_length, max_nodes=params.max_nodes,
                            warper=warper)

which validates the options and calls the class::

    factory = context.registry.get("drafters", name)
    options = factory.Options.model_validate(options)
    drafter = factory(options, context=context, draft_length=draft_length,
                      max_nodes=max_nodes, warper=warper)

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
    settings, or None for a strategy without sampling settings (propose argmax tokens
    then). A drafter that samples must report, for every node, the exact float32
    distribution it drew the node from (``DraftTree.proposals``); warping its own logits
    with ``warper.probs`` makes the proposals close to the target's and acceptance high.
    Under greedy settings (``warper.is_greedy``) it should propose argmax tokens.
``draft(view) -> DraftTree | None``
    One tree per row (``-1`` pads rows with fewer nodes), or None for a plain step.
``draft_length`` (int attribute, optional)
    When present, the strategy's adaptive mode sets it between steps; drafters read it
    at each :meth:`draft`. Drafts deeper than the current length are cut anyway.
``prefix_consistent`` (bool attribute, optional, default False)
    True declares that, row by row, the first ``k`` levels of a draft made with
    ``draft_length = n > k`` are the draft made with ``draft_length = k``. Adaptive mode
    keeps one length per row; it sets ``draft_length`` to the longest of them only for
    such drafters, and cuts every row to its own length. Other drafters keep the full
    length (then cut per row), so that no row's draft depends on another row's length.
``drafts_trees(options, *, draft_length, max_nodes) -> bool`` (classmethod, optional)
    Whether drafts made with these options can be trees (a node whose parent is not the
    previous node). ``verify="chain"`` with a drafter that says True is refused when the
    config is validated; a drafter without it that drafts a tree fails at run time.
``observe(view, draft, output, selection)``, ``select_rows(rows)`` (optional)
    Learn from each step; keep per-row state aligned when rows finish or are reordered.

Rows are independent: a row's draft must depend only on the row (its tokens, its own
state, its generator), never on the other rows of the batch. Randomness comes from
``view.generators[r]`` (one per row): draw the same number of values from a row's
generator at every step whatever the other rows do, for example one kernel seed per row
and step (:func:`decodekit_kernels.seeds_from_generators`), and index counter-based
noise by (seed, node) (:func:`decodekit_kernels.uniforms`) rather than drawing per node
of the padded batch. State a drafter learns (tables, statistics) must either be per row
(and follow :meth:`select_rows`) or only change what is drafted: for any one-hot
(deterministic) draft the verifiers commit the tokens the target draws with the row's
seed (up to the float rounding of the target's logits), so a deterministic drafter may
share what it learns across rows and calls (``token_recycling`` does).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from decodekit.config import StrategyParams
from decodekit.contracts import Drafter
from decodekit.errors import PluginContractError
from decodekit.sampling import Warper
from decodekit.strategy import BuildContext, protocol_options

__all__ = ["DrafterFactory", "build_drafter", "drafts_trees", "validate_drafter_options"]


@runtime_checkable
class DrafterFactory(Protocol):
    """What a strategy needs from a registered drafter class (see the module docs)."""

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
        warper: Warper | None,
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
    validated: StrategyParams = protocol_options(
        factory, "drafter", options, where="drafter_options."
    )
    return validated


def drafts_trees(
    factory: Any, options: StrategyParams, *, draft_length: int, max_nodes: int | None
) -> bool | None:
    """Whether the drafter ``factory`` drafts trees with these (validated) options.

    Returns
    -------
    bool or None
        The drafter's own answer (its ``drafts_trees`` classmethod); None when it does
        not say.
    """
    check = getattr(factory, "drafts_trees", None)
    if not callable(check):
        return None
    return bool(check(options, draft_length=draft_length, max_nodes=max_nodes))


def build_drafter(
    name: str,
    options: dict[str, Any],
    *,
    context: BuildContext,
    draft_length: int,
    max_nodes: int | None,
    warper: Warper | None,
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
        plugin = context.registry.plugin_of("drafters", factory)
        raise PluginContractError(
            plugin, "drafter", name, f"built a {type(drafter).__name__}, not a Drafter"
        )
    return drafter
