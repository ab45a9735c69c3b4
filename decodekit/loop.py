"""The decode loop: every strategy is a composition of these steps.

Read :func:`run` top to bottom: each step drafts a token tree per row (or not),
scores the pending tokens and the tree in one forward, applies constraints and logits
processors, lets the verifier choose what to commit, commits it to the KV cache and the
rows, and stops rows that are done. The functions below it are small and pure where
they can be; the state they share is :class:`DecodeState`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from decodekit.components import CompiledConstraint, DecodeView, DraftTree, Selection, StepOutput
from decodekit.model import KVCache, LanguageModel
from decodekit.strategy import Pipeline
from decodekit.tree import StepBatch, build_step

__all__ = ["DecodeState", "RowResult", "StepEvent", "StopChecker", "run", "start"]


@dataclass
class RowResult:
    """One row's output so far.

    Attributes
    ----------
    prompt_ids : list of int
    token_ids : list of int
        Generated tokens (EOS included when it ended the row).
    finish_reason : str or None
        ``"stop"`` (EOS or a stop string), ``"length"`` (token limit or context),
        ``"constraint"`` (the constraint completed), or None while running.
    stop_index : int or None
        Character offset where a stop string begins in the decoded text.
    forward_passes : int
        Forwards this row took part in.
    drafted_tokens, accepted_draft_tokens : int
        Draft nodes proposed for this row, and how many were accepted.
    score : float or None
        A score the verifier reported (beam strategies).
    """

    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    stop_index: int | None = None
    forward_passes: int = 0
    drafted_tokens: int = 0
    accepted_draft_tokens: int = 0
    score: float | None = None


@dataclass
class StepEvent:
    """What one step did: new tokens per row (by call row index) and finished rows."""

    new_tokens: dict[int, list[int]]
    finished: list[int]
    step: int


@dataclass
class DecodeState:
    """Mutable state of one decode call; rows leave it when they finish.

    Attributes
    ----------
    results : list of RowResult
        One per call row, in call order; never reordered.
    row_ids : list of int
        For every active row of the batch, its index in ``results``.
    sequences : list of list of int
        Per active row: prompt plus generated tokens.
    pending : list of list of int
        Per active row: committed tokens not yet in the KV cache.
    budgets : list of int
        Per active row: how many more tokens it may generate.
    generators : list of torch.Generator
        Per active row.
    """

    model: LanguageModel
    cache: KVCache
    results: list[RowResult]
    row_ids: list[int]
    sequences: list[list[int]]
    pending: list[list[int]]
    budgets: list[int]
    generators: list[torch.Generator]
    step: int = 0
    forward_passes: int = 0

    def view(self) -> DecodeView:
        """The read-only view components receive."""
        return DecodeView(
            sequences=self.sequences,
            prompt_lengths=[len(self.results[i].prompt_ids) for i in self.row_ids],
            generators=self.generators,
            model=self.model,
            step=self.step,
            row_ids=self.row_ids,
        )


def run(
    state: DecodeState,
    pipeline: Pipeline,
    *,
    constraint: CompiledConstraint | None = None,
    stop_checker: StopChecker | None = None,
) -> Iterator[StepEvent]:
    """Decode until every row has finished, yielding a :class:`StepEvent` per step.

    Parameters
    ----------
    state : DecodeState
        From :func:`start`; its ``results`` hold every row's tokens when the loop ends.
    pipeline : Pipeline
        The strategy's components.
    constraint : CompiledConstraint or None
        Matcher state, already started for the state's rows.
    stop_checker : StopChecker or None
        Finds stop strings in a row's text.
    """
    while state.row_ids:
        view = state.view()
        draft = propose(pipeline, view)  # 1. draft
        positions = state.cache.next_positions.tolist()
        step = build_step(state.pending, positions, draft, state.model.device)
        result = state.model.forward(  # 2. forward: pending tokens + tree, one pass
            step, state.cache, hidden_states=pipeline.needs_hidden_states
        )
        state.forward_passes += 1
        logits = result.logits
        if constraint is not None:  # 3. constrain
            logits = apply_constraint(constraint, logits.clone(), draft)
        processed = process(pipeline, logits, view, draft)  # 4. sample/process
        output = StepOutput(logits=processed, hidden_states=result.hidden_states,
                            raw_logits=result.logits)
        selection = pipeline.verifier.select(view, output, draft)  # 5. verify / select
        check_selection(selection, state, draft)
        appended = commit(state, step, selection, draft, pipeline, constraint)  # 6. cache + rows
        if pipeline.drafter is not None:
            pipeline.drafter.observe(view, draft, output, selection)
        if pipeline.cache_policy is not None:
            evict(state, pipeline)
        event = stop_rows(state, appended, constraint, stop_checker)  # 7. stop
        drop_finished(state, pipeline, constraint)
        state.step += 1
        yield event


def start(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    seeds: Sequence[int],
) -> DecodeState:
    """Initial state: every prompt pending, an empty cache, one generator per row."""
    generators = []
    for seed in seeds:
        generator = torch.Generator()
        generator.manual_seed(int(seed))
        generators.append(generator)
    budgets = [min(max_new_tokens, model.context_length - len(p)) for p in prompts]
    return DecodeState(
        model=model,
        cache=model.new_cache(len(prompts)),
        results=[RowResult(prompt_ids=list(p)) for p in prompts],
        row_ids=list(range(len(prompts))),
        sequences=[list(p) for p in prompts],
        pending=[list(p) for p in prompts],
        budgets=budgets,
        generators=generators,
    )


def propose(pipeline: Pipeline, view: DecodeView) -> DraftTree | None:
    """Step 1: the drafter's tree, or None for a plain one-token step."""
    if pipeline.drafter is None:
        return None
    draft = pipeline.drafter.draft(view)
    if draft is not None and draft.num_nodes == 0:
        return None
    return draft


