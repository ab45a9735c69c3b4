"""The contracts of the decode step: its data types and the abstract components.

This is the bottom of decodekit: it imports nothing else of decodekit, and every other
module (and every plugin) builds on it. It holds

- the data that flows through one step: :class:`StepBatch` (the model input),
  :class:`ForwardResult` (the model output), :class:`DraftTree`, :class:`DecodeView`,
  :class:`StepOutput`, :class:`Selection` and :class:`RowResult`;
- the model contract: :class:`LanguageModel` and its :class:`KVCache`;
- the component contracts plugins implement: :class:`Drafter`, :class:`Verifier`,
  :class:`LogitsProcessor`, :class:`CachePolicy`, :class:`CompiledConstraint` and
  :class:`ConstraintFactory`.

Plugins register *factories* for the components through the registration hooks of
:mod:`decodekit.hookspecs`; a strategy combines instances into a
:class:`~decodekit.Pipeline`. Each contract is a small abstract class, so a plugin's
mistakes surface when it is instantiated, not in the middle of a generation.

Shapes use ``rows`` (rows of the current batch: prompts, or beams of them), ``N`` (draft
nodes per row), ``V`` (vocabulary size) and ``H`` (hidden size).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

__all__ = [
    "CachePolicy",
    "CompiledConstraint",
    "ComponentFactory",
    "ConstraintFactory",
    "DecodeView",
    "DraftTree",
    "Drafter",
    "ForwardResult",
    "KVCache",
    "LanguageModel",
    "LogitsProcessor",
    "RowResult",
    "Selection",
    "StepBatch",
    "StepOutput",
    "Verifier",
]

#: A registered component factory: a class (or callable) with a ``name`` attribute.
ComponentFactory = Any


@dataclass(frozen=True)
class StepBatch:
    """Model input for one step.

    Attributes
    ----------
    tokens : LongTensor ``[rows, P + N]``
        Pending tokens (left-padded to ``P``) followed by draft nodes.
    positions : LongTensor ``[rows, P + N]``
        Sequence position of every slot (0 in padding slots).
    slot_valid : BoolTensor ``[rows, P + N]``
        False for padding slots.
    ancestors : BoolTensor ``[rows, P + N, P + N]`` or None
        ``ancestors[r, i, j]``: slot ``i`` attends to slot ``j`` of this step. None means
        plain causal attention over valid slots (no tree, no padding).
    num_pending : int
        ``P``, the width of the pending part.
    num_nodes : int
        ``N``, the number of draft nodes per row.
    input_embeds : FloatTensor ``[rows, P + N, H]`` or None
        Input embeddings for the slots marked in ``embedded``, read in place of their
        tokens' embeddings (superposed decoding feeds a weighted sum of embeddings that is
        no token). None: every slot reads its token's embedding.
    embedded : BoolTensor ``[rows, P + N]`` or None
        Which slots read ``input_embeds``; set exactly when ``input_embeds`` is.
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    slot_valid: torch.Tensor
    ancestors: torch.Tensor | None
    num_pending: int
    num_nodes: int
    input_embeds: torch.Tensor | None = None
    embedded: torch.Tensor | None = None

    @property
    def rows(self) -> int:
        """Number of rows."""
        return int(self.tokens.shape[0])

    @property
    def width(self) -> int:
        """Slots per row, ``P + N``."""
        return int(self.tokens.shape[1])

    @property
    def logits_count(self) -> int:
        """Positions whose logits the step needs: the last pending slot and every node."""
        return (1 if self.num_pending else 0) + self.num_nodes


@dataclass
class ForwardResult:
    """What a model computed for one step.

    Attributes
    ----------
    logits : FloatTensor ``[rows, StepBatch.logits_count, V]``
        float32 logits at the last pending slot (if any) and every draft node.
    hidden_states : FloatTensor ``[rows, P + N, H]`` or None
        Last-layer hidden states of every slot of the step, when asked for.
    """

    logits: torch.Tensor
    hidden_states: torch.Tensor | None


