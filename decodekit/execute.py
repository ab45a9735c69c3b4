"""Running a prepared request through the decode loop: to the end, or as a stream.

:func:`execute` is decodekit's own ``run_generation`` implementation; :class:`Stream`
yields each row's new tokens and text as steps complete. Both turn the loop's finished
rows into :class:`~decodekit.Completion` objects the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from decodekit.contracts import LanguageModel, RowResult, Verifier
from decodekit.generation import (
    Completion,
    GenerationRequest,
    GenerationResult,
    GenerationStats,
    StreamChunk,
)
from decodekit.loop import DecodeState, StepEvent, StopChecker, run, start

__all__ = ["Stream", "execute", "without_partial_stop"]


def _start(request: GenerationRequest) -> tuple[DecodeState, Iterator[StepEvent]]:
    config = request.config
    state = start(
        request.model, request.prompt_ids, max_new_tokens=config.max_new_tokens,
        seeds=request.seeds,
    )
    if request.constraint is not None:
        request.constraint.start(len(request.prompt_ids))
    stops = StopChecker(request.model, config.stop) if config.stop else None
    events = run(state, request.pipeline, constraint=request.constraint, stop_checker=stops)
    return state, events


def _row_text(model: LanguageModel, row: RowResult) -> str:
    text = model.decode(row.token_ids)
    return text[: row.stop_index] if row.stop_index is not None else text


def _finish(request: GenerationRequest, state: DecodeState, seconds: float) -> GenerationResult:
    rows = request.pipeline.verifier.finalize(sorted(state.done, key=lambda r: r.prompt_index))
    _check_stop_strings(request, rows)
    completions = []
    for row in rows:
        stats = GenerationStats.of(
            len(row.token_ids), row.forward_passes, seconds, row.drafted_tokens,
            row.accepted_draft_tokens,
        )
        text = _row_text(request.model, row)
        completions.append(
            Completion(
                text=text,
                parsed=_parse_output(request, text, row.finish_reason),
                token_ids=list(row.token_ids),
                finish_reason=row.finish_reason or "length",
                strategy=request.config.strategy,
                stats=stats,
                prompt_index=row.prompt_index,
                score=row.score,
            )
        )
    total = GenerationStats.of(  # over the reported rows (beam search keeps its own)
        sum(len(r.token_ids) for r in rows),
        state.forward_passes,
        seconds,
        sum(r.drafted_tokens for r in rows),
        sum(r.accepted_draft_tokens for r in rows),
    )
    return GenerationResult(completions=completions, stats=total)


def _check_stop_strings(request: GenerationRequest, rows: list[RowResult]) -> None:
    """Cut every reported row at its first stop string.

    The loop's rows and those a verifier reports itself (beam hypotheses, superposed
    drafts) alike: a stop string in a row's last token is found here too.
    """
    if not request.config.stop or not _reports_own_rows(request.pipeline.verifier):
        return  # the loop checked every row it reports as it went
    checker = StopChecker(request.model, request.config.stop)
    for row in rows:
        if row.stop_index is None and (index := checker(row)) is not None:
            row.stop_index, row.finish_reason = index, "stop"


def _reports_own_rows(verifier: Verifier) -> bool:
    """Whether the reported rows may differ from the loop's (search state, own finalize)."""
    return not verifier.rows_are_outputs or type(verifier).finalize is not Verifier.finalize


def _parse_output(request: GenerationRequest, text: str, finish_reason: str | None) -> Any:
    """The output as an instance of the requested pydantic model (complete values only)."""
    if request.output_type is None or finish_reason != "stop":
        return None
    from pydantic import ValidationError

    try:
        return request.output_type.model_validate_json(text)  # type: ignore[attr-defined]
    except ValidationError:  # a stop string cut the value short: it is not a complete value
        return None


def execute(request: GenerationRequest) -> GenerationResult:
    """Run the decode loop for a request to the end (the default ``run_generation``)."""
    began = time.perf_counter()
    state, events = _start(request)
    for _ in events:
        pass
    return _finish(request, state, time.perf_counter() - began)


class Stream:
    """Iterator of :class:`StreamChunk` for a generation; ``result`` is set at the end."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.result: GenerationResult | None = None

    def __iter__(self) -> Iterator[StreamChunk]:
        """Yield chunks as steps complete."""
        began = time.perf_counter()
        state, events = _start(self.request)
        model = self.request.model
        stops = [s for s in self.request.config.stop if s]
        shown: dict[int, str] = {}
        for event in events:
            for (row, tokens), text in zip(event.appended, event.texts, strict=True):
                before = shown.get(row.prompt_index, "")
                if row.finish_reason is None:
                    text.update(row.token_ids)  # a no-op when stop strings did it
                    # without a trailing incomplete character, nor a stop string's start
                    visible = without_partial_stop(text.text, stops)
                else:  # the final text: EOS dropped, cut at its stop string
                    visible = _row_text(model, row)
                delta = visible[len(before) :] if visible.startswith(before) else ""
                shown[row.prompt_index] = before + delta
                yield StreamChunk(row.prompt_index, tokens, delta, row.finish_reason)
        self.result = _finish(self.request, state, time.perf_counter() - began)


def without_partial_stop(text: str, stops: list[str]) -> str:
    """``text`` without its longest suffix that begins a stop string.

    That suffix may yet turn out to be a stop string, which the final text leaves out; a
    stream shows it only once the next tokens rule that out.
    """
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:k]):
                hold = k
                break
    return text[: len(text) - hold]
