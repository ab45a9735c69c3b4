"""Built-in ``sample`` strategy (ancestral sampling) and the ``ancestral`` verifier."""

from __future__ import annotations

from collections.abc import Callable

from decodekit.builtin.processors import PenaltiesProcessor
from decodekit.config import SamplingParams
from decodekit.contracts import DecodeView, DraftTree, Selection, StepOutput, Verifier
from decodekit.hookspecs import hookimpl
from decodekit.sampling import Warper, draw_seeds
from decodekit.strategy import BuildContext, Guarantee, Pipeline, Strategy


class SampleParams(SamplingParams):
    """Parameters of ``sample``: the usual sampling settings."""


class AncestralVerifier(Verifier):
    """Draws the next token from the warped target distribution (no draft).

    Lossless by construction: the token follows exactly the processed, warped target
    distribution, drawn by Gumbel-max with a seed from the row's generator.
    """

    name = "ancestral"
    lossless = True
    greedy_equivalent = True

    def __init__(self, warper: Warper | None = None) -> None:
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
    return Pipeline(verifier=AncestralVerifier(warper), processors=processors)


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