def apply_constraint(
    constraint: CompiledConstraint, logits: torch.Tensor, draft: DraftTree | None
) -> torch.Tensor:
    """Step 3: mask tokens the constraint forbids at the root and at every node."""
    import decodekit_kernels as kernels

    rows, nodes, vocab = logits.shape
    words = (vocab + 31) // 32
    bitmask = torch.full((rows, nodes, words), -1, dtype=torch.int32)
    constraint.fill_bitmask(bitmask, draft)
    flat = logits.view(rows * nodes, vocab)
    # only the root row must allow a token; draft nodes off the grammar are simply rejected
    kernels.apply_token_bitmask(flat, bitmask.view(rows * nodes, words), check_nonempty=False)
    empty = torch.isinf(logits[:, 0]).all(-1)
    if bool(empty.any()):
        row = int(empty.nonzero()[0])
        from decodekit.errors import ConstraintError

        raise ConstraintError(f"row {row}: the constraint allows no token at this point")
    return logits


def process(
    pipeline: Pipeline, logits: torch.Tensor, view: DecodeView, draft: DraftTree | None
) -> torch.Tensor:
    """Step 4: logits processors in order (warpers apply inside the verifier)."""
    for processor in pipeline.processors:
        logits = processor(logits, view, draft)
    return logits


def check_selection(selection: Selection, state: DecodeState, draft: DraftTree | None) -> None:
    """Hold verifiers to the :class:`Selection` contract (cheap, catches plugin bugs)."""
    rows = len(state.row_ids)
    if len(selection.tokens) != rows or len(selection.kept_nodes) != rows:
        raise RuntimeError(
            f"verifier returned {len(selection.tokens)} rows of tokens for a batch of {rows}"
        )
    for r in range(rows):
        if len(selection.tokens[r]) != len(selection.kept_nodes[r]) + 1:
            raise RuntimeError(
                f"verifier row {r}: {len(selection.tokens[r])} tokens for "
                f"{len(selection.kept_nodes[r])} kept nodes; expected one more token than nodes"
            )
    if selection.row_sources is not None and any(selection.kept_nodes):
        raise RuntimeError("a verifier that reorders rows cannot also keep draft nodes")


def commit(
    state: DecodeState,
    step: StepBatch,
    selection: Selection,
    draft: DraftTree | None,
    pipeline: Pipeline,
    constraint: CompiledConstraint | None,
) -> list[list[int]]:
    """Step 6: keep the accepted path in the cache, reorder rows, append tokens.

    Returns, per row, the tokens appended (after the token limit, plus any tokens a
    constraint forces next, which become pending tokens of the next forward).
    """
    keep = step.slot_valid.clone()
    keep[:, step.num_pending :] = False
    for r, nodes in enumerate(selection.kept_nodes):
        for node in nodes:
            keep[r, step.num_pending + node] = True
    state.cache.commit(keep)
    if selection.row_sources is not None:
        reorder_rows(state, pipeline, constraint, selection.row_sources)
    appended: list[list[int]] = []
    for r, tokens in enumerate(selection.tokens):
        result = state.results[state.row_ids[r]]
        tokens = tokens[: state.budgets[r]]
        result.forward_passes += 1
        if draft is not None:
            result.drafted_tokens += int((draft.tokens[r] >= 0).sum()) if r < draft.rows else 0
            result.accepted_draft_tokens += min(selection.accepted_draft[r], len(tokens))
        if selection.scores is not None:
            result.score = float(selection.scores[r])
        pending = tokens[-1:]
        if constraint is not None and tokens:
            constraint.advance(r, tokens)
            if not state.model.eos_token_ids.intersection(tokens):
                forced = constraint.forced_tokens(r)[: state.budgets[r] - len(tokens)]
                if forced:
                    constraint.advance(r, forced)
                    tokens = tokens + forced
                    pending = pending + forced
        result.token_ids.extend(tokens)
        state.sequences[r].extend(tokens)
        state.budgets[r] -= len(tokens)
        state.pending[r] = pending
        appended.append(tokens)
    return appended


