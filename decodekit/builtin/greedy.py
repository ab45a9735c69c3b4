"""Built-in ``greedy`` strategy and the ``argmax`` verifier."""

from __future__ import annotations

from collections.abc import Callable

from decodekit.config import StrategyParams
from decodekit.contracts import DecodeView, DraftTree, Selection, StepOutput, Verifier
from decodekit.hookspecs import hookimpl
from decodekit.strategy import BuildContext, Guarantee, Pipeline, Strategy
from decodekit.tree import follow_tree
from decodekit.verifying import build_verifier


class GreedyParams(StrategyParams):
    """``greedy`` takes no parameters."""


class ArgmaxVerifier(Verifier):
    """Commits the argmax token; follows a draft tree while its tokens equal the argmax.

    With a draft this is exact-match verification: the committed tokens are exactly
    those plain greedy decoding would produce, whatever the drafter proposed.
    """

    name = "argmax"
    greedy_equivalent = True

    class Options(StrategyParams):
        """``argmax`` takes no options (and ignores the warper)."""

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Argmax at the root, then down the tree while a child matches the argmax."""
        best = output.logits.argmax(-1)  # [rows, 1 + N]
        if draft is None:
            return Selection.single(best[:, 0].tolist())
        return follow_tree(best.tolist(), draft.tokens.tolist(), draft.parents.tolist())


def _build(params: GreedyParams, context: BuildContext) -> Pipeline:
    return Pipeline(verifier=build_verifier(ArgmaxVerifier, context=context))


GREEDY = Strategy(
    name="greedy",
    summary="The most likely token at every step.",
    params=GreedyParams,
    guarantee=Guarantee.GREEDY_EQUIVALENT,
    components=(("verifier", "argmax"),),
    build=_build,
)


@hookimpl
def register_strategies(register: Callable[[Strategy], None]) -> None:
    """Register ``greedy``."""
    register(GREEDY)


@hookimpl
def register_verifiers(register: Callable[[type[Verifier]], None]) -> None:
    """Register the ``argmax`` verifier."""
    register(ArgmaxVerifier)


__all__ = ["GREEDY", "ArgmaxVerifier", "GreedyParams"]
