"""One step's model input: pending tokens plus a draft tree, with positions and attention.

Each step feeds the model, per row, the committed tokens that are not yet in the KV cache
(the *pending* tokens: the whole prompt at the first step, then the last committed token)
followed by the draft tree's nodes. Pending tokens are left-padded to a common width and
attend causally; a draft node attends to every pending token, its ancestors and itself,
at position ``next_position + pending - 1 + depth``. One forward scores them all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from decodekit.contracts import DecodeView, DraftTree, Selection, StepBatch

__all__ = [
    "StepBatch",
    "build_step",
    "follow_tree",
    "node_histories",
    "node_paths",
    "step_attention_mask",
]

#: Token id fed in padding slots; they are masked out, so any valid id works.
PAD_TOKEN = 0


def build_step(
    pending: Sequence[Sequence[int]],
    next_positions: Sequence[int],
    draft: DraftTree | None,
    device: torch.device | str = "cpu",
    pending_inputs: Sequence[torch.Tensor | None] | None = None,
) -> StepBatch:
    """Assemble one step's input.

    Parameters
    ----------
    pending : sequence of sequence of int
        Per row, the committed tokens not yet in the cache (may be empty when the row's
        last committed token is already cached; then a draft is required).
    next_positions : sequence of int
        Per row, the sequence position of its first pending token.
    draft : DraftTree or None
        The drafter's proposal, or None.
    device : torch.device or str
        Where to put the tensors.
    pending_inputs : sequence of (FloatTensor ``[H]`` or None), optional
        Per row, an input embedding for its last pending slot, read in place of that
        token's embedding (see :attr:`Selection.next_inputs`).

    Returns
    -------
    StepBatch
    """
    rows = len(pending)
    width_p = max(len(p) for p in pending)
    num_nodes = draft.num_nodes if draft is not None else 0
    if width_p + num_nodes == 0:
        raise ValueError("nothing to score: no row has pending tokens and there is no draft")
    tokens = torch.full((rows, width_p + num_nodes), PAD_TOKEN, dtype=torch.long)
    positions = torch.zeros((rows, width_p + num_nodes), dtype=torch.long)
    slot_valid = torch.zeros((rows, width_p + num_nodes), dtype=torch.bool)
    for r, row_tokens in enumerate(pending):
        count = len(row_tokens)
        start = width_p - count
        tokens[r, start:width_p] = torch.tensor(list(row_tokens), dtype=torch.long)
        positions[r, start:width_p] = torch.arange(
            next_positions[r], next_positions[r] + count, dtype=torch.long
        )
        slot_valid[r, start:width_p] = True
    padded = bool((~slot_valid[:, :width_p]).any())
    ancestors = None
    if draft is not None and num_nodes > 0:
        node_valid = draft.tokens >= 0
        tokens[:, width_p:] = torch.where(node_valid, draft.tokens, PAD_TOKEN)
        last = torch.tensor([next_positions[r] + len(pending[r]) - 1 for r in range(rows)])
        positions[:, width_p:] = torch.where(
            node_valid, last.unsqueeze(1) + draft.depths(), torch.zeros_like(draft.tokens)
        )
        slot_valid[:, width_p:] = node_valid
        if padded or not draft.is_chain() or not bool(node_valid.all()):
            ancestors = _tree_ancestors(slot_valid, width_p, draft)
    elif padded:
        ancestors = _tree_ancestors(slot_valid, width_p, None)
    input_embeds, embedded = _pending_embeddings(pending, pending_inputs, width_p + num_nodes,
                                                 width_p, device)
    return StepBatch(
        tokens=tokens.to(device),
        positions=positions.to(device),
        slot_valid=slot_valid.to(device),
        ancestors=None if ancestors is None else ancestors.to(device),
        num_pending=width_p,
        num_nodes=num_nodes,
        input_embeds=input_embeds,
        embedded=embedded,
    )


def _pending_embeddings(
    pending: Sequence[Sequence[int]],
    inputs: Sequence[torch.Tensor | None] | None,
    width: int,
    width_p: int,
    device: torch.device | str,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``input_embeds [rows, width, H]`` and ``embedded [rows, width]``, or two Nones."""
    given = [] if inputs is None else [(r, v) for r, v in enumerate(inputs) if v is not None]
    if not given:
        return None, None
    hidden = given[0][1].shape[-1]
    embeds = torch.zeros((len(pending), width, hidden), dtype=torch.float32, device=device)
    embedded = torch.zeros((len(pending), width), dtype=torch.bool, device=device)
    for r, vector in given:
        if not pending[r]:
            raise ValueError(f"row {r}: an input embedding needs a pending slot to replace")
        embeds[r, width_p - 1] = vector.to(device=device, dtype=torch.float32)
        embedded[r, width_p - 1] = True
    return embeds, embedded


