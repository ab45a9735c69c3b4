"""Prompt lookup decoding: draft the continuation of an earlier occurrence of the suffix.

When the output repeats its input (editing code, quoting a document, answering from a
context), the tokens after the row's last ``n`` tokens often already appeared after an
earlier occurrence of the same ``n``-gram, in the prompt or in the text generated so far.
:class:`PromptLookupDrafter` proposes that continuation as a draft chain (Saxena 2023,
"Prompt Lookup Decoding"; the n-gram drafter of vLLM and transformers).

Each row keeps an incremental index from every ``n``-gram (``min_ngram <= n <=
max_ngram``) to the positions right after its most recent occurrences, extended with the
tokens committed since the previous step, so a step costs a few dictionary operations
per new token instead of a scan of the sequence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field, model_validator

from decodekit.config import StrategyParams
from decodekit.contracts import DecodeView, Drafter, DraftTree

if TYPE_CHECKING:
    from decodekit import BuildContext
    from decodekit.sampling import Warper

__all__ = ["NgramIndex", "PromptLookupDrafter", "PromptLookupOptions"]


class PromptLookupOptions(StrategyParams):
    """Options of the ``prompt_lookup`` drafter."""

    max_ngram: int = Field(3, ge=1, le=64, description="Longest suffix n-gram tried first.")
    min_ngram: int = Field(1, ge=1, le=64, description="Shortest suffix n-gram tried.")
    num_candidates: int = Field(
        1,
        ge=1,
        le=16,
        description="Distinct continuations proposed per row; more than one makes a tree "
        "whose branches share their common prefix.",
    )

    @model_validator(mode="after")
    def _ngram_range(self) -> PromptLookupOptions:
        if self.min_ngram > self.max_ngram:
            raise ValueError(
                f"min_ngram ({self.min_ngram}) must not exceed max_ngram ({self.max_ngram})"
            )
        return self


class NgramIndex:
    """Incremental n-gram index of one row's token sequence.

    Maps every ``n``-gram (``min_ngram <= n <= max_ngram``) that has at least one token
    after it to the end positions of its most recent occurrences (up to ``keep`` of
    them, most recent last). The end position ``e`` of an occurrence is the index of the
    token that follows it, so ``sequence[e:]`` is its continuation.

    Parameters
    ----------
    min_ngram, max_ngram : int
        The n-gram lengths indexed.
    keep : int
        How many occurrences to remember per n-gram.
    """

    __slots__ = ("_table", "indexed", "keep", "max_ngram", "min_ngram")

    def __init__(self, min_ngram: int, max_ngram: int, keep: int = 1) -> None:
        self.min_ngram, self.max_ngram, self.keep = min_ngram, max_ngram, keep
        self._table: dict[tuple[int, ...], list[int]] = {}
        #: Occurrences ending before this position are indexed.
        self.indexed = 1

    def copy(self) -> NgramIndex:
        """An independent copy (for rows that fork)."""
        other = NgramIndex(self.min_ngram, self.max_ngram, self.keep)
        other._table = {key: list(ends) for key, ends in self._table.items()}
        other.indexed = self.indexed
        return other

    def extend(self, sequence: list[int]) -> None:
        """Index the occurrences ending at positions ``indexed .. len(sequence) - 1``."""
        table, keep = self._table, self.keep
        lo, hi = self.min_ngram, self.max_ngram
        for end in range(self.indexed, len(sequence)):
            for n in range(lo, min(hi, end) + 1):
                key = tuple(sequence[end - n : end])
                ends = table.get(key)
                if ends is None:
                    table[key] = [end]
                else:
                    ends.append(end)
                    if len(ends) > keep:
                        del ends[0]
        self.indexed = max(self.indexed, len(sequence))

    def continuations(
        self, sequence: list[int], length: int, count: int = 1
    ) -> list[list[int]]:
        """Up to ``count`` distinct continuations of the sequence's suffix.

        The longest suffix n-gram with an earlier occurrence wins; among its occurrences
        the most recent comes first. Shorter n-grams add candidates only while fewer than
        ``count`` were found. Each continuation has at most ``length`` tokens.

        Parameters
        ----------
        sequence : list of int
            The row's tokens; must extend the sequence this index was built from.
        length : int
            Maximum tokens per continuation.
        count : int
            Maximum continuations.

        Returns
        -------
        list of list of int
            Non-empty continuations, best first; empty when nothing matches.
        """
        if len(sequence) < self.indexed:
            raise ValueError(
                f"sequence has {len(sequence)} tokens but the index covers {self.indexed}; "
                "rows must only grow (call select_rows when rows are reordered)"
            )
        self.extend(sequence)
        found: list[list[int]] = []
        size = len(sequence)
        for n in range(min(self.max_ngram, size), self.min_ngram - 1, -1):
            ends = self._table.get(tuple(sequence[size - n :]))
            if not ends:
                continue
            for end in reversed(ends):
                continuation = sequence[end : end + length]
                if continuation and not any(c[: len(continuation)] == continuation
                                            for c in found):
                    found.append(continuation)
                    if len(found) >= count:
                        return found
        return found


class PromptLookupDrafter(Drafter):
    """Drafts the continuation of the most recent earlier occurrence of the row's suffix.

    For every row, the longest suffix n-gram (from ``max_ngram`` down to ``min_ngram``
    tokens) that occurred earlier in the row's prompt or output is looked up; the tokens
    after its most recent occurrence, up to ``draft_length``, become the draft chain. A
    row without a match gets no nodes; when no row matches the step is an ordinary
    one-token step. Proposals are deterministic (one-hot), so the drafter is lossless
    under rejection sampling and greedy-equivalent under exact-match verification.

    With ``num_candidates > 1``, up to that many distinct continuations (older
    occurrences, then shorter n-grams) are merged into a prefix tree of at most
    ``max_nodes`` nodes.

    Each row's draft depends on that row's tokens only (one index per row). When the
    adaptive mode shortens :attr:`draft_length`, the draft is the one of the full length
    cut to the shorter depth (``prefix_consistent``), so a row's draft never depends on
    the lengths other rows use.

    Parameters
    ----------
    options : PromptLookupOptions
        ``max_ngram``, ``min_ngram``, ``num_candidates``.
    context : BuildContext
        Unused; part of the drafter factory signature.
    draft_length : int
        Maximum draft depth (tokens per continuation).
    max_nodes : int or None
        Maximum nodes per row; None allows ``num_candidates * draft_length``.
    warper : Warper or None
        Unused: proposals are one-hot whatever the sampling settings.
    """

    name = "prompt_lookup"
    deterministic = True
    Options = PromptLookupOptions
    #: A shorter draft_length cuts the full-length draft (see the class docstring).
    prefix_consistent = True

    def __init__(
        self,
        options: PromptLookupOptions | None = None,
        *,
        context: BuildContext | None = None,
        draft_length: int = 10,
        max_nodes: int | None = None,
        warper: Warper | None = None,
    ) -> None:
        self.options = options if options is not None else PromptLookupOptions()
        if draft_length < 1:
            raise ValueError(f"draft_length must be at least 1, got {draft_length}")
        if max_nodes is not None and max_nodes < 1:
            raise ValueError(f"max_nodes must be at least 1 or None, got {max_nodes}")
        #: The depth drafts are looked up to; :attr:`draft_length` may cut them shorter.
        self.max_length = draft_length
        self.draft_length = draft_length
        self.max_nodes = (
            max_nodes if max_nodes is not None else self.options.num_candidates * draft_length
        )
        self._rows: list[NgramIndex] = []

    @classmethod
    def drafts_trees(
        cls, options: PromptLookupOptions, *, draft_length: int, max_nodes: int | None
    ) -> bool:
        """Whether drafts can branch: with ``num_candidates > 1`` (and room for two nodes)."""
        return options.num_candidates > 1 and (max_nodes is None or max_nodes > 1)

    def _index(self, row: int) -> NgramIndex:
        while len(self._rows) <= row:
            opts = self.options
            self._rows.append(NgramIndex(opts.min_ngram, opts.max_ngram, opts.num_candidates))
        return self._rows[row]

    def draft(self, view: DecodeView) -> DraftTree | None:
        """A chain (or prefix tree) per row from its n-gram index; None if no row matches.

        Returns
        -------
        DraftTree or None
            ``tokens`` and ``parents`` ``[rows, N]`` with ``-1`` padding; ``proposals``
            None (one-hot).
        """
        # look up at the full length, then cut: a shorter draft_length (adaptive mode)
        # keeps the first levels of the full draft, whatever the node budget did
        length = min(self.max_length, self.max_nodes)
        depth = max(1, min(int(self.draft_length), length))
        count = self.options.num_candidates
        rows_tokens: list[list[int]] = []
        rows_parents: list[list[int]] = []
        width = 0
        for r, sequence in enumerate(view.sequences):
            found = self._index(r).continuations(sequence, length, count)
            if count == 1:
                tokens = found[0][:depth] if found else []
                parents = list(range(-1, len(tokens) - 1))
            else:
                tokens, parents = _cut_depth(*_prefix_tree(found, self.max_nodes), depth)
            rows_tokens.append(tokens)
            rows_parents.append(parents)
            width = max(width, len(tokens))
        if width == 0:
            return None
        for tokens, parents in zip(rows_tokens, rows_parents, strict=True):
            pad = width - len(tokens)
            if pad:
                tokens.extend([-1] * pad)
                parents.extend([-1] * pad)
        return DraftTree(
            tokens=torch.tensor(rows_tokens, dtype=torch.long),
            parents=torch.tensor(rows_parents, dtype=torch.long),
        )

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep, fork and reorder the per-row indexes: new row ``r`` is old row ``rows[r]``."""
        index = rows.tolist()
        seen: set[int] = set()
        kept: list[NgramIndex] = []
        for old in index:
            if old >= len(self._rows):  # never drafted for: start fresh
                opts = self.options
                kept.append(NgramIndex(opts.min_ngram, opts.max_ngram, opts.num_candidates))
            elif old in seen:
                kept.append(self._rows[old].copy())
            else:
                kept.append(self._rows[old])
            seen.add(old)
        self._rows = kept


