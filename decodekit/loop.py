"""The decode loop: every strategy is a composition of these steps.

Read :func:`run` and :func:`decode_step` top to bottom: each step drafts a token tree
per row (or not), scores the pending tokens and the tree in one forward, applies
constraints and logits processors, lets the verifier choose what to commit and commits it
to the KV cache and the rows (:func:`decode_step`); then :func:`run` stops rows that are
done. Drafters that run a model drive a state of their own with :func:`decode_step`
(:class:`decodekit.substate.SubState`). The functions below are small; the state they
share is :class:`DecodeState`.

A row's *pending* tokens are committed tokens not yet in the KV cache: the prompt at the
first step, then usually the last committed token. A verifier may also commit only draft
nodes whose cache entries it keeps (contrastive search does): then nothing is pending and
the next step reuses the logits computed at the last kept node, with no forward for it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch

from decodekit.contracts import (
    CompiledConstraint,
    DecodeView,
    DraftTree,
    ForwardResult,
    KVCache,
    LanguageModel,
    RowResult,
    Selection,
    StepBatch,
    StepOutput,
)
from decodekit.detokenize import IncrementalText
from decodekit.errors import PluginContractError
from decodekit.strategy import Pipeline
from decodekit.tree import build_step

__all__ = [
    "DecodeState",
    "RowResult",
    "StepEvent",
    "StopChecker",
    "check_draft",
    "check_selection",
    "run",
    "start",
]


@dataclass
class StepEvent:
    """What one step did.

    Attributes
    ----------
    appended : list of (RowResult, list of int)
        Every active row of the step and the tokens it gained.
    step : int
    texts : list of IncrementalText
        Per entry of ``appended``: the row's text so far, decoded incrementally (brought
        up to date for stop strings; :meth:`IncrementalText.update` does the rest).
    """

    appended: list[tuple[RowResult, list[int]]]
    step: int
    texts: list[IncrementalText] = field(default_factory=list)


@dataclass
class DecodeState:
    """Mutable state of one decode call; rows leave the batch when they finish.

    Attributes
    ----------
    rows : list of RowResult
        The active rows, in batch order.
    done : list of RowResult
        Finished rows, in the order they finished.
    sequences : list of list of int
        Per active row: prompt plus generated tokens.
    pending : list of list of int
        Per active row: committed tokens not yet in the KV cache (may be empty).
    pending_inputs : list of (FloatTensor ``[H]`` or None)
        Per active row: an input embedding the next forward reads in place of the last
        pending token's (from :attr:`Selection.next_inputs`), or None.
    row_state : dict of str to Tensor ``[rows]``
        The verifier's per-row values (:attr:`Selection.row_state`), aligned with rows.
    budgets : list of int
        Per active row: how many more tokens it may generate.
    generators : list of torch.Generator
        Per active row.
    root_logits : FloatTensor ``[rows, V]`` or None
        Raw logits after each row's last committed token, kept for rows with nothing
        pending (the token's forward already happened as a draft node).
    root_hidden : FloatTensor ``[rows, H]`` or None
        The matching last-layer hidden states, when hidden states are requested.
    stop_checker : StopChecker or None
        Finds stop strings in a row's text; set by :func:`run` (a drafter's sub-state,
        whose rows never stop, has none).
    texts : list of IncrementalText
        Per active row: its generated text, decoded a window at a time (stop strings and
        streaming read it; nothing decodes a whole row each step).
    """

    model: LanguageModel
    cache: KVCache
    rows: list[RowResult]
    sequences: list[list[int]]
    pending: list[list[int]]
    budgets: list[int]
    generators: list[torch.Generator]
    done: list[RowResult] = field(default_factory=list)
    pending_inputs: list[torch.Tensor | None] = field(default_factory=list)
    row_state: dict[str, torch.Tensor] = field(default_factory=dict)
    root_logits: torch.Tensor | None = None
    root_hidden: torch.Tensor | None = None
    stop_checker: StopChecker | None = None
    texts: list[IncrementalText] = field(default_factory=list)
    step: int = 0
    forward_passes: int = 0

    def view(self) -> DecodeView:
        """The read-only view components receive."""
        return DecodeView(
            sequences=self.sequences,
            prompt_lengths=[len(row.prompt_ids) for row in self.rows],
            generators=self.generators,
            model=self.model,
            step=self.step,
            row_ids=[row.prompt_index for row in self.rows],
            root_logits=self.root_logits if not all(self.pending) else None,
            budgets=self.budgets,
            root_valid=[not pending for pending in self.pending],
            row_state=self.row_state or None,
            would_stop=partial(would_stop, self),
        )


def would_stop(state: DecodeState, row: int, tokens: Sequence[int]) -> str | None:
    """Why committing ``tokens`` to ``row`` would end it, as step 7 will decide.

    ``"stop"`` for EOS or a stop string in the row's text, ``"length"`` when the row's
    budget runs out, None otherwise. A constraint that completes is not foreseen: the
    loop ends that row after the commit. Beam verifiers ask it for every candidate, so a
    hypothesis ends on a stop string the moment it forms (as transformers' stopping
    criteria end candidates).
    """
    if state.model.eos_token_ids.intersection(tokens):
        return "stop"
    checker = state.stop_checker
    if checker is not None and checker.find_after(
        state.texts[row], state.rows[row].token_ids, tokens
    ) is not None:
        return "stop"
    if state.budgets[row] <= len(tokens):
        return "length"
    return None


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
        From :func:`start`; ``state.done`` holds every row when the loop ends.
    pipeline : Pipeline
        The strategy's components.
    constraint : CompiledConstraint or None
        Matcher state, already started for the state's rows.
    stop_checker : StopChecker or None
        Finds stop strings in a row's text.
    """
    if not pipeline.verifier.rows_are_outputs:
        stop_checker = None  # the rows are search state; the reported rows are checked
    state.stop_checker = stop_checker
    while state.rows:
        selection, appended = decode_step(state, pipeline, constraint)  # 1.-6.
        event = stop_rows(state, appended, selection, constraint)  # 7. stop
        drop_finished(state, pipeline, constraint)
        state.step += 1
        yield event