class KVCache(ABC):
    """Per-row cache state with the operations strategies need."""

    @property
    @abstractmethod
    def next_positions(self) -> torch.Tensor:
        """LongTensor ``[rows]``: committed tokens in the cache per row (next position)."""

    @abstractmethod
    def commit(self, keep: torch.Tensor) -> None:
        """Keep the last step's slots where ``keep`` (``BoolTensor[rows, P + N]``) is True.

        Keeping the pending tokens plus one path of a tree is how a step commits its
        accepted draft nodes; the other nodes become holes.
        """

    @abstractmethod
    def rollback(self, counts: torch.Tensor) -> None:
        """Drop the last ``counts[r]`` committed tokens of every row ``r``."""

    @abstractmethod
    def select_rows(self, rows: torch.Tensor) -> None:
        """Reorder, fork or drop rows: new row ``r`` is old row ``rows[r]``."""


class LanguageModel(ABC):
    """A causal language model the decode loop can drive.

    Attributes
    ----------
    vocab_size : int
        ``V``, the width of the logits.
    context_length : int
        Most tokens (prompt plus output) the model can attend to.
    eos_token_ids : frozenset of int
        Tokens that end a row.
    tokenizer : Any or None
        A Hugging Face tokenizer, or None for models that work on token ids only.
    device : torch.device
    accepts_input_embeddings : bool
        Whether :meth:`forward` reads :attr:`StepBatch.input_embeds` and :meth:`embed`
        works; strategies that feed embeddings refuse other models when they build.
    """

    vocab_size: int
    context_length: int
    eos_token_ids: frozenset[int]
    tokenizer: Any = None
    device: torch.device = torch.device("cpu")
    accepts_input_embeddings: bool = False

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Input embeddings of token ids: ``[...]`` to float32 ``[..., H]``.

        Only models with ``accepts_input_embeddings`` implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not take input embeddings")

    @abstractmethod
    def new_cache(self, rows: int) -> KVCache:
        """An empty cache for ``rows`` rows."""

    @abstractmethod
    def forward(
        self, step: StepBatch, cache: KVCache, *, hidden_states: bool = False
    ) -> ForwardResult:
        """Score one step; appends the step's slots to ``cache`` (then call ``commit``)."""

    def encode(self, prompt: str, *, raw: bool = False) -> list[int]:
        """Token ids of a prompt; the chat template applies unless ``raw``."""
        raise NotImplementedError(f"{type(self).__name__} has no tokenizer")

    def decode(self, token_ids: list[int]) -> str:
        """Text of generated token ids, special tokens skipped."""
        raise NotImplementedError(f"{type(self).__name__} has no tokenizer")


