"""Built-in ``sample`` strategy (ancestral sampling) and the ``ancestral`` verifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from decodekit.builtin.processors import PenaltiesProcessor
from decodekit.config import SamplingParams, StrategyParams
from decodekit.contracts import DecodeView, DraftTree, Selection, StepOutput, Verifier
from decodekit.hookspecs import hookimpl
from decodekit.sampling import Warper, draw_seeds
from decodekit.strategy import BuildContext, Guarantee, Pipeline, Strategy
from decodekit.verifying import build_verifier


class SampleParams(SamplingParams):
    """Parameters of ``sample``: the usual sampling settings."""


class AncestralVerifier(Verifier):
    """Draws the next token from the warped target distribution (no draft).

    Lossless by construction: the token follows exactly the processed, warped target
    distribution, drawn by Gumbel-max with a seed from the row's generator.

    Parameters
    ----------
    options : AncestralVerifier.Options, optional
    context : BuildContext, optional
    warper : Warper, optional
        The sampling settings; None samples the processed distribution as it is.
    """

    name = "ancestral"
    lossless = True
    greedy_equivalent = True

    class Options(StrategyParams):
        """``ancestral`` takes no options of its own: the warper carries the settings."""

    def __init__(
        self, options: Options | None = None, *, context: Any = None,
        warper: Warper | None = None,
    ) -> None:
        self.warper = warper or Warper()

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Sample one token per row from the root distribution."""
        if draft is not None:
            raise ValueError("the ancestral verifier does not verify drafts")
        tokens = self.warper.sample(output.logits[:, 0], draw_seeds(view.generators))
        return Selection.single(tokens.tolist())


def _build(params: SampleParams, context: BuildContext) -> Pipeline:
    warper = Warper.from_params(params, backend=context.kernel_backend("sample"))
    processors = [PenaltiesProcessor.from_params(params)] if params.has_penalties else []
    verifier = build_verifier(AncestralVerifier, context=context, warper=warper)
    return Pipeline(verifier=verifier, processors=processors)


SAMPLE = Strategy(
    name="sample",
    summary="Ancestral sampling with temperature, top-k, top-p, min-p, typical-p and penalties.",
    params=SampleParams,
    guarantee=Guarantee.LOSSLESS,
    components=(("verifier", "ancestral"), ("sampler", "penalties")),
    build=_build,
)


@hookimpl
def register_strategies(register: Callable[[Strategy], None]) -> None:
    """Register ``sample``."""
    register(SAMPLE)


@hookimpl
def register_verifiers(register: Callable[[type[Verifier]], None]) -> None:
    """Register the ``ancestral`` verifier."""
    register(AncestralVerifier)


__all__ = ["SAMPLE", "AncestralVerifier", "SampleParams"]
