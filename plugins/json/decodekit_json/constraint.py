"""Per-row matcher state for the decode loop: masks at the root and every draft node.

:class:`GrammarConstraint` implements :class:`decodekit.CompiledConstraint` over any
:class:`~decodekit_json.backends.Grammar`. Each row owns one engine matcher. For a draft
tree, the mask of a node is computed by advancing the row's matcher along the node's path
and rolling it back afterwards (nodes come in topological order, so the shared prefix of
consecutive paths is kept: a chain of ``K`` nodes costs ``K`` token advances, not
``K**2 / 2``). Beams fork matchers (:meth:`select_rows` with repeated rows).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from decodekit.contracts import CompiledConstraint, DraftTree
from decodekit.errors import ConstraintError
from decodekit_json.backends import Grammar, Matcher

__all__ = ["GrammarConstraint"]


class GrammarConstraint(CompiledConstraint):
    """Matcher state of one generation call, for a compiled grammar.

    Parameters
    ----------
    grammar : Grammar
        The compiled grammar (shared, cached per tokenizer).
    description : str
        How errors name the constraint.

    Attributes
    ----------
    mask_seconds : list of float
        Wall time of every :meth:`fill_bitmask` call (all rows and nodes of a step).
    """

    def __init__(self, grammar: Grammar, description: str) -> None:
        self.grammar = grammar
        self.description = description
        self.matchers: list[Matcher] = []
        self.mask_seconds: list[float] = []
        self._scratch = torch.empty(grammar.words, dtype=torch.int32)

    # -- contract ---------------------------------------------------------------------
    def start(self, rows: int) -> None:
        """Create ``rows`` matchers at the start of the output."""
        self.matchers = [self.grammar.matcher() for _ in range(rows)]

    def fill_bitmask(self, bitmask: torch.Tensor, draft: DraftTree | None) -> None:
        """Fill ``int32[rows, 1 + N, W]`` with the allowed tokens at the root and each node.

        Nodes whose path leaves the grammar keep whatever the mask held (the loop
        rejects them because their token is masked at their parent).
        """
        began = time.perf_counter()
        rows = bitmask.shape[0]
        if rows != len(self.matchers):
            raise RuntimeError(
                f"{self.description}: bitmask has {rows} rows but {len(self.matchers)} "
                "matchers are active (select_rows was not called)"
            )
        for r, matcher in enumerate(self.matchers):
            self._fill(matcher, bitmask[r, 0])
            if draft is not None:
                self._fill_draft(matcher, bitmask[r], draft.tokens[r].tolist(),
                                 draft.parents[r].tolist())
        self.mask_seconds.append(time.perf_counter() - began)

    def advance(self, row: int, tokens: Sequence[int]) -> None:
        """Consume committed tokens; tokens after an accepted EOS are ignored.

        Raises
        ------
        ConstraintError
            A committed token is not allowed (a component ignored the mask).
        """
        matcher = self.matchers[row]
        eos = self.grammar.eos_tokens
        for token in (int(t) for t in tokens):
            if matcher.consume([token]) != 1:
                if token in eos and matcher.accepting():
                    return  # EOS ends a complete output
                raise ConstraintError(
                    f"{self.description}: row {row} committed token {token}, which the "
                    "constraint does not allow here (a component ignored the token mask)"
                )
            if token in eos:
                return

    def forced_tokens(self, row: int) -> list[int]:
        """The tokens that are the only continuation the grammar allows (fast-forward)."""
        return self.matchers[row].forced()

    def is_finished(self, row: int) -> bool:
        """Whether the row's output is complete (only EOS could follow)."""
        return self.matchers[row].finished()

    def is_accepting(self, row: int) -> bool:
        """Whether the row's output so far is complete under the grammar."""
        return self.matchers[row].accepting()

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep, fork and reorder matchers: new row ``r`` is old row ``rows[r]``."""
        seen: set[int] = set()
        kept: list[Matcher] = []
        for old in rows.tolist():
            matcher = self.matchers[old]
            kept.append(matcher.fork() if old in seen else matcher)
            seen.add(old)
        self.matchers = kept

    # -- helpers ----------------------------------------------------------------------
    def _fill(self, matcher: Matcher, out: torch.Tensor) -> None:
        words = out.shape[0]
        if words == matcher.words and out.is_contiguous():
            matcher.fill(out)
            return
        matcher.fill(self._scratch)
        shared = min(words, matcher.words)
        out[:shared] = self._scratch[:shared]
        out[shared:] = 0  # ids beyond the tokenizer's vocabulary are never allowed

    def _fill_draft(self, matcher: Matcher, masks: torch.Tensor, tokens: list[int],
                    parents: list[int]) -> None:
        """Masks ``[1 + N, W]`` after each node, walking the tree with one matcher."""
        paths: list[list[int] | None] = []  # node -> node ids from the root, or None if invalid
        current: list[int] = []  # nodes consumed by the matcher right now
        for node, (token, parent) in enumerate(zip(tokens, parents, strict=True)):
            if token < 0:
                paths.append(None)
                continue
            base = [] if parent < 0 else paths[parent]
            if base is None:
                paths.append(None)
                continue
            path = [*base, node]
            common = 0
            while common < min(len(current), len(base)) and current[common] == base[common]:
                common += 1
            matcher.rollback(len(current) - common)
            current = current[:common]
            for step in path[common:]:
                if matcher.consume([tokens[step]]) != 1:
                    break
                current.append(step)
            if len(current) != len(path):
                paths.append(None)
                continue
            paths.append(path)
            self._fill(matcher, masks[1 + node])
        matcher.rollback(len(current))
