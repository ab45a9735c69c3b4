"""Built-in ``greedy`` strategy and the ``argmax`` verifier."""

from __future__ import annotations

from collections.abc import Callable

from decodekit import hookimpl
from decodekit.components import DecodeView, DraftTree, Selection, StepOutput, Verifier
from decodekit.config import StrategyParams
from decodekit.strategy import BuildContext, Guarantee, Pipeline, Strategy


class GreedyParams(StrategyParams):
    """``greedy`` takes no parameters."""


class ArgmaxVerifier(Verifier):
    """Commits the argmax token; follows a draft tree while its tokens equal the argmax.

    With a draft this is exact-match verification: the committed tokens are exactly
    those plain greedy decoding would produce, whatever the drafter proposed.
    """

    name = "argmax"
    greedy_equivalent = True

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Argmax at the root, then down the tree while a child matches the argmax."""
        best = output.logits.argmax(-1)  # [rows, 1 + N]
        if draft is None:
            return Selection.single(best[:, 0].tolist())
        return follow_tree(best.tolist(), draft.tokens.tolist(), draft.parents.tolist())


def follow_tree(
    targets: list[list[int]], tokens: list[list[int]], parents: list[list[int]]
) -> Selection:
    """Walk each row's tree from the root while a child's token equals the target there.

    Parameters
    ----------
    targets : list of list of int
        ``targets[r][i]`` is the token wanted after position ``i`` (0: the root,
        ``i + 1``: draft node ``i``).
    tokens, parents : list of list of int
        The draft tree, as in :class:`~decodekit.DraftTree`.
    """
    out_tokens, kept, accepted = [], [], []
    for r in range(len(targets)):
        node, path, row_tokens = -1, [], []
        while True:
            want = targets[r][node + 1]
            row_tokens.append(want)
            child = next(
                (i for i, (t, p) in enumerate(zip(tokens[r], parents[r], strict=True))
                 if p == node and t == want),
                None,
            )
            if child is None:
                break
            path.append(child)
            node = child
        out_tokens.append(row_tokens)
        kept.append(path)
        accepted.append(len(path))
    return Selection(tokens=out_tokens, kept_nodes=kept, accepted_draft=accepted)


def _build(params: GreedyParams, context: BuildContext) -> Pipeline:
    return Pipeline(verifier=ArgmaxVerifier())


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


__all__ = ["GREEDY", "ArgmaxVerifier", "GreedyParams", "follow_tree"]
