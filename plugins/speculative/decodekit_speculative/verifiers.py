"""Lossless verifiers for chain and tree drafts, with randomness that is each row's own.

Both verifiers turn the processed target logits into the exact distribution the target
samples from (:meth:`decodekit.sampling.Warper.probs`, i.e. after processors and
warpers) and commit, per row, the longest acceptable path of the draft plus one token.

Randomness is per row and per generated token, so a row's output never depends on the
other rows of the batch: each row owns a :class:`TokenSeeds` stream, the ``k``-th kernel
seed drawn from the row's generator belonging to the row's ``k``-th generated token.

- **One-hot drafts** (deterministic drafters: ``proposals`` None) are verified by
  *coupling*: the target token after the root and after every node is drawn with
  :meth:`~decodekit.sampling.Warper.sample` and the seed of its position, and the row
  walks down the tree while a child holds the drawn token. For one-hot proposals this is
  exactly recursive rejection sampling's distribution (accepting a node with probability
  ``p(x)``, siblings against the residual), and more: the committed tokens are the tokens
  ``sample`` draws with the same seed, whatever the drafter proposed. So a drafter's
  state (a shared or persistent table, the draft length) changes speed, never tokens.
- **Sampled drafts** (``proposals`` given) go through the rejection-sampling kernels
  :func:`decodekit_kernels.verify_chain` / :func:`decodekit_kernels.verify_tree`; the
  acceptance uniforms are counter-based noise indexed by (row seed, node index), so a row
  draws the same randomness however many nodes the other rows of the batch have.

A row without draft nodes in a step with a draft commits exactly what a step without a
draft would (the same seed, the same :meth:`~decodekit.sampling.Warper.sample` call), so
whether the batch drafted at all cannot change a row either.
"""

from __future__ import annotations

from typing import Any, ClassVar

import decodekit_kernels as kernels
import torch
from pydantic import Field

from decodekit.config import KernelBackend, StrategyParams
from decodekit.contracts import DecodeView, DraftTree, Selection, StepOutput, Verifier
from decodekit.sampling import Warper
from decodekit.tree import follow_tree

__all__ = [
    "RejectionChainVerifier",
    "RejectionTreeVerifier",
    "TokenSeeds",
    "derive_seeds",
    "draw_node_uniforms",
]

def derive_seeds(seeds: torch.Tensor, salt: int) -> torch.Tensor:
    """Independent-looking int64 seeds ``[rows]`` derived from ``seeds`` and a ``salt``.

    Used where one row seed must feed two unrelated draws (acceptance uniforms and the
    final Gumbel draw), which must not share counter-based noise.
    """
    out = [kernels.derive_seed(int(s), salt) for s in seeds.tolist()]
    return torch.tensor(out, dtype=torch.long)


def draw_node_uniforms(seeds: torch.Tensor, nodes: int) -> torch.Tensor:
    """``nodes`` uniforms in (0, 1) per row: counter-based noise of (seed, node index).

    Parameters
    ----------
    seeds : LongTensor ``[rows]``
        One kernel seed per row.
    nodes : int
        Draft nodes per row (padding included).

    Returns
    -------
    FloatTensor ``[rows, nodes]``
        Node ``c`` of row ``r`` gets the same uniform whatever ``nodes`` is, so a row's
        acceptance tests do not depend on how wide the batch's padded draft is.
    """
    if nodes == 0:
        return torch.zeros((int(seeds.shape[0]), 0))
    counters = torch.arange(nodes, dtype=torch.long).unsqueeze(0)
    return kernels.uniforms(seeds.view(-1, 1), counters, torch.zeros_like(counters))