def _tree_ancestors(
    slot_valid: torch.Tensor, width_p: int, draft: DraftTree | None
) -> torch.Tensor:
    """``[rows, P+N, P+N]`` attention among this step's slots (see :class:`StepBatch`)."""
    rows, width = slot_valid.shape
    causal = torch.ones(width_p, width_p, dtype=torch.bool).tril()
    anc = torch.zeros(rows, width, width, dtype=torch.bool)
    pending_valid = slot_valid[:, :width_p]
    anc[:, :width_p, :width_p] = causal & pending_valid.unsqueeze(1)
    if draft is not None:
        anc[:, width_p:, :width_p] = pending_valid.unsqueeze(1)
        anc[:, width_p:, width_p:] = draft.ancestors()
    # a padding slot attends to itself only, so no query row is fully masked (NaN-free)
    eye = torch.eye(width, dtype=torch.bool).unsqueeze(0)
    invalid = ~slot_valid
    anc = torch.where(invalid.unsqueeze(2), eye, anc & slot_valid.unsqueeze(1))
    return anc


def step_attention_mask(cache_valid: torch.Tensor, step: StepBatch) -> torch.Tensor:
    """The full attention mask of a step: ``BoolTensor[rows, 1, P+N, S+P+N]``.

    Parameters
    ----------
    cache_valid : BoolTensor ``[rows, S]``
        Which cache slots hold committed tokens.
    step : StepBatch
        The step's input.

    Returns
    -------
    BoolTensor ``[rows, 1, P+N, S+P+N]``
        True where a query slot (dim 2) may attend to a key slot (dim 3). Padding query
        slots attend only to themselves.
    """
    rows, width = step.rows, step.width
    ancestors = step.ancestors
    if ancestors is None:
        ancestors = (
            torch.ones(width, width, dtype=torch.bool, device=step.tokens.device)
            .tril()
            .expand(rows, width, width)
        )
    cache_part = cache_valid.unsqueeze(1) & step.slot_valid.unsqueeze(2)
    mask = torch.cat([cache_part.expand(rows, width, cache_valid.shape[1]), ancestors], dim=2)
    return mask.unsqueeze(1)


def node_histories(
    view: DecodeView, draft: DraftTree | None
) -> tuple[list[list[int]], list[int]]:
    """Per row and node, the tokens before that node; and each history's prompt length.

    Returns lists of length ``rows * (1 + N)`` in row-major order: the root's history is
    the row's sequence; node ``i``'s is the sequence plus its path (:func:`node_paths`).
    """
    rows = len(view.sequences)
    paths = node_paths(draft, rows)
    per_row = len(paths) // max(rows, 1)
    histories = [view.sequences[i // per_row] + path for i, path in enumerate(paths)]
    prompt_lengths = [view.prompt_lengths[i // per_row] for i in range(len(paths))]
    return histories, prompt_lengths


def node_paths(draft: DraftTree | None, rows: int) -> list[list[int]]:
    """Per row and position (the root, then each draft node), the draft tokens up to it.

    Returns a list of length ``rows * (1 + N)`` in row-major order: the root's path is
    empty, node ``i``'s is its draft ancestors' tokens then its own (a padding node's
    ``-1`` reads as token 0). A node's history is the row's sequence followed by its path.
    """
    if draft is None or draft.num_nodes == 0:
        return [[] for _ in range(rows)]
    tokens, parents = draft.tokens.tolist(), draft.parents.tolist()
    out: list[list[int]] = []
    for r in range(rows):
        paths: list[list[int]] = []
        for i, parent in enumerate(parents[r]):
            paths.append([*(paths[parent] if parent >= 0 else []), max(tokens[r][i], 0)])
        out.append([])
        out.extend(paths)
    return out


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