@dataclass(frozen=True)
class DraftTree:
    """A token tree per row, proposed by a drafter for one step.

    A chain is a tree with one branch; the top-k candidates of contrastive search are k
    siblings of depth 1. Nodes are in topological order (a parent before its children).

    Attributes
    ----------
    tokens : LongTensor ``[rows, N]``
        The proposed token of every node; ``-1`` marks padding (rows with fewer nodes).
    parents : LongTensor ``[rows, N]``
        Index of each node's parent within the row, ``-1`` for a child of the root (the
        last committed token). Padding nodes have parent ``-1``.
    proposals : FloatTensor ``[rows, N, V]`` or None
        For every node, the exact distribution (float32) the drafter sampled it from,
        i.e. its proposal at the parent. ``None`` declares the drafter deterministic:
        every proposal is one-hot on the node's token.
    """

    tokens: torch.Tensor
    parents: torch.Tensor
    proposals: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.tokens.ndim != 2 or self.tokens.shape != self.parents.shape:
            raise ValueError(
                "DraftTree.tokens and .parents must both have shape [rows, N]; got "
                f"{tuple(self.tokens.shape)} and {tuple(self.parents.shape)}"
            )
        if self.proposals is not None and (
            self.proposals.ndim != 3 or self.proposals.shape[:2] != self.tokens.shape
        ):
            raise ValueError(
                "DraftTree.proposals must have shape [rows, N, V]; got "
                f"{tuple(self.proposals.shape)} for tokens {tuple(self.tokens.shape)}"
            )
        below = self.parents >= torch.arange(self.parents.shape[1], device=self.parents.device)
        if bool(below.any()):
            raise ValueError("DraftTree nodes must be in topological order (parent < node)")

    @property
    def rows(self) -> int:
        """Number of rows."""
        return int(self.tokens.shape[0])

    @property
    def num_nodes(self) -> int:
        """Nodes per row, padding included (``N``)."""
        return int(self.tokens.shape[1])

    @property
    def deterministic(self) -> bool:
        """Whether every proposal is one-hot on the node's token."""
        return self.proposals is None

    def ancestors(self) -> torch.Tensor:
        """Node-to-node ancestry: BoolTensor ``[rows, N, N]``.

        ``ancestors()[r, i, j]`` is True when node ``j`` is node ``i`` or one of its
        ancestors. Computed as the transitive closure of the parent relation by repeated
        squaring (``log2 N`` batched matrix products), not node by node.
        """
        rows, n = self.parents.shape
        reach = torch.eye(n, device=self.parents.device).expand(rows, n, n).clone()
        has_parent = self.parents >= 0
        if bool(has_parent.any()):
            r, i = has_parent.nonzero(as_tuple=True)
            reach[r, i, self.parents[r, i]] = 1.0
        steps = max(1, (n - 1).bit_length())
        for _ in range(steps):
            reach = torch.bmm(reach, reach).clamp_(max=1.0)
        return reach.bool()

    def depths(self) -> torch.Tensor:
        """Depth of every node, 1 for children of the root: LongTensor ``[rows, N]``."""
        if self.num_nodes == 0:
            return torch.zeros_like(self.parents)
        return self.ancestors().sum(-1).long()

    def is_chain(self) -> bool:
        """Whether every row's nodes form one chain (node i's parent is node i-1)."""
        expected = torch.arange(-1, self.num_nodes - 1, device=self.parents.device).unsqueeze(0)
        valid = self.tokens >= 0
        return bool(((self.parents == expected) | ~valid).all())

    @classmethod
    def chain(cls, tokens: torch.Tensor, proposals: torch.Tensor | None = None) -> DraftTree:
        """Build a chain draft from tokens ``[rows, K]`` (``-1`` pads shorter rows)."""
        rows, k = tokens.shape
        parents = torch.arange(-1, k - 1, device=tokens.device).unsqueeze(0).expand(rows, k).clone()
        parents = torch.where(tokens >= 0, parents, torch.full_like(parents, -1))
        return cls(tokens=tokens, parents=parents, proposals=proposals)


@dataclass
class DecodeView:
    """What components see of the decode state at the start of a step (read-only).

    Attributes
    ----------
    sequences : list of list of int
        Per row, every committed token: the prompt followed by the generated tokens.
    prompt_lengths : list of int
        Per row, the number of prompt tokens at the start of ``sequences``.
    generators : list of torch.Generator
        Per row, the random generator seeded from the config's seed. Components that
        draw randomness must use these, in row order, so results are reproducible.
    model : LanguageModel
        The target model (drafters that run a model of their own keep it themselves).
    step : int
        Index of the step, 0 for the step that also processes the prompt.
    row_ids : list of int
        Per current row, the index of the prompt it continues (rows leave the batch when
        they finish; beams of one prompt share the index).
    root_logits : FloatTensor ``[rows, V]`` or None
        Per row with nothing pending (its last committed token was a kept draft node,
        so its forward already happened), the raw logits after that token, computed in
        the previous step; a drafter such as contrastive search's proposes from them.
        Rows with pending tokens hold no meaningful values (see ``root_valid``). None
        when no row has kept root logits.
    root_valid : list of bool or None
        Per row, whether ``root_logits`` holds the row's logits (the row has nothing
        pending). Rows with pending tokens get their root from this step's forward, so a
        drafter that needs root logits drafts only for the valid rows and pads the
        others (``-1`` nodes).
    budgets : list of int or None
        Per row, how many more tokens it may generate (1: this step commits its last
        token). Beam search uses it to end hypotheses at the token limit.
    row_state : dict of str to Tensor ``[rows]`` or None
        The per-row values the verifier returned in :attr:`Selection.row_state` (beam
        scores, group ids, Gumbel keys), kept by the loop aligned with the rows; None
        before a verifier returned any.
    would_stop : callable ``(row, tokens) -> str or None`` or None
        Whether committing ``tokens`` to ``row`` would end it, decided as the loop's stop
        step will: ``"stop"`` (EOS or a stop string), ``"length"`` (the token limit) or
        None; a constraint that completes is not foreseen. A verifier that chooses among
        candidate continuations (beam search) asks it for each, so a candidate that would
        end becomes a finished hypothesis at once, stop strings included.
    """

    sequences: list[list[int]]
    prompt_lengths: list[int]
    generators: list[torch.Generator]
    model: LanguageModel
    step: int
    row_ids: list[int]
    root_logits: torch.Tensor | None = None
    budgets: list[int] | None = None
    root_valid: list[bool] | None = None
    row_state: dict[str, torch.Tensor] | None = None
    would_stop: Callable[[int, Sequence[int]], str | None] | None = None