def _cut_depth(tokens: list[int], parents: list[int], depth: int) -> tuple[list[int], list[int]]:
    """The nodes of a tree (topological order) at most ``depth`` deep, parents remapped."""
    depths: list[int] = []
    remap: dict[int, int] = {}
    kept_tokens: list[int] = []
    kept_parents: list[int] = []
    for i, (token, parent) in enumerate(zip(tokens, parents, strict=True)):
        depths.append(1 if parent < 0 else depths[parent] + 1)
        if depths[i] <= depth:
            remap[i] = len(kept_tokens)
            kept_tokens.append(token)
            kept_parents.append(-1 if parent < 0 else remap[parent])
    return kept_tokens, kept_parents


def _prefix_tree(continuations: list[list[int]], max_nodes: int) -> tuple[list[int], list[int]]:
    """Merge continuations into a prefix tree in topological order.

    Returns
    -------
    tokens, parents : list of int
        At most ``max_nodes`` nodes; ``parents[i]`` is ``-1`` for children of the root.
    """
    tokens: list[int] = []
    parents: list[int] = []
    children: dict[tuple[int, int], int] = {}
    for continuation in continuations:
        node = -1
        for token in continuation:
            child = children.get((node, token))
            if child is None:
                if len(tokens) >= max_nodes:
                    break
                child = len(tokens)
                children[(node, token)] = child
                tokens.append(token)
                parents.append(node)
            node = child
    return tokens, parents
