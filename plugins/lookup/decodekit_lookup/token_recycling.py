"""Token recycling: draft trees from the candidate tokens of earlier steps.

Luo et al. 2024, "Turning Trash into Treasure: Accelerating Inference of Large Language
Models with Token Recycling". Every forward of the target model computes a full
distribution at the root and at every draft node, and plain decoding throws all but one
token of it away. Token recycling keeps, for every token ``t``, the ``k`` most likely
tokens seen after ``t`` the last time the model scored a position holding ``t``: an
adjacency matrix ``[V, k]``. A draft tree is then read off the matrix breadth-first along a
static tree template: the root's children are the candidates after the last committed
token, their children the candidates after each of them, and so on.

The matrix is a property of the model, not of a row: it is shared by every row of a
call (rows teach each other), and with ``persistent=True`` it is also kept across calls
on the same model, as the paper's "hot start" does. Sharing changes which tokens are
drafted, never which are committed: drafts are one-hot, and the ``speculative``
verifiers commit, for any one-hot draft, the tokens the target draws with the row's own
seed (exact match under greedy settings, coupled sampling otherwise; see
:mod:`decodekit_speculative.verifiers`). So a row's output depends on its prompt, the
parameters and its seed only, not on the other rows or on earlier calls; the table
changes speed only (and, through the shape of the tree the target scores, the float
rounding of its logits, as any change of batch does).
"""

from __future__ import annotations

import heapq
import weakref
from typing import TYPE_CHECKING

import torch
from pydantic import Field, field_validator

from decodekit.config import StrategyParams
from decodekit.contracts import DecodeView, Drafter, DraftTree, Selection, StepOutput

if TYPE_CHECKING:
    from decodekit import BuildContext
    from decodekit.contracts import LanguageModel
    from decodekit.sampling import Warper

__all__ = [
    "AdjacencyTable",
    "TokenRecyclingDrafter",
    "TokenRecyclingOptions",
    "TreeTemplate",
    "static_tree",
]

#: Default weight of each candidate rank: a rough chance that the rank-``j`` candidate
#: of the adjacency table is the token greedy decoding picks. Only the order of path
#: products matters: it decides which nodes the static template keeps.
DEFAULT_RANK_WEIGHTS = (0.45, 0.16, 0.08, 0.05, 0.035, 0.025, 0.02, 0.015)