@dataclass
class StepOutput:
    """The target model's results for one step, after processing.

    Attributes
    ----------
    logits : FloatTensor ``[rows, 1 + N, V]``
        float32 logits after constraints and processors; index 0 is the distribution
        after the last committed token, index ``i + 1`` the one after draft node ``i``.
    hidden_states : FloatTensor ``[rows, 1 + N, H]`` or None
        The last layer's hidden states at the same positions, when a component asked
        for them (:attr:`Pipeline.needs_hidden_states`).
    raw_logits : FloatTensor ``[rows, 1 + N, V]``
        float32 logits as the model produced them, before constraints and processors.
    pending_hidden_states : FloatTensor ``[rows, P, H]`` or None
        Hidden states of every pending slot of the step (the prompt at the first step;
        left padding included), when hidden states were asked for.
    """

    logits: torch.Tensor
    hidden_states: torch.Tensor | None
    raw_logits: torch.Tensor
    pending_hidden_states: torch.Tensor | None = None


@dataclass
class Selection:
    """What a verifier commits for one step.

    Attributes
    ----------
    tokens : list of list of int
        Per row, the new committed tokens in order: accepted draft tokens, then usually
        one token sampled at the end (the correction or bonus token).
    kept_nodes : list of list of int
        Per row, the draft nodes whose cache entries stay: the accepted path, root side
        first. The first ``len(kept_nodes[r])`` tokens are those nodes' tokens. When
        ``tokens`` has no token beyond them, the row has nothing pending and the next
        step reuses the logits computed at the last kept node (contrastive search).
    accepted_draft : list of int
        Per row, how many draft tokens were accepted (``len(kept_nodes[r])``).
    row_sources : LongTensor ``[rows]`` or None
        For beam-style verifiers: row ``r`` of the new batch continues row
        ``row_sources[r]`` of the old one (cache, history and constraint state are
        reordered before the tokens are appended). ``None`` keeps rows in place.
    scores : FloatTensor ``[rows]`` or None
        Optional per-row scores (for example beam log-probabilities), reported with the
        results.
    finished : list of bool or None
        Rows the verifier declares complete for a reason of its own (finish reason
        ``"stop"``). A row that ends by EOS, a stop string or the token limit needs no
        flag: the loop's stop step finds it. Beam verifiers hand every finished
        hypothesis to the loop this way, as a new row whose last token ends it
        (:attr:`DecodeView.would_stop` tells them which candidates end): the loop stops
        it, checks its stop strings, keeps it with its ``row_state`` and passes it to
        :meth:`Verifier.finalize`.
    row_state : dict of str to Tensor ``[rows]`` or None
        Per-row values of the new rows that the loop keeps for the verifier: reordered,
        forked and dropped with the rows, handed back in :attr:`DecodeView.row_state`,
        and copied into :attr:`RowResult.state` when a row finishes. A verifier keeps
        per-row state this way instead of in itself, so it needs no ``select_rows``.
    next_inputs : list of (FloatTensor ``[H]`` or None) or None
        Per row, the input embedding the row's next forward reads in place of the
        embedding of its last new token (superposed decoding feeds the superposition of
        its drafts' last tokens); None everywhere: token embeddings. Only for models with
        ``accepts_input_embeddings``.
    """

    tokens: list[list[int]]
    kept_nodes: list[list[int]]
    accepted_draft: list[int]
    row_sources: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    finished: list[bool] | None = None
    row_state: dict[str, torch.Tensor] | None = None
    next_inputs: list[torch.Tensor | None] | None = None

    @classmethod
    def single(cls, tokens: Sequence[int]) -> Selection:
        """One new token per row, no draft."""
        return cls(
            tokens=[[int(t)] for t in tokens],
            kept_nodes=[[] for _ in tokens],
            accepted_draft=[0] * len(tokens),
        )