def decode_step(
    state: DecodeState, pipeline: Pipeline, constraint: CompiledConstraint | None = None
) -> tuple[Selection, list[list[int]]]:
    """One decode step, steps 1 to 6: draft, forward, constrain, process, select, commit.

    The loop (:func:`run`) follows it with step 7, stopping rows; a drafter that runs a
    model of its own drives its sub-state with this same function
    (:class:`decodekit.substate.SubState`), whose rows never stop.

    Returns
    -------
    (Selection, list of list of int)
        What the verifier selected, and per row the tokens appended.
    """
    view = state.view()
    draft = propose(pipeline, view)  # 1. draft
    positions = state.cache.next_positions.tolist()
    step = build_step(state.pending, positions, draft, state.model.device,
                      pending_inputs=state.pending_inputs)
    result = state.model.forward(  # 2. forward: pending tokens + tree, one pass
        step, state.cache, hidden_states=pipeline.needs_hidden_states
    )
    state.forward_passes += 1
    output = step_output(state, step, result)
    logits = output.raw_logits
    if constraint is not None or pipeline.processors:
        logits = logits.clone()  # processors may work in place; raw logits stay raw
    if constraint is not None:  # 3. constrain
        logits = apply_constraint(constraint, logits, draft)
    output.logits = process(pipeline, logits, view, draft)  # 4. sample/process
    selection = pipeline.verifier.select(view, output, draft)  # 5. verify / select
    check_selection(selection, state, pipeline)
    appended = commit(state, step, selection, draft, output, pipeline, constraint)  # 6.
    if pipeline.drafter is not None:
        pipeline.drafter.observe(view, draft, output, selection)
    if pipeline.cache_policy is not None and not pipeline.cache_policy.exact:
        evict(state, pipeline)
    return selection, appended


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
        rows=[RowResult(prompt_index=i, prompt_ids=list(p)) for i, p in enumerate(prompts)],
        sequences=[list(p) for p in prompts],
        pending=[list(p) for p in prompts],
        budgets=budgets,
        generators=generators,
        texts=[IncrementalText(model.decode) for _ in prompts],
    )


def propose(pipeline: Pipeline, view: DecodeView) -> DraftTree | None:
    """Step 1: the drafter's tree, or None for a plain one-token step."""
    if pipeline.drafter is None:
        return None
    draft = pipeline.drafter.draft(view)
    if draft is not None:
        check_draft(draft, view, pipeline)
        if draft.num_nodes == 0:
            return None
    return draft