class TokenRecyclingOptions(StrategyParams):
    """Options of the ``token_recycling`` drafter."""

    top_k: int = Field(8, ge=1, le=64, description="Candidates kept per token (k).")
    max_depth: int = Field(6, ge=1, le=32, description="Depth of the static tree template.")
    rank_weights: tuple[float, ...] | None = Field(
        None,
        description="Weight of each candidate rank (length top_k, in (0, 1]); the "
        "template keeps the max_nodes paths of largest weight product. Default: "
        "a decreasing profile.",
    )
    persistent: bool = Field(
        False,
        description="Keep the adjacency table across generation calls on the same model "
        "(hot start); with the speculative verifiers outputs never depend on it (one-hot "
        "drafts: the committed tokens are the target's own draws), only speed does.",
    )

    @field_validator("rank_weights")
    @classmethod
    def _weights(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and not all(0.0 < w <= 1.0 for w in value):
            raise ValueError("every rank weight must be in (0, 1]")
        return value


class TreeTemplate:
    """A static draft-tree template: which candidate rank each node takes.

    Attributes
    ----------
    parents : list of int
        Per node, the index of its parent node (``-1``: child of the root); topological
        (breadth-first) order.
    ranks : list of int
        Per node, which candidate of its parent's adjacency row it takes (0 = best).
    depths : list of int
        Per node, its depth (1 for children of the root).
    """

    def __init__(self, parents: list[int], ranks: list[int]) -> None:
        if len(parents) != len(ranks):
            raise ValueError("parents and ranks must have the same length")
        depths: list[int] = []
        for i, parent in enumerate(parents):
            if parent >= i:
                raise ValueError(f"node {i}: parent {parent} is not before it")
            depths.append(1 if parent < 0 else depths[parent] + 1)
        self.parents, self.ranks, self.depths = list(parents), list(ranks), depths

    def __len__(self) -> int:
        return len(self.parents)

    def children_counts(self) -> list[int]:
        """Number of children of the root (index 0) and of every node (index ``i + 1``)."""
        counts = [0] * (len(self) + 1)
        for parent in self.parents:
            counts[parent + 1] += 1
        return counts


def static_tree(
    max_nodes: int, max_depth: int, rank_weights: tuple[float, ...] | list[float]
) -> TreeTemplate:
    """The template of the ``max_nodes`` paths with the largest product of rank weights.

    A node's weight is the product of the weights of the ranks along its path, so it
    never exceeds its parent's; taking the heaviest nodes first keeps the set closed
    under ancestors. Nodes are returned in breadth-first order (depth, then parent,
    then rank), ranks of siblings contiguous from 0.

    Parameters
    ----------
    max_nodes : int
        Node budget.
    max_depth : int
        Deepest level.
    rank_weights : sequence of float
        Weight of each rank; its length is the branching limit ``k``.

    Returns
    -------
    TreeTemplate
    """
    if max_nodes < 1 or max_depth < 1 or not rank_weights:
        raise ValueError("static_tree needs max_nodes >= 1, max_depth >= 1 and rank weights")
    # nodes as rank paths; the heap holds candidate children (next rank of a sibling,
    # first child of a chosen node)
    chosen: list[tuple[int, ...]] = []
    heap: list[tuple[float, tuple[int, ...]]] = [(-rank_weights[0], (0,))]
    while heap and len(chosen) < max_nodes:
        negative, path = heapq.heappop(heap)
        chosen.append(path)
        weight = -negative
        rank = path[-1]
        if rank + 1 < len(rank_weights):  # the next sibling
            sibling_weight = weight / rank_weights[rank] * rank_weights[rank + 1]
            heapq.heappush(heap, (-sibling_weight, (*path[:-1], rank + 1)))
        if len(path) < max_depth:  # the first child
            heapq.heappush(heap, (-weight * rank_weights[0], (*path, 0)))
    chosen.sort(key=lambda p: (len(p), p))
    position = {path: i for i, path in enumerate(chosen)}
    parents = [position[p[:-1]] if len(p) > 1 else -1 for p in chosen]
    ranks = [p[-1] for p in chosen]
    return TreeTemplate(parents, ranks)


class AdjacencyTable:
    """The ``[V, k]`` adjacency matrix, stored sparsely: token -> its top-k successors.

    Rows of tokens never scored are absent (no candidates). Stored as a dict of Python
    lists because the per-step draft walks a few dozen entries, which is faster in
    plain Python than through tensor indexing.

    Parameters
    ----------
    top_k : int
        Candidates per token.
    """

    def __init__(self, top_k: int) -> None:
        self.top_k = top_k
        self.rows: dict[int, list[int]] = {}

    def update(self, tokens: list[int], logits: torch.Tensor) -> None:
        """Set the candidates after each of ``tokens`` from ``logits [len(tokens), V]``.

        Later entries win when a token repeats (they come from later positions).
        """
        if not tokens:
            return
        k = min(self.top_k, int(logits.shape[-1]))
        best = torch.topk(logits, k, dim=-1, sorted=True).indices.tolist()
        rows = self.rows
        for token, candidates in zip(tokens, best, strict=True):
            rows[token] = candidates

    def as_tensor(self, vocab_size: int) -> torch.Tensor:
        """The dense matrix ``LongTensor[V, k]``, ``-1`` where a token has no candidates."""
        dense = torch.full((vocab_size, self.top_k), -1, dtype=torch.long)
        for token, candidates in self.rows.items():
            dense[token, : len(candidates)] = torch.tensor(candidates, dtype=torch.long)
        return dense


def _rank_weights(options: TokenRecyclingOptions) -> tuple[float, ...]:
    """The options' rank weights, or the default profile padded to ``top_k``."""
    weights = options.rank_weights
    if weights is None:
        weights = DEFAULT_RANK_WEIGHTS[: options.top_k]
        return weights + (weights[-1],) * (options.top_k - len(weights))
    if len(weights) != options.top_k:
        raise ValueError(
            f"rank_weights has {len(weights)} entries; it needs top_k = {options.top_k}"
        )
    return weights


#: Tables kept across calls (``persistent=True``), per model and ``top_k``.
_PERSISTENT: weakref.WeakKeyDictionary[LanguageModel, dict[int, AdjacencyTable]] = (
    weakref.WeakKeyDictionary()
)


class TokenRecyclingDrafter(Drafter):
    """Draft trees read from an adjacency table of recycled candidate tokens.

    Each step the tree template is filled breadth-first: node ``i`` takes candidate
    ``ranks[i]`` of its parent's token (the root's token is the row's last committed
    token). Nodes whose parent token has no candidates yet become padding, with their
    whole subtree. After the step, :meth:`observe` sets the candidates after the root
    token and after every draft node's token to the top-k tokens of the target's raw
    logits there. Proposals are one-hot (deterministic).

    Parameters
    ----------
    options : TokenRecyclingOptions
        ``top_k``, ``max_depth``, ``rank_weights``, ``persistent``.
    context : BuildContext or None
        Gives the model for ``persistent`` tables.
    draft_length : int
        Caps the template depth (``min(max_depth, draft_length)``).
    max_nodes : int or None
        Node budget of the template; None means 40.
    warper : Warper or None
        Unused: proposals are one-hot whatever the sampling settings.
    """

    name = "token_recycling"
    deterministic = True
    Options = TokenRecyclingOptions
    #: Template size when the strategy sets no ``max_nodes``.
    default_max_nodes = 40

    def __init__(
        self,
        options: TokenRecyclingOptions | None = None,
        *,
        context: BuildContext | None = None,
        draft_length: int | None = None,
        max_nodes: int | None = None,
        warper: Warper | None = None,
    ) -> None:
        self.options = options = options if options is not None else TokenRecyclingOptions()
        weights = _rank_weights(options)
        self.template = self._template(options, weights, draft_length, max_nodes)
        self.table = self._table(context, options)
        self._roots: list[int] = []

    @classmethod
    def _template(
        cls,
        options: TokenRecyclingOptions,
        weights: tuple[float, ...],
        draft_length: int | None,
        max_nodes: int | None,
    ) -> TreeTemplate:
        if max_nodes is not None and max_nodes < 1:
            raise ValueError(f"max_nodes must be at least 1 or None, got {max_nodes}")
        if draft_length is not None and draft_length < 1:
            raise ValueError(f"draft_length must be at least 1, got {draft_length}")
        depth = options.max_depth if draft_length is None else min(options.max_depth,
                                                                   draft_length)
        nodes = max_nodes if max_nodes is not None else cls.default_max_nodes
        return static_tree(nodes, depth, weights)

    @classmethod
    def drafts_trees(
        cls, options: TokenRecyclingOptions, *, draft_length: int, max_nodes: int | None
    ) -> bool:
        """Whether the template branches (it is a chain only with ``top_k = 1`` or one node)."""
        template = cls._template(options, _rank_weights(options), draft_length, max_nodes)
        return template.parents != list(range(-1, len(template) - 1))

    @staticmethod
    def _table(context: BuildContext | None, options: TokenRecyclingOptions) -> AdjacencyTable:
        if not options.persistent or context is None:
            return AdjacencyTable(options.top_k)
        tables = _PERSISTENT.setdefault(context.model, {})
        return tables.setdefault(options.top_k, AdjacencyTable(options.top_k))

    def fill(self, roots: list[int]) -> tuple[list[list[int]], list[list[int]]]:
        """Tokens and parents ``[rows][N]`` of the template filled from each root token.

        Padding nodes (no candidates for their parent's token) have token and parent -1.
        """
        rows_table = self.table.rows
        parents_t, ranks = self.template.parents, self.template.ranks
        all_tokens: list[list[int]] = []
        all_parents: list[list[int]] = []
        for root in roots:
            tokens: list[int] = []
            parents: list[int] = []
            for parent, rank in zip(parents_t, ranks, strict=True):
                source = root if parent < 0 else tokens[parent]
                candidates = rows_table.get(source) if source >= 0 else None
                if candidates is None or rank >= len(candidates):
                    tokens.append(-1)
                    parents.append(-1)
                else:
                    tokens.append(candidates[rank])
                    parents.append(parent)
            all_tokens.append(tokens)
            all_parents.append(parents)
        return all_tokens, all_parents

    def draft(self, view: DecodeView) -> DraftTree | None:
        """The template filled from each row's last token; None while the table is empty.

        Returns
        -------
        DraftTree or None
            ``tokens`` and ``parents`` ``[rows, N]`` (``N`` = template size), ``-1``
            padding; ``proposals`` None.
        """
        self._roots = [sequence[-1] for sequence in view.sequences]
        if not self.table.rows:
            return None
        tokens, parents = self.fill(self._roots)
        if not any(t >= 0 for row in tokens for t in row):
            return None
        return DraftTree(
            tokens=torch.tensor(tokens, dtype=torch.long),
            parents=torch.tensor(parents, dtype=torch.long),
        )

    def observe(
        self,
        view: DecodeView,
        draft: DraftTree | None,
        output: StepOutput,
        selection: Selection,
    ) -> None:
        """Recycle the step's target logits: top-k after the root and every node.

        Parameters
        ----------
        output : StepOutput
            ``raw_logits [rows, 1 + N, V]``: position 0 follows the root token, position
            ``i + 1`` follows node ``i``.
        """
        raw = output.raw_logits
        if draft is None:
            self.table.update(self._roots, raw[:, 0])
            return
        with_root = torch.cat(
            [torch.tensor(self._roots, dtype=torch.long).unsqueeze(1), draft.tokens], dim=1
        ).view(-1)
        flat = raw.reshape(-1, raw.shape[-1])  # a view: no copy of the logits
        valid = (with_root >= 0).nonzero().squeeze(1)
        if int(valid.numel()) == int(with_root.numel()):
            self.table.update(with_root.tolist(), flat)
        else:  # padding nodes: score only the real ones
            self.table.update(with_root[valid].tolist(), flat.index_select(0, valid))

    def select_rows(self, rows: torch.Tensor) -> None:
        """Nothing per row to keep: the table is shared by all rows (see the module docstring)."""
