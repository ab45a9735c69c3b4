"""MaskBench checks: a compiled JSON Schema must accept exactly its valid instances.

MaskBench (from JSONSchemaBench, arXiv 2501.10868) pairs real-world JSON Schemas with
valid and invalid instances. For each schema that compiles, every valid instance,
serialized with ``json.dumps(data, ensure_ascii=False)`` and tokenized, must be accepted
token by token (each token inside the mask computed before it) and end in an accepting
state; every invalid instance must be cut at some token or end in a non-accepting state.
A schema that does not compile must raise :class:`~decodekit.ConstraintError`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from decodekit.errors import ConstraintError

__all__ = [
    "InstanceResult",
    "SchemaResult",
    "check_instance",
    "check_schema",
    "generation_schemas",
    "load",
    "prompt_for",
    "summary",
]


@dataclass
class InstanceResult:
    """One test instance of a schema.

    Attributes
    ----------
    valid : bool
        What the data set says about the instance.
    accepted : bool
        Whether the constraint accepted every token and ended in an accepting state.
    tokens : int
        Tokens of the serialized instance.
    consumed : int
        Tokens accepted before the first rejected one.
    """

    valid: bool
    accepted: bool
    tokens: int
    consumed: int

    @property
    def correct(self) -> bool:
        """Accepted if and only if valid."""
        return self.valid == self.accepted


@dataclass
class SchemaResult:
    """One schema: whether it compiled, and its instances' results."""

    id: str
    category: str
    compiled: bool
    error: str = ""
    compile_seconds: float = 0.0
    instances: list[InstanceResult] = field(default_factory=list)
    mask_seconds: list[float] = field(default_factory=list)


def load(path: str | Path) -> list[dict[str, Any]]:
    """MaskBench entries ``{"id", "category", "schema", "tests": [{"valid", "data"}]}``."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def check_instance(constraint: Any, tokens: list[int], *, masks: bool = True,
                   mask_seconds: list[float] | None = None) -> tuple[bool, int]:
    """Feed ``tokens`` to a fresh row of ``constraint``; return (accepted, consumed).

    With ``masks``, each token must also be set in the mask computed before it (the mask
    and the matcher agree), and mask times are appended to ``mask_seconds``.
    """
    constraint.start(1)
    matcher = constraint.matchers[0]
    mask = torch.zeros(matcher.words, dtype=torch.int32)
    consumed = 0
    for token in tokens:
        if masks:
            began = time.perf_counter()
            matcher.fill(mask)
            if mask_seconds is not None:
                mask_seconds.append(time.perf_counter() - began)
            word = int(mask[token // 32]) if token // 32 < mask.shape[0] else 0
            if not (word >> (token % 32)) & 1:
                return False, consumed
        if matcher.consume([token]) != 1:
            return False, consumed
        consumed += 1
    return bool(matcher.accepting()), consumed


def check_schema(entry: dict[str, Any], tokenizer: Any, *, backend: str = "llguidance",
                 masks: bool = True) -> SchemaResult:
    """Compile one MaskBench schema and check all its instances."""
    from decodekit_json import compile_constraint

    began = time.perf_counter()
    try:
        constraint = compile_constraint(
            {"type": "json_schema", "schema": entry["schema"], "backend": backend}, tokenizer
        )
    except ConstraintError as exc:
        return SchemaResult(entry["id"], entry["category"], False, str(exc),
                            time.perf_counter() - began)
    result = SchemaResult(entry["id"], entry["category"], True,
                          compile_seconds=time.perf_counter() - began)
    for test in entry["tests"]:
        text = json.dumps(test["data"], ensure_ascii=False)
        tokens = tokenizer.encode(text, add_special_tokens=False)
        accepted, consumed = check_instance(constraint, tokens, masks=masks,
                                            mask_seconds=result.mask_seconds)
        result.instances.append(InstanceResult(bool(test["valid"]), accepted, len(tokens),
                                               consumed))
    return result


def run(entries: Iterable[dict[str, Any]], tokenizer: Any, *, backend: str = "llguidance",
        masks: bool = True) -> Iterator[SchemaResult]:
    """:func:`check_schema` for every entry."""
    for entry in entries:
        yield check_schema(entry, tokenizer, backend=backend, masks=masks)


def summary(results: list[SchemaResult]) -> dict[str, int]:
    """Counts: schemas, compiled, valid/invalid instances of compiled schemas, correct ones."""
    compiled = [r for r in results if r.compiled]
    instances = [i for r in compiled for i in r.instances]
    return {
        "schemas": len(results),
        "compiled": len(compiled),
        "valid": sum(i.valid for i in instances),
        "valid_accepted": sum(i.valid and i.accepted for i in instances),
        "invalid": sum(not i.valid for i in instances),
        "invalid_rejected": sum(not i.valid and not i.accepted for i in instances),
    }


def generation_schemas(entries: list[dict[str, Any]], count: int, *,
                       max_chars: int = 400) -> list[dict[str, Any]]:
    """``count`` entries spread evenly over the file among schemas of at most ``max_chars``.

    Deterministic; used by the generation sweep and its test subset.
    """
    small = [e for e in entries if len(json.dumps(e["schema"])) <= max_chars]
    if count >= len(small):
        return small
    return [small[int(i * len(small) / count)] for i in range(count)]


def prompt_for(schema: dict[str, Any] | bool) -> str:
    """The instruction given to the model for a schema."""
    return ("Reply with only a JSON value that follows this JSON Schema:\n"
            + json.dumps(schema, ensure_ascii=False))