@dataclass
class RowResult:
    """One row's output so far.

    Attributes
    ----------
    prompt_index : int
        Which prompt of the call the row continues.
    prompt_ids : list of int
    token_ids : list of int
        Generated tokens (EOS included when it ended the row).
    finish_reason : str or None
        ``"stop"`` (EOS, a stop string, a completed constraint, or the verifier's
        decision) or ``"length"`` (token limit or context); None while running.
    stop_index : int or None
        Character offset where a stop string begins in the decoded text.
    forward_passes : int
        Forwards this row took part in.
    drafted_tokens, accepted_draft_tokens : int
        Draft nodes proposed for this row, and how many were accepted.
    score : float or None
        A score the verifier reported (beam strategies).
    state : dict of str to float
        The row's :attr:`Selection.row_state` values when it finished (empty for
        verifiers that keep none).
    """

    prompt_index: int
    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    stop_index: int | None = None
    forward_passes: int = 0
    drafted_tokens: int = 0
    accepted_draft_tokens: int = 0
    score: float | None = None
    state: dict[str, float] = field(default_factory=dict)


class Drafter(ABC):
    """Proposes a token tree per row each step.

    Subclasses set ``name`` and ``deterministic`` and implement :meth:`draft`. A
    deterministic drafter returns drafts with ``proposals=None``; a sampling drafter
    returns, for every node, the exact float32 distribution it sampled the node from.
    """

    name: ClassVar[str]
    #: Whether every draft this drafter makes has one-hot proposals.
    deterministic: ClassVar[bool] = True

    @abstractmethod
    def draft(self, view: DecodeView) -> DraftTree | None:
        """Propose a tree per row, or None for an ordinary one-token step."""

    def observe(  # noqa: B027
        self,
        view: DecodeView,
        draft: DraftTree | None,
        output: StepOutput,
        selection: Selection,
    ) -> None:
        """Learn from the step's outcome (adaptive lengths, adjacency tables). Optional.

        Called after the step is committed and before finished rows leave the batch:
        ``view.sequences`` already holds the committed tokens; ``output`` holds the target
        logits for the root and every node; rows are those of the step.
        """

    def select_rows(self, rows: torch.Tensor) -> None:  # noqa: B027
        """Keep (and reorder) per-row state: new row ``r`` is old row ``rows[r]``. Optional."""