def _contract_error(pipeline: Pipeline, family: str, component: object, problem: str) -> Exception:
    """A :class:`PluginContractError` naming the plugin that registered ``component``.

    Looked up only when a check fails, so the checks themselves stay cheap. A component
    no plugin registered (a strategy's own helper class) is blamed on the strategy's plugin.
    """
    from decodekit.plugins import get_registry

    name = getattr(component, "name", None) or type(component).__name__
    plugin = get_registry().plugin_of(f"{family}s", component) or pipeline.plugin
    return PluginContractError(plugin, family, str(name), problem)


def check_draft(draft: object, view: DecodeView, pipeline: Pipeline) -> None:
    """Hold drafters to the :class:`DraftTree` contract: type, rows, vocabulary range.

    One reduction over the tokens (``aminmax``) keeps this cheap; without it, a bad
    token surfaces as an IndexError inside the model's embedding.
    """

    def fail(problem: str) -> Exception:
        return _contract_error(pipeline, "drafter", pipeline.drafter, problem)

    if not isinstance(draft, DraftTree):
        raise fail(f"returned a {type(draft).__name__}, expected a DraftTree or None")
    if draft.num_nodes == 0:  # an empty draft means a plain step, whatever its rows
        return
    rows = len(view.sequences)
    if draft.rows != rows:
        raise fail(f"returned {draft.rows} rows for a batch of {rows}")
    if draft.tokens.dtype.is_floating_point or draft.tokens.dtype == torch.bool:
        raise fail(f"returned {draft.tokens.dtype} tokens, expected integer token ids")
    vocab = view.model.vocab_size
    low, high = (int(v) for v in torch.aminmax(draft.tokens))
    if low < -1 or high >= vocab:
        bad = low if low < -1 else high
        raise fail(f"proposed token {bad}, outside the vocabulary 0..{vocab - 1} (-1 pads)")
    if draft.proposals is not None and draft.proposals.shape[-1] != vocab:
        raise fail(
            f"returned proposals over {draft.proposals.shape[-1]} tokens for a vocabulary "
            f"of {vocab}"
        )


def step_output(state: DecodeState, step: StepBatch, result: ForwardResult) -> StepOutput:
    """Logits and hidden states at the root and every node, ``[rows, 1 + N, ...]``.

    The root is the last pending token; a row with nothing pending takes its root from
    the logits kept at the end of the previous step.
    """
    logits, hidden = result.logits, result.hidden_states
    pending_hidden = None
    if hidden is not None:
        pending_hidden = hidden[:, : step.num_pending]
        hidden = hidden[:, max(step.num_pending - 1, 0) :]
    if step.num_pending == 0:
        logits = torch.cat([_root(state.root_logits, "logits"), logits], dim=1)
        if hidden is not None:
            hidden = torch.cat([_root(state.root_hidden, "hidden states"), hidden], dim=1)
    elif not all(state.pending):
        # out of place: the forward's outputs may be inference tensors
        kept = torch.tensor([not p for p in state.pending], device=logits.device).view(-1, 1, 1)
        logits = _with_root(logits, _root(state.root_logits, "logits"), kept)
        if hidden is not None:
            hidden = _with_root(hidden, _root(state.root_hidden, "hidden states"), kept)
    return StepOutput(
        logits=logits, hidden_states=hidden, raw_logits=logits, pending_hidden_states=pending_hidden
    )


