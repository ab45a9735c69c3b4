"""A test strategy that runs any registered drafter under exact-match (greedy) verification.

``draft_greedy`` is not registered by the plugin: tests and benchmarks register it for a
``with`` block, so drafters can be checked without depending on another plugin's
speculative strategy::

    from decodekit.testing import registered_plugin
    from decodekit_lookup.testing import DraftGreedyPlugin

    with registered_plugin(DraftGreedyPlugin()):
        engine.generate(prompt, strategy="draft_greedy", drafter="prompt_lookup")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from decodekit import BuildContext, Guarantee, Pipeline, Strategy, hookimpl
from decodekit.config import StrategyParams
from decodekit.drafting import build_drafter

__all__ = ["DRAFT_GREEDY", "DraftGreedyParams", "DraftGreedyPlugin"]


class DraftGreedyParams(StrategyParams):
    """Parameters of the test strategy ``draft_greedy``."""

    drafter: str = "prompt_lookup"
    draft_length: int = Field(10, ge=1)
    max_nodes: int | None = None
    drafter_options: dict[str, Any] = Field(default_factory=dict)


def _build(params: DraftGreedyParams, context: BuildContext) -> Pipeline:
    drafter = build_drafter(params.drafter, params.drafter_options, context=context,
                            draft_length=params.draft_length, max_nodes=params.max_nodes,
                            warper=None)
    return Pipeline(verifier=context.registry.get("verifiers", "argmax")(), drafter=drafter)


DRAFT_GREEDY = Strategy(
    name="draft_greedy",
    summary="Test only: a registered drafter verified by exact match (argmax).",
    params=DraftGreedyParams,
    guarantee=Guarantee.GREEDY_EQUIVALENT,
    components=(("drafter", "{drafter}"), ("verifier", "argmax")),
    build=_build,
)


class DraftGreedyPlugin:
    """Registers ``draft_greedy`` (use with :func:`decodekit.testing.registered_plugin`)."""

    @hookimpl
    def register_strategies(self, register: Callable[[Strategy], None]) -> None:
        """Register ``draft_greedy``."""
        register(DRAFT_GREEDY)
