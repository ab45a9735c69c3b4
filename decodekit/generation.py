"""What one generation call takes and returns.

A :class:`GenerationRequest` is a validated call as the ``run_generation`` hook receives
it; a :class:`GenerationResult` holds every row's :class:`Completion` and the call's
:class:`GenerationStats`; a :class:`StreamChunk` is what a stream yields per row and step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from decodekit.config import GenerationConfig
from decodekit.contracts import CompiledConstraint, LanguageModel
from decodekit.strategy import Pipeline, Strategy

__all__ = [
    "Completion",
    "GenerationRequest",
    "GenerationResult",
    "GenerationStats",
    "StreamChunk",
]


@dataclass(frozen=True)
class GenerationStats:
    """Statistics of one generation call (or of one row of it).

    Attributes
    ----------
    new_tokens : int
        Tokens generated.
    forward_passes : int
        Target-model forwards.
    seconds : float
        Wall time of decoding, model load excluded.
    tokens_per_second : float
        ``new_tokens / seconds``.
    drafted_tokens : int
        Draft nodes proposed.
    accepted_draft_tokens : int
        Draft tokens committed.
    mean_accepted_per_forward : float
        Tokens committed per target forward (1.0 without drafts).
    """

    new_tokens: int
    forward_passes: int
    seconds: float
    tokens_per_second: float
    drafted_tokens: int = 0
    accepted_draft_tokens: int = 0
    mean_accepted_per_forward: float = 0.0

    @classmethod
    def of(
        cls, new_tokens: int, forwards: int, seconds: float, drafted: int, accepted: int
    ) -> GenerationStats:
        """Stats with the derived rates filled in."""
        return cls(
            new_tokens=new_tokens,
            forward_passes=forwards,
            seconds=seconds,
            tokens_per_second=new_tokens / seconds if seconds > 0 else 0.0,
            drafted_tokens=drafted,
            accepted_draft_tokens=accepted,
            mean_accepted_per_forward=new_tokens / forwards if forwards else 0.0,
        )

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict for JSON output."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Completion:
    """One row's output.

    Attributes
    ----------
    text : str
        Generated text only, special tokens skipped, cut before a stop string.
    token_ids : list of int
        Generated token ids (EOS included when it ended the row).
    finish_reason : str
        ``"stop"`` (EOS, stop string or completed constraint) or ``"length"``.
    strategy : str
    stats : GenerationStats
        This row's statistics (``seconds`` is the whole call's).
    prompt_index : int
        Which prompt of the call this row answers.
    score : float or None
        The strategy's score for the row, if it reports one.
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    strategy: str
    stats: GenerationStats
    prompt_index: int = 0
    score: float | None = None
    parsed: Any = None

    def as_dict(self) -> dict[str, Any]:
        """The CLI's JSON object for this row."""
        stats = self.stats.as_dict()
        stats["finish_reason"] = self.finish_reason
        out: dict[str, Any] = {
            "text": self.text,
            "token_ids": self.token_ids,
            "strategy": self.strategy,
            "stats": stats,
        }
        if self.score is not None:
            out["score"] = self.score
        if self.parsed is not None:
            out["parsed"] = _jsonable(self.parsed)
        return out


def _jsonable(value: Any) -> Any:
    from pydantic import BaseModel

    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


@dataclass
class GenerationRequest:
    """A validated generation call, as the ``run_generation`` hook receives it.

    Attributes
    ----------
    prompt_ids : list of list of int
        Token ids per row.
    config : GenerationConfig
    model : LanguageModel
    strategy : Strategy
    pipeline : Pipeline
    seeds : list of int
        One per row.
    constraint : CompiledConstraint or None
    """

    prompt_ids: list[list[int]]
    config: GenerationConfig
    model: LanguageModel
    strategy: Strategy
    pipeline: Pipeline
    seeds: list[int]
    constraint: CompiledConstraint | None = None
    output_type: type | None = None


@dataclass
class GenerationResult:
    """Every row's completion and the call's statistics."""

    completions: list[Completion]
    stats: GenerationStats


@dataclass(frozen=True)
class StreamChunk:
    """Tokens one row gained in one step.

    Attributes
    ----------
    prompt_index : int
    token_ids : list of int
        New token ids this step.
    text : str
        New text this step (may be empty while a character is incomplete).
    finish_reason : str or None
        Set on the row's last chunk.
    """

    prompt_index: int
    token_ids: list[int]
    text: str
    finish_reason: str | None
