"""Speculative decoding as a decodekit plugin: pluggable drafters, lossless verification.

A drafter proposes a chain or tree of tokens per row; the target model scores them all in
one forward; a verifier commits the longest acceptable prefix plus one token. Under
sampling settings verification is rejection sampling (:mod:`~decodekit_speculative.verifiers`),
so the output follows the target distribution exactly (``lossless``); under greedy settings
it is exact match, so the tokens equal plain greedy decoding.

Any registered drafter that follows :mod:`decodekit.drafting` can be named in
``drafter``; this package registers ``draft_model`` and ``layer_skip``
(:mod:`~decodekit_speculative.drafters`)::

    engine.generate(prompt, strategy="speculative", drafter="layer_skip",
                    draft_length=4, temperature=0.7, seed=0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from decodekit import BuildContext, Guarantee, Pipeline, Strategy, hookimpl
from decodekit.config import SamplingParams
from decodekit.contracts import Drafter, Verifier
from decodekit.drafting import build_drafter, drafts_trees, validate_drafter_options
from decodekit.errors import ConfigError
from decodekit.sampling import Warper
from decodekit.verifying import build_verifier
from decodekit_speculative.adaptive import AdaptiveDraftLength, best_draft_length
from decodekit_speculative.drafters import DraftModelDrafter, LayerSkipDrafter
from decodekit_speculative.verifiers import RejectionChainVerifier, RejectionTreeVerifier

__all__ = [
    "SPECULATIVE",
    "AdaptiveDraftLength",
    "DraftModelDrafter",
    "LayerSkipDrafter",
    "RejectionChainVerifier",
    "RejectionTreeVerifier",
    "SpeculativeParams",
    "best_draft_length",
]


class SpeculativeParams(SamplingParams):
    """Parameters of ``speculative``: the sampling settings plus the drafter's.

    ``drafter_options`` are validated against the chosen drafter's own ``Options`` model
    when the config is validated; errors name ``drafter_options.<field>``. ``verify`` is
    checked against what the drafter drafts (its ``drafts_trees``) at the same time, so
    ``verify="chain"`` with a tree drafter fails before any model is loaded.
    """

    drafter: str = Field(
        "layer_skip", description="Name of a registered drafter (see `decodekit plugins`)."
    )
    draft_length: int = Field(
        4, ge=1, description="Draft chain length, or tree depth (maximum, when adaptive)."
    )
    max_nodes: int | None = Field(
        None, ge=1, description="Node budget per row for tree drafts; None: the drafter's default."
    )
    drafter_options: dict[str, Any] = Field(
        default_factory=dict, description="The drafter's own options (its Options model)."
    )
    # after drafter and drafter_options: its validator reads them
    verify: Literal["chain", "tree"] = Field(
        "tree",
        description="'tree': recursive rejection sampling over a token tree (chain drafts go "
        "through the chain kernel); 'chain': chain drafts only, refused for drafters that "
        "draft trees.",
    )
    adaptive: bool = Field(
        False, description="Adapt each row's draft length to its observed acceptance rate."
    )
    draft_cost: float = Field(
        0.1, ge=0.0,
        description="Adaptive mode: cost of one draft token relative to one target forward.",
    )

    @field_validator("verify")
    @classmethod
    def _chain_needs_chains(cls, value: str, info: ValidationInfo) -> str:
        if value != "chain" or "drafter" not in info.data or "drafter_options" not in info.data:
            return value
        from decodekit import get_registry

        name = info.data["drafter"]
        try:
            factory = get_registry().get("drafters", name)
            options = validate_drafter_options(factory, info.data["drafter_options"])
        except ConfigError:
            return value  # reported by _check_drafter with its own field path
        try:
            trees = drafts_trees(factory, options, max_nodes=info.data.get("max_nodes"),
                                 draft_length=info.data.get("draft_length", 4))
        except ValueError:
            return value  # options the drafter refuses: its build reports them
        if trees:
            raise ValueError(
                f"'chain' verifies chain drafts only, but drafter {name!r} drafts trees "
                "with these options; use verify='tree'"
            )
        return value

    @model_validator(mode="after")
    def _check_drafter(self) -> SpeculativeParams:
        from decodekit import get_registry

        factory = get_registry().get("drafters", self.drafter)
        validate_drafter_options(factory, self.drafter_options)
        return self


def make_verifier(params: SpeculativeParams, warper: Warper, context: BuildContext) -> Verifier:
    """Exact match under greedy settings, rejection sampling (chain or tree) otherwise."""
    name = "argmax" if warper.is_greedy else f"rejection_{params.verify}"
    return build_verifier(name, context=context, warper=warper)


def _build(params: SpeculativeParams, context: BuildContext) -> Pipeline:
    warper = Warper.from_params(params, backend=context.kernel_backend("sample"))
    penalties = context.registry.get("samplers", "penalties")
    processors = [penalties.from_params(params)] if params.has_penalties else []
    drafter: Drafter = build_drafter(
        params.drafter, params.drafter_options, context=context,
        draft_length=params.draft_length, max_nodes=params.max_nodes, warper=warper,
    )
    if params.adaptive:
        drafter = AdaptiveDraftLength(drafter, params.draft_length, params.draft_cost)
    return Pipeline(
        verifier=make_verifier(params, warper, context),
        drafter=drafter,
        processors=processors,
    )


SPECULATIVE = Strategy(
    name="speculative",
    summary="Speculative decoding: any drafter, lossless chain or tree verification.",
    params=SpeculativeParams,
    guarantee=Guarantee.LOSSLESS,
    components=(("drafter", "{drafter}"), ("verifier", "rejection_chain"),
                ("verifier", "rejection_tree"), ("verifier", "argmax")),
    build=_build,
)


@hookimpl
def register_strategies(register: Callable[[Strategy], None]) -> None:
    """Register ``speculative``."""
    register(SPECULATIVE)


@hookimpl
def register_drafters(register: Callable[[Any], None]) -> None:
    """Register the ``draft_model`` and ``layer_skip`` drafters."""
    register(DraftModelDrafter)
    register(LayerSkipDrafter)


@hookimpl
def register_verifiers(register: Callable[[type[Verifier]], None]) -> None:
    """Register the ``rejection_chain`` and ``rejection_tree`` verifiers."""
    register(RejectionChainVerifier)
    register(RejectionTreeVerifier)