def _with_root(values: torch.Tensor, root: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """``values [rows, 1 + N, ...]`` with index 0 taken from ``root`` where ``kept``."""
    first = torch.where(kept, root.to(values.device), values[:, :1])
    return torch.cat([first, values[:, 1:]], dim=1)


def _root(kept: torch.Tensor | None, what: str) -> torch.Tensor:
    if kept is None:
        raise RuntimeError(f"a row has nothing pending but no kept root {what} (verifier bug)")
    return kept.unsqueeze(1)


def apply_constraint(
    constraint: CompiledConstraint, logits: torch.Tensor, draft: DraftTree | None
) -> torch.Tensor:
    """Step 3: mask tokens the constraint forbids at the root and at every node."""
    import decodekit_kernels as kernels

    rows, nodes, vocab = logits.shape
    words = (vocab + 31) // 32
    # matchers write host memory; the mask moves to the logits' device once per step
    bitmask = torch.full((rows, nodes, words), -1, dtype=torch.int32)
    constraint.fill_bitmask(bitmask, draft)
    bitmask = bitmask.to(logits.device)
    flat = logits.view(rows * nodes, vocab)
    # only the root must allow a token; draft nodes off the grammar are simply rejected
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
        shape = logits.shape
        logits = processor(logits, view, draft)
        if not isinstance(logits, torch.Tensor) or logits.shape != shape:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise _contract_error(
                pipeline, "sampler", processor, f"returned {got}, expected logits {tuple(shape)}"
            )
    return logits


def check_selection(selection: object, state: DecodeState, pipeline: Pipeline) -> None:
    """Hold verifiers to the :class:`Selection` contract (cheap, catches plugin bugs)."""

    def fail(problem: str) -> Exception:
        return _contract_error(pipeline, "verifier", pipeline.verifier, problem)

    if not isinstance(selection, Selection):
        raise fail(f"select returned a {type(selection).__name__}, expected a Selection")
    sources = _row_sources(selection, len(state.rows), fail)
    for what in ("tokens", "kept_nodes", "accepted_draft"):
        if len(getattr(selection, what)) != len(sources):
            raise fail(
                f"returned {len(getattr(selection, what))} rows of {what} for a batch of "
                f"{len(sources)}"
            )
    vocab = state.model.vocab_size
    for r, source in enumerate(sources):
        tokens, kept = selection.tokens[r], len(selection.kept_nodes[r])
        if len(tokens) not in (kept, kept + 1):
            raise fail(
                f"row {r}: {len(tokens)} tokens for {kept} kept nodes; expected the kept "
                "nodes' tokens, optionally followed by one new token"
            )
        if tokens and not (min(tokens) >= 0 and max(tokens) < vocab):
            raise fail(f"row {r}: committed tokens {tokens} outside the vocabulary 0..{vocab - 1}")
        if not tokens and not state.pending[source]:
            raise fail(f"row {r}: nothing committed and nothing pending")
    if selection.row_sources is not None and any(selection.kept_nodes):
        raise fail("reorders rows and keeps draft nodes; a verifier may do one or the other")
    for key, values in (selection.row_state or {}).items():
        if not isinstance(values, torch.Tensor) or values.shape[:1] != (len(sources),):
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values)
            raise fail(f"row_state[{key!r}] is {got}, expected a tensor of {len(sources)} rows")
    if selection.next_inputs is not None:
        if len(selection.next_inputs) != len(sources):
            raise fail(f"returned {len(selection.next_inputs)} next_inputs for {len(sources)} rows")
        if not state.model.accepts_input_embeddings and any(
            v is not None for v in selection.next_inputs
        ):
            raise fail(f"returned next_inputs, but {type(state.model).__name__} does not take "
                       "input embeddings")


def _row_sources(selection: Selection, rows: int, fail: Callable[[str], Exception]) -> list[int]:
    """The old row of every new row (``row_sources``, or rows in place)."""
    if selection.row_sources is None:
        return list(range(rows))
    if not isinstance(selection.row_sources, torch.Tensor):
        kind = type(selection.row_sources).__name__
        raise fail(f"returned row_sources as a {kind}, expected a LongTensor or None")
    # with row_sources, tokens are per new row: a beam verifier may fork or drop rows
    sources = selection.row_sources.tolist()
    if any(not 0 <= s < rows for s in sources):
        raise fail(f"row_sources {sources} name rows outside 0..{rows - 1}")
    return sources