class TokenSeeds:
    """Per-row streams of kernel seeds, one per generated token, drawn from the row's generator.

    The ``k``-th seed a row's stream draws (with
    :func:`decodekit_kernels.seeds_from_generators`, one at a time) belongs to the row's
    ``k``-th generated token, whatever step commits it. Seeds are drawn lazily, as far
    ahead as a step needs (the depth of the row's draft), and dropped as tokens commit.
    With no other draws from the generator this is exactly the seed ``sample`` uses for
    the same token.
    """

    def __init__(self) -> None:
        self.rows: list[list[int]] = []

    def reset(self, rows: int) -> None:
        """Start ``rows`` empty streams (at the first step of a generation)."""
        self.rows = [[] for _ in range(rows)]

    def peek(self, generators: list[torch.Generator], counts: list[int]) -> torch.Tensor:
        """The next ``counts[r]`` seeds of every row, not consumed: LongTensor ``[rows, max]``.

        Entries past a row's count are 0.

        Raises
        ------
        RuntimeError
            The streams are not aligned with the rows (a missed ``select_rows``).
        """
        if len(self.rows) != len(generators):
            raise RuntimeError(
                f"TokenSeeds holds {len(self.rows)} rows for a batch of {len(generators)}; "
                "reset it at the first step and call select_rows when rows change"
            )
        width = max(counts, default=0)
        out: list[list[int]] = []
        for stream, generator, count in zip(self.rows, generators, counts, strict=True):
            while len(stream) < count:  # one draw at a time: the draws `sample` makes
                stream.append(int(kernels.seeds_from_generators([generator])[0]))
            out.append(stream[:count] + [0] * (width - count))
        return torch.tensor(out, dtype=torch.long).view(len(generators), width)

    def consume(self, generators: list[torch.Generator], counts: list[int]) -> None:
        """Drop the seeds of ``counts[r]`` committed tokens per row (drawing any not drawn)."""
        self.peek(generators, counts)
        for stream, count in zip(self.rows, counts, strict=True):
            del stream[:count]

    def select_rows(self, rows: torch.Tensor) -> None:
        """New row ``r`` is old row ``rows[r]`` (a forked row gets a copy of the stream)."""
        self.rows = [list(self.rows[i]) for i in rows.tolist()]


def _depths(draft: DraftTree) -> torch.Tensor:
    """Node depths ``[rows, N]``, 0 for padding nodes."""
    return draft.depths().masked_fill(draft.tokens < 0, 0)


class _RejectionVerifier(Verifier):
    """Shared by the chain and tree verifiers."""

    lossless = True
    greedy_equivalent = True
    #: The kernel op whose backend ``backend="auto"`` asks the build context for.
    kernel_op: ClassVar[str]

    class Options(StrategyParams):
        """Options of the rejection verifiers."""

        backend: KernelBackend = Field(
            "auto", description="Kernel backend of the verification kernel."
        )

    def __init__(
        self, options: Options | None = None, *, context: Any = None,
        warper: Warper | None = None,
    ) -> None:
        options = options if options is not None else self.Options()
        self.warper = warper or Warper()
        self.backend: str = options.backend
        if self.backend == "auto" and context is not None:
            self.backend = context.kernel_backend(self.kernel_op)
        self.seeds = TokenSeeds()

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep each remaining row's seed stream."""
        self.seeds.select_rows(rows)

    def _begin(self, view: DecodeView) -> None:
        """Fresh seed streams at the first step of every generation."""
        if view.step == 0:
            self.seeds.reset(len(view.generators))

    def _plain(self, view: DecodeView, output: StepOutput) -> Selection:
        """One token per row from the root, with the seed of the row's next token."""
        rows = len(view.generators)
        seeds = self.seeds.peek(view.generators, [1] * rows)[:, 0]
        tokens = self.warper.sample(output.logits[:, 0], seeds.to(output.logits.device))
        self.seeds.consume(view.generators, [1] * rows)
        return Selection.single(tokens.tolist())

    def _coupled(self, view: DecodeView, output: StepOutput, draft: DraftTree) -> Selection:
        """One-hot drafts: draw the target's token at every position, follow matching nodes."""
        logits = output.logits  # [rows, 1 + N, V]
        rows, positions, vocab = logits.shape
        depths = _depths(draft)
        deepest = depths.max(1).values.tolist() if draft.num_nodes else [0] * rows
        counts = [int(d) + 1 for d in deepest]  # seeds for the root and every depth
        seeds = self.seeds.peek(view.generators, counts)  # [rows, 1 + depth]
        # the token after a node at depth d is the row's (d + 1)-th token of this step
        at = torch.cat([torch.zeros((rows, 1), dtype=torch.long), depths], dim=1)
        position_seeds = seeds.gather(1, at).reshape(-1)
        # draw at the root and at real nodes only (padding nodes are never followed)
        real = torch.cat([torch.ones((rows, 1), dtype=torch.bool), draft.tokens >= 0], dim=1)
        index = real.reshape(-1).nonzero().squeeze(1)
        flat = logits.reshape(rows * positions, vocab)
        drawn = torch.full((rows * positions,), -1, dtype=torch.long)
        drawn[index] = self.warper.sample(
            flat.index_select(0, index.to(flat.device)),
            position_seeds[index].to(flat.device),
        ).cpu()
        selection = follow_tree(drawn.view(rows, positions).tolist(), draft.tokens.tolist(),
                                draft.parents.tolist())
        self.seeds.consume(view.generators, [len(t) for t in selection.tokens])
        return selection

    def _rejection(self, view: DecodeView, output: StepOutput, draft: DraftTree,
                   chain: bool) -> Selection:
        """Sampled drafts: the rejection-sampling kernel, per-row counter-based uniforms."""
        assert draft.proposals is not None
        rows = len(view.generators)
        device = output.logits.device
        seed = self.seeds.peek(view.generators, [1] * rows)[:, 0]
        target = self.warper.probs(output.logits)  # [rows, 1 + N, V]
        proposals = draft.proposals.to(device=device, dtype=torch.float32)
        # the final draw uses `seed` (counter = accepted count): the uniforms get their own
        uniforms = draw_node_uniforms(derive_seeds(seed, 1), draft.num_nodes).to(device)
        tokens = draft.tokens.to(device)
        token_lists = draft.tokens.tolist()
        if chain:
            accepted, next_token = kernels.verify_chain(
                target, proposals, tokens, uniforms, seed.to(device),
                backend=self.backend,  # type: ignore[arg-type]
            )
            paths = [list(range(n)) for n in accepted.tolist()]
        else:
            path, accepted, next_token = kernels.verify_tree(
                target, proposals, tokens, draft.parents.to(device), uniforms, seed.to(device),
                backend=self.backend,  # type: ignore[arg-type]
            )
            paths = [p[:n] for p, n in zip(path.tolist(), accepted.tolist(), strict=True)]
        next_tokens = next_token.tolist()
        empty = [r for r in range(rows) if not any(t >= 0 for t in token_lists[r])]
        if empty:  # no nodes: exactly what a step without a draft commits for the row
            index = torch.tensor(empty, device=device)
            plain = self.warper.sample(output.logits[index, 0], seed[empty].to(device))
            for r, token in zip(empty, plain.tolist(), strict=True):
                next_tokens[r] = token
        rows_tokens = [[token_lists[r][c] for c in paths[r]] + [next_tokens[r]]
                       for r in range(rows)]
        self.seeds.consume(view.generators, [len(t) for t in rows_tokens])
        return Selection(tokens=rows_tokens, kept_nodes=paths,
                         accepted_draft=[len(p) for p in paths])

    def _verify(self, view: DecodeView, output: StepOutput, draft: DraftTree,
                chain: bool) -> Selection:
        if draft.proposals is None or self.warper.is_greedy:
            return self._coupled(view, output, draft)
        return self._rejection(view, output, draft, chain)


