"""Validated specifications of the four constraint types, and JSON Schema loading.

A generation config carries a constraint as a mapping with a ``type``
(:class:`decodekit.config.ConstraintSpec`); each factory validates the rest of the
mapping with one of the pydantic models below, so a misspelled or mistyped field is
reported by name before anything is compiled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from decodekit.errors import ConstraintError

__all__ = [
    "Backend",
    "ChoiceSpec",
    "GrammarSpec",
    "JsonSchemaSpec",
    "RegexSpec",
    "load_schema",
    "parse_spec",
]

#: The matching engines a constraint can run on.
Backend = Literal["llguidance", "xgrammar"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: str = Field(description="The constraint type.")
    backend: Backend = Field(
        "llguidance", description="Matching engine: 'llguidance' (default) or 'xgrammar'."
    )


class JsonSchemaSpec(_Spec):
    """``json_schema``: the output is one JSON value valid under a JSON Schema."""

    json_schema: Any = Field(
        alias="schema",
        description=(
            "The JSON Schema: a mapping (or boolean schema), a JSON string, a path to a .json "
            "file, or a pydantic model class."
        ),
    )
    whitespace: Literal["flexible", "compact"] = Field(
        "flexible",
        description=(
            "'flexible': any JSON whitespace between tokens (as the JSON grammar allows); "
            "'compact': exactly json.dumps' separators ', ' and ': ', no other whitespace "
            "(more tokens are forced, so generation is faster)."
        ),
    )
    lenient: bool = Field(
        False,
        description=(
            "llguidance only: ignore keywords it does not implement instead of raising "
            "(the output may then violate them)."
        ),
    )


class RegexSpec(_Spec):
    """``regex``: the output matches a regular expression in full."""

    pattern: str = Field(min_length=1, description="The regular expression.")
    ascii_digits: bool = Field(
        True,
        description=(
            "llguidance only: read \\d as [0-9] (as xgrammar does); False keeps its Unicode "
            "meaning (any decimal digit of any script)."
        ),
    )


class GrammarSpec(_Spec):
    """``grammar``: the output is a sentence of a context-free grammar."""

    grammar: str = Field(min_length=1, description="Grammar text (Lark or GBNF/EBNF).")
    syntax: Literal["auto", "lark", "gbnf"] = Field(
        "auto",
        description=(
            "'lark' (llguidance's Lark dialect), 'gbnf' (llama.cpp / xgrammar EBNF with "
            "'::='), or 'auto': gbnf if the text contains '::=', else lark."
        ),
    )

    def resolved_syntax(self) -> Literal["lark", "gbnf"]:
        """The grammar's syntax, with ``auto`` decided from the text."""
        if self.syntax != "auto":
            return self.syntax
        return "gbnf" if "::=" in self.grammar else "lark"


class ChoiceSpec(_Spec):
    """``choice``: the output is exactly one of the given strings."""

    choices: list[str] = Field(min_length=1, description="The allowed outputs.")

    @field_validator("choices")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        for i, choice in enumerate(value):
            if not choice:
                raise ValueError(f"choice {i} is the empty string")
        return value


_MODELS: dict[str, type[_Spec]] = {
    "json_schema": JsonSchemaSpec,
    "regex": RegexSpec,
    "grammar": GrammarSpec,
    "choice": ChoiceSpec,
}


def parse_spec(kind: str, spec: dict[str, Any]) -> Any:
    """Validate a constraint mapping for constraint type ``kind``.

    Raises
    ------
    ConstraintError
        Naming every bad field, e.g. ``regex constraint: pattern: Field required``.
    """
    model = _MODELS[kind]
    data = dict(spec)
    data.setdefault("type", kind)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(spec)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConstraintError(f"{kind} constraint: {problems}") from None


def load_schema(value: Any) -> dict[str, Any] | bool:
    """Resolve a ``schema`` setting to a JSON Schema (a mapping or a boolean schema).

    Parameters
    ----------
    value : mapping, bool, str, Path or pydantic model class
        A schema, a JSON string, a path to a JSON file, or a pydantic model class.

    Raises
    ------
    ConstraintError
        The file is missing, is not JSON, or the value is none of the above.
    """
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return dict(value.model_json_schema())
    if isinstance(value, bool | dict):
        return value
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConstraintError(
                f"json_schema constraint: schema: JSON syntax error at line {exc.lineno}: "
                f"{exc.msg}"
            ) from None
        return _check_schema_type(loaded)
    if isinstance(value, str | Path):
        path = Path(value)
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError):
            raise ConstraintError(
                f"json_schema constraint: schema: file not found: {path}"
            ) from None
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConstraintError(f"{path}:{exc.lineno}: JSON syntax error: {exc.msg}") from None
        return _check_schema_type(loaded)
    raise ConstraintError(
        "json_schema constraint: schema: expected a mapping, a JSON string, a file path or a "
        f"pydantic model class, got {type(value).__name__}"
    )


def _check_schema_type(loaded: Any) -> dict[str, Any] | bool:
    if isinstance(loaded, bool | dict):
        return loaded
    raise ConstraintError(
        f"json_schema constraint: schema: a JSON Schema is an object or a boolean, got "
        f"{type(loaded).__name__}"
    )