class Verifier(ABC):
    """Decides what a step commits, from the processed target logits and the draft."""

    name: ClassVar[str]
    #: True only if committed tokens follow exactly the target distribution for any draft.
    lossless: ClassVar[bool] = False
    #: True if, under greedy settings, the tokens equal plain greedy decoding.
    greedy_equivalent: ClassVar[bool] = False
    #: False when the batch rows are search state rather than outputs: superposed
    #: decoding's row carries a superposition of ``k`` drafts and :meth:`finalize`
    #: reports the drafts. The loop then checks only the reported rows for stop strings,
    #: and constraints and logits processors, which read a row's tokens, are refused
    #: when the call is built.
    rows_are_outputs: ClassVar[bool] = True

    def __init__(self, options: Any = None, *, context: Any = None, warper: Any = None) -> None:
        """Keep the verifier protocol's arguments (:mod:`decodekit.verifying`).

        ``options`` (the class's validated ``Options``) and ``warper`` (the strategy's
        sampling settings, or None) become attributes; subclasses with settings of their
        own override this.
        """
        self.options = options
        self.warper = warper

    @abstractmethod
    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Choose the committed tokens for every row of this step."""

    def select_rows(self, rows: torch.Tensor) -> None:  # noqa: B027
        """Keep (and reorder) per-row state: new row ``r`` is old row ``rows[r]``. Optional."""

    def finalize(self, rows: list[RowResult]) -> list[RowResult]:
        """The results to report, given every finished row. Optional.

        The default reports each row. Strategies that keep their own hypotheses (beam
        search returns its best finished sequences, several per prompt) override it;
        each returned row's ``prompt_index`` says which prompt it answers.
        """
        return rows


class LogitsProcessor(ABC):
    """Maps logits ``[rows, nodes, V]`` to logits of the same shape.

    ``nodes`` is ``1 + N``: the root and every draft node. ``histories`` gives, per row
    and node, the tokens that precede that node (committed tokens plus the node's draft
    ancestors), so that history-dependent processors stay exact on draft trees.
    """

    name: ClassVar[str]
    #: True if the processor never changes which token has the largest logit.
    argmax_invariant: ClassVar[bool] = False

    @abstractmethod
    def __call__(
        self,
        logits: torch.Tensor,
        view: DecodeView,
        draft: DraftTree | None,
    ) -> torch.Tensor:
        """Return processed logits ``[rows, nodes, V]`` (may modify ``logits`` in place)."""

    def select_rows(self, rows: torch.Tensor) -> None:  # noqa: B027
        """Keep (and reorder) per-row state: new row ``r`` is old row ``rows[r]``. Optional."""


class CachePolicy(ABC):
    """Decides which KV-cache slots a row keeps after each step."""

    name: ClassVar[str]
    #: True if the policy never evicts anything (results equal the full cache's).
    exact: ClassVar[bool] = False

    @abstractmethod
    def evict(self, valid: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | None:
        """Return a bool mask ``[rows, S]`` of slots to evict, or None to keep all.

        Parameters
        ----------
        valid : BoolTensor ``[rows, S]``
            Which cache slots currently hold a committed token.
        positions : LongTensor ``[rows, S]``
            The sequence position of every slot (undefined where not valid).
        """


class CompiledConstraint(ABC):
    """A constraint compiled for one tokenizer; holds per-row matcher state."""

    @abstractmethod
    def start(self, rows: int) -> None:
        """Create matcher state for ``rows`` rows, each at the start of the output."""

    @abstractmethod
    def fill_bitmask(self, bitmask: torch.Tensor, draft: DraftTree | None) -> None:
        """Fill ``int32[rows, 1 + N, ceil(V/32)]``: allowed tokens at the root and each node.

        Bit ``j`` of word ``w`` allows token ``32 * w + j``. Nodes whose path is already
        invalid may be filled with any mask; they will not be accepted.
        """

    @abstractmethod
    def advance(self, row: int, tokens: Sequence[int]) -> None:
        """Consume committed tokens for one row."""

    def forced_tokens(self, row: int) -> list[int]:
        """Tokens the constraint allows as the only continuation of a row (fast-forward).

        The loop commits them without sampling and feeds them to the next forward as
        pending tokens, so they cost no forward of their own. Default: none.
        """
        return []

    @abstractmethod
    def is_finished(self, row: int) -> bool:
        """Whether the row's output is complete (the matcher accepts and allows only EOS)."""

    @abstractmethod
    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep, fork and reorder matcher state: new row ``r`` is old row ``rows[r]``."""


class ConstraintFactory(ABC):
    """Compiles one type of constraint (named by ``name``, e.g. ``"json_schema"``)."""

    name: ClassVar[str]

    @abstractmethod
    def compile(self, spec: dict[str, Any], tokenizer: Any) -> CompiledConstraint:
        """Compile ``spec`` for ``tokenizer``; raise ConstraintError naming what fails."""