class RejectionChainVerifier(_RejectionVerifier):
    """Speculative sampling of a chain draft (Leviathan et al. 2023; Chen et al. 2023).

    Accepts draft token ``x_i`` with probability ``min(1, p_i(x_i) / q_i(x_i))``; after a
    rejection the next token comes from ``norm(max(0, p_i - q_i))``, after a fully
    accepted draft from ``p_K`` (bonus token). Lossless for any drafter that reports its
    proposals exactly; exact match under greedy settings. One-hot drafts are verified by
    coupling (see the module docstring): the same distribution, and the tokens of
    ``sample`` for the same seed.

    Parameters
    ----------
    options : Options, optional
        ``backend``: the kernel backend of :func:`decodekit_kernels.verify_chain`.
    context : BuildContext, optional
        Chooses the backend when ``backend="auto"``.
    warper : Warper, optional
        The target's sampling settings.
    """

    name = "rejection_chain"
    kernel_op = "verify_chain"

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Commit the accepted prefix of each row's chain plus one new token."""
        self._begin(view)
        if draft is None:
            return self._plain(view, output)
        if not draft.is_chain():
            raise ValueError(
                "the rejection_chain verifier got a draft tree (a node whose parent is not "
                "the previous node); use verify='tree' for drafters that propose trees"
            )
        return self._verify(view, output, draft, chain=True)


class RejectionTreeVerifier(_RejectionVerifier):
    """Multi-draft recursive rejection sampling over a token tree (SpecInfer; RSD).

    At each node the children are tried in index order against the current residual;
    lossless whenever each node's proposal is the exact distribution its token was drawn
    from given its earlier siblings. Chains are verified too (a chain is a tree), with
    the cheaper chain kernel. One-hot drafts are verified by coupling (see the module
    docstring).

    Parameters
    ----------
    options : Options, optional
        ``backend``: the kernel backend of :func:`decodekit_kernels.verify_tree`.
    context : BuildContext, optional
        Chooses the backend when ``backend="auto"``.
    warper : Warper, optional
        The target's sampling settings.
    """

    name = "rejection_tree"
    kernel_op = "verify_tree"

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Commit each row's accepted path plus one new token."""
        self._begin(view)
        if draft is None:
            return self._plain(view, output)
        return self._verify(view, output, draft, chain=draft.is_chain())