def commit(
    state: DecodeState,
    step: StepBatch,
    selection: Selection,
    draft: DraftTree | None,
    output: StepOutput,
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
    keep_root_for_next_step(state, selection, output)
    if selection.row_state is not None:
        state.row_state = {}  # replaced below: the values are the new rows' already
    if selection.row_sources is not None:
        reorder_rows(state, pipeline, constraint, selection.row_sources)
    if selection.row_state is not None:
        state.row_state = {k: v.to(state.model.device) for k, v in selection.row_state.items()}
    appended: list[list[int]] = []
    for r, tokens in enumerate(selection.tokens):
        row = state.rows[r]
        cached_only = len(tokens) == len(selection.kept_nodes[r])
        tokens = tokens[: state.budgets[r]]
        row.forward_passes += 1
        if draft is not None and selection.row_sources is None:
            row.drafted_tokens += int((draft.tokens[r] >= 0).sum())
            row.accepted_draft_tokens += min(selection.accepted_draft[r], len(tokens))
        if selection.scores is not None:
            row.score = float(selection.scores[r])
        pending = [] if cached_only else tokens[-1:]
        if constraint is not None and tokens:
            constraint.advance(r, tokens)
            if not state.model.eos_token_ids.intersection(tokens):
                forced = constraint.forced_tokens(r)[: state.budgets[r] - len(tokens)]
                if forced:
                    constraint.advance(r, forced)
                    tokens = tokens + forced
                    pending = pending + forced
        row.token_ids.extend(tokens)
        state.sequences[r].extend(tokens)
        state.budgets[r] -= len(tokens)
        state.pending[r] = pending
        appended.append(tokens)
    state.pending_inputs = (
        list(selection.next_inputs) if selection.next_inputs is not None else []
    )
    return appended


def keep_root_for_next_step(state: DecodeState, selection: Selection, output: StepOutput) -> None:
    """Remember the logits after each row's last committed token, if it is cached.

    When a verifier commits only kept nodes (or nothing), the last committed token's
    forward already happened: its logits become the next step's root.
    """
    index = []
    for tokens, kept in zip(selection.tokens, selection.kept_nodes, strict=True):
        index.append(1 + kept[-1] if len(tokens) == len(kept) and kept else 0)
    if all(len(t) == len(k) + 1 for t, k in zip(selection.tokens, selection.kept_nodes,
                                                 strict=True)):
        state.root_logits = state.root_hidden = None
        return
    rows = torch.arange(len(index), device=output.raw_logits.device)
    at = torch.tensor(index, device=output.raw_logits.device)
    state.root_logits = output.raw_logits[rows, at]
    if output.hidden_states is not None:
        state.root_hidden = output.hidden_states[rows, at]


def evict(state: DecodeState, pipeline: Pipeline) -> None:
    """Let the cache policy drop slots (policies that are not exact change results)."""
    from decodekit.model import SlotCache

    assert pipeline.cache_policy is not None
    if not isinstance(state.cache, SlotCache):
        return
    cache = state.cache
    positions = cache.valid.long().cumsum(1) - 1
    drop = pipeline.cache_policy.evict(cache.valid, positions)
    if drop is not None and (not isinstance(drop, torch.Tensor) or drop.shape != cache.valid.shape):
        got = tuple(drop.shape) if isinstance(drop, torch.Tensor) else type(drop).__name__
        raise _contract_error(
            pipeline, "cache", pipeline.cache_policy,
            f"evict returned {got}, expected None or a bool mask {tuple(cache.valid.shape)}",
        )
    if drop is not None and bool(drop.any()):
        cache.valid = cache.valid & ~drop


def stop_rows(
    state: DecodeState,
    appended: list[list[int]],
    selection: Selection,
    constraint: CompiledConstraint | None,
) -> StepEvent:
    """Step 7: EOS, stop strings, token limit, constraint and verifier decisions, per row.

    The order of the tests is :func:`would_stop`'s: EOS, then a stop string, then (a
    completed constraint aside) the token limit; a verifier's own decision
    (:attr:`Selection.finished`) comes last.
    """
    eos = state.model.eos_token_ids
    stop_checker = state.stop_checker
    event: list[tuple[RowResult, list[int]]] = []
    for r, row in enumerate(state.rows):
        added = list(appended[r])
        event.append((row, added))
        reason = None
        eos_at = next((i for i, t in enumerate(added) if t in eos), None)
        if eos_at is not None:
            # drop anything committed after EOS in a multi-token step
            extra = len(added) - eos_at - 1
            if extra:
                del row.token_ids[-extra:]
                del added[-extra:]
            reason = "stop"
            if stop_checker is not None:  # a stop string before EOS in the same step cuts
                row.stop_index = stop_checker.find_new(state.texts[r], row.token_ids)
        elif stop_checker is not None and (
            index := stop_checker.find_new(state.texts[r], row.token_ids)
        ) is not None:
            row.stop_index = index
            reason = "stop"
        elif constraint is not None and constraint.is_finished(r):
            reason = "stop"
        elif state.budgets[r] <= 0:
            reason = "length"
        elif selection.finished is not None and selection.finished[r]:
            reason = "stop"
        row.finish_reason = reason
    return StepEvent(appended=event, step=state.step, texts=list(state.texts))


def drop_finished(
    state: DecodeState, pipeline: Pipeline, constraint: CompiledConstraint | None
) -> None:
    """Move finished rows out of the batch so later forwards skip them."""
    keep = [r for r, row in enumerate(state.rows) if row.finish_reason is None]
    if len(keep) == len(state.rows):
        return
    for r, row in enumerate(state.rows):
        if row.finish_reason is not None and state.row_state:
            row.state = {k: float(v[r]) for k, v in state.row_state.items()}
    state.done.extend(row for row in state.rows if row.finish_reason is not None)
    reorder_rows(state, pipeline, constraint, torch.tensor(keep, dtype=torch.long))


def reorder_rows(
    state: DecodeState,
    pipeline: Pipeline,
    constraint: CompiledConstraint | None,
    rows: torch.Tensor,
) -> None:
    """Keep, fork or reorder rows everywhere: new row ``r`` is old row ``rows[r]``.

    ``rows`` may come from a verifier on any device; the cache and every component get
    it on the model's device.
    """
    rows = rows.to(state.model.device)
    index = rows.tolist()
    if index == list(range(len(state.rows))):
        return
    forked = len(set(index)) < len(index)
    if rows.numel() > 0:
        state.cache.select_rows(rows)
    state.rows = [copy.deepcopy(state.rows[i]) if forked else state.rows[i] for i in index]
    state.sequences = [list(state.sequences[i]) for i in index]
    state.pending = [list(state.pending[i]) for i in index]
    if state.pending_inputs:
        state.pending_inputs = [state.pending_inputs[i] for i in index]
    state.budgets = [state.budgets[i] for i in index]
    state.texts = [state.texts[i].copy() if forked else state.texts[i] for i in index]
    state.generators = [_clone_generator(state.generators[i]) if forked
                        else state.generators[i] for i in index]
    if state.root_logits is not None:
        state.root_logits = state.root_logits.index_select(0, rows)
    if state.root_hidden is not None:
        state.root_hidden = state.root_hidden.index_select(0, rows)
    state.row_state = {k: v.index_select(0, rows) for k, v in state.row_state.items()}
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

    During decoding it reads each row's :class:`~decodekit.detokenize.IncrementalText`
    and searches only the text added since the last step (plus the longest stop
    string's length minus one before it), so a step's cost does not grow with the row. A match is
    confirmed with one full decode of the row, which also gives its exact offset.

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
        self._overlap = max((len(s) for s in self.stops), default=1) - 1

    def __call__(self, result: RowResult) -> int | None:
        """Character offset of the earliest stop string in the row's text, or None."""
        return self.find(result.token_ids)

    def find(self, token_ids: Sequence[int]) -> int | None:
        """Character offset of the earliest stop string in the text of ``token_ids``, or None."""
        return self._earliest(self.model.decode(list(token_ids)))

    def find_new(self, text: IncrementalText, token_ids: Sequence[int]) -> int | None:
        """Bring ``text`` up to ``token_ids`` and find a stop string in what it gained.

        Parameters
        ----------
        text : IncrementalText
            The row's text, last checked (with no stop string found) one step earlier.
        token_ids : sequence of int
            The row's tokens now.

        Returns
        -------
        int or None
            Character offset of the earliest stop string in the row's full text.
        """
        start = max(len(text.text) - self._overlap, 0)
        text.update(token_ids)
        return self._confirmed(text.text[start:] + text.tail, lambda: token_ids)

    def find_after(
        self, text: IncrementalText, token_ids: Sequence[int], extra: Sequence[int]
    ) -> int | None:
        """Like :meth:`find_new` for ``token_ids`` followed by ``extra``, not committed yet.

        ``text`` does not change (beam search asks this of every candidate).
        """
        start = max(len(text.text) - self._overlap, 0)
        window = text.text[start:] + text.tail_of(token_ids, extra)
        return self._confirmed(window, lambda: [*token_ids, *extra])

    def _confirmed(self, window: str, row: Callable[[], Sequence[int]]) -> int | None:
        """If ``window`` holds a stop string: its offset in a full decode of the ``row()``."""
        if self._earliest(window) is None:
            return None
        return self.find(row())

    def _earliest(self, text: str) -> int | None:
        found = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        return min(found) if found else None