def evict(state: DecodeState, pipeline: Pipeline) -> None:
    """Let the cache policy drop slots (policies that are not exact change results)."""
    from decodekit.model import SlotCache

    assert pipeline.cache_policy is not None
    if not isinstance(state.cache, SlotCache):
        return
    cache = state.cache
    positions = cache.valid.long().cumsum(1) - 1
    drop = pipeline.cache_policy.evict(cache.valid, positions)
    if drop is not None and bool(drop.any()):
        cache.valid = cache.valid & ~drop


def stop_rows(
    state: DecodeState,
    appended: list[list[int]],
    constraint: CompiledConstraint | None,
    stop_checker: StopChecker | None,
) -> StepEvent:
    """Step 7: EOS, stop strings, token limit and constraint completion, per row."""
    eos = state.model.eos_token_ids
    new_tokens: dict[int, list[int]] = {}
    finished: list[int] = []
    for r, row_id in enumerate(state.row_ids):
        result = state.results[row_id]
        added = list(appended[r])
        new_tokens[row_id] = added
        reason = None
        eos_at = next((i for i, t in enumerate(added) if t in eos), None)
        if eos_at is not None:
            # drop anything committed after EOS in a multi-token step
            extra = len(added) - eos_at - 1
            if extra:
                del result.token_ids[-extra:]
                del added[-extra:]
            reason = "stop"
        elif stop_checker is not None and (index := stop_checker(result)) is not None:
            result.stop_index = index
            reason = "stop"
        elif constraint is not None and constraint.is_finished(r):
            reason = "stop"
        elif state.budgets[r] <= 0:
            reason = "length"
        if reason is not None:
            result.finish_reason = reason
            finished.append(row_id)
    return StepEvent(new_tokens=new_tokens, finished=finished, step=state.step)


def drop_finished(
    state: DecodeState, pipeline: Pipeline, constraint: CompiledConstraint | None
) -> None:
    """Remove finished rows from the batch so later forwards skip them."""
    results = state.results
    keep = [r for r, row_id in enumerate(state.row_ids) if results[row_id].finish_reason is None]
    if len(keep) == len(state.row_ids):
        return
    reorder_rows(state, pipeline, constraint, torch.tensor(keep, dtype=torch.long))


def reorder_rows(
    state: DecodeState,
    pipeline: Pipeline,
    constraint: CompiledConstraint | None,
    rows: torch.Tensor,
) -> None:
    """Keep, fork or reorder rows everywhere: new row ``r`` is old row ``rows[r]``."""
    index = rows.tolist()
    if index == list(range(len(state.row_ids))):
        return
    if rows.numel() > 0:
        state.cache.select_rows(rows)
    state.row_ids = [state.row_ids[i] for i in index]
    state.sequences = [list(state.sequences[i]) for i in index]
    state.pending = [list(state.pending[i]) for i in index]
    state.budgets = [state.budgets[i] for i in index]
    state.generators = [_clone_generator(state.generators[i]) if index.count(i) > 1
                        else state.generators[i] for i in index]
    for component in (pipeline.drafter, pipeline.verifier, *pipeline.processors):
        if component is not None:
            component.select_rows(rows)
    if constraint is not None:
        constraint.select_rows(rows)


def _clone_generator(generator: torch.Generator) -> torch.Generator:
    clone = torch.Generator()
    clone.set_state(generator.get_state())
    return clone


class StopChecker:
    """Finds stop strings in a row's decoded text.

    Parameters
    ----------
    model : LanguageModel
        Decodes token ids to text.
    stops : sequence of str
        The stop strings.
    """

    def __init__(self, model: LanguageModel, stops: Sequence[str]) -> None:
        self.model = model
        self.stops = [s for s in stops if s]

    def __call__(self, result: RowResult) -> int | None:
        """Character offset of the earliest stop string in the row's text, or None."""
        text = self.model.decode(result.token_ids)
        found = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        return min(found) if found else None
