"""Constrained decoding for decodekit: JSON Schema, regex, grammar and choice constraints.

Four constraint types are registered through ``register_constraints``:

``json_schema``
    ``{"type": "json_schema", "schema": ...}``: one JSON value valid under the schema (a
    mapping, a JSON string, a path to a file, or a pydantic model class).
``regex``
    ``{"type": "regex", "pattern": ...}``: text matching the regular expression in full.
``grammar``
    ``{"type": "grammar", "grammar": ..., "syntax": "auto"}``: a sentence of a Lark
    (llguidance) or GBNF grammar.
``choice``
    ``{"type": "choice", "choices": [...]}``: exactly one of the strings.

Every type takes ``backend``: ``"llguidance"`` (default) or ``"xgrammar"``. Both engines
run for real; nothing is re-implemented. Compiled grammars are cached per (constraint,
tokenizer). Matchers advance per row, fork with beams, and roll back along draft trees;
when the grammar allows a single continuation, its tokens are fast-forwarded.

Examples
--------
>>> from decodekit import Engine
>>> engine = Engine()
>>> out = engine.generate("Give a colour.", constraint={"type": "choice",
...                       "choices": ["red", "green", "blue"]})
>>> out.text in {"red", "green", "blue"}, out.finish_reason
(True, 'stop')
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from decodekit import hookimpl
from decodekit.contracts import ConstraintFactory
from decodekit.errors import ConstraintError
from decodekit_json.backends import Grammar, _bits, clear_caches, compile_grammar
from decodekit_json.constraint import GrammarConstraint
from decodekit_json.specs import (
    ChoiceSpec,
    GrammarSpec,
    JsonSchemaSpec,
    RegexSpec,
    load_schema,
    parse_spec,
)

__all__ = [
    "ChoiceConstraint",
    "GrammarConstraint",
    "GrammarFactory",
    "JsonSchemaConstraint",
    "RegexConstraint",
    "ascii_digits",
    "clear_caches",
    "compile_constraint",
]


class _GrammarFactory(ConstraintFactory):
    """Shared compile path: validate the spec, build the engine grammar, check it."""

    name: ClassVar[str]

    def compile(self, spec: dict[str, Any], tokenizer: Any) -> GrammarConstraint:
        """Compile ``spec`` for ``tokenizer``.

        Raises
        ------
        ConstraintError
            A field is invalid, the engine cannot compile the constraint (the message
            carries the engine's reason, e.g. the unsupported keyword), or the constraint
            allows no output at all.
        """
        what = f"{self.name} constraint"
        if tokenizer is None:
            raise ConstraintError(f"{what}: the model has no tokenizer to compile it for")
        parsed = parse_spec(self.name, spec)
        grammar = self.grammar(parsed, tokenizer, what)
        _check_satisfiable(grammar, what)
        return GrammarConstraint(grammar, what)

    def grammar(self, spec: Any, tokenizer: Any, what: str) -> Grammar:
        """The compiled grammar for a validated spec (cached per tokenizer)."""
        raise NotImplementedError


def _check_satisfiable(grammar: Grammar, what: str) -> None:
    """Refuse a constraint that allows nothing at the start (no garbage output)."""
    matcher = grammar.matcher()
    mask = torch.zeros(grammar.words, dtype=torch.int32)
    matcher.fill(mask)
    allowed = _bits(mask)
    if not allowed or (allowed <= grammar.eos_tokens and not matcher.accepting()):
        raise ConstraintError(f"{what}: the constraint is unsatisfiable (no output matches it)")


class JsonSchemaConstraint(_GrammarFactory):
    """``json_schema``: one JSON value valid under a JSON Schema (:class:`JsonSchemaSpec`)."""

    name = "json_schema"

    def grammar(self, spec: JsonSchemaSpec, tokenizer: Any, what: str) -> Grammar:
        """See :meth:`_GrammarFactory.grammar`."""
        schema = load_schema(spec.json_schema)
        if schema is False:
            raise ConstraintError(f"{what}: the constraint is unsatisfiable (schema false)")
        if schema is True:
            schema = {}
        if spec.backend == "xgrammar":
            if spec.lenient:
                raise ConstraintError(f"{what}: lenient: only the llguidance backend has it")
            return compile_grammar("xgrammar", "json_schema", json.dumps(schema), tokenizer,
                                   what=what, options={"whitespace": spec.whitespace})
        import llguidance

        options: dict[str, Any] = {}
        if spec.whitespace == "compact":
            options.update(whitespace_flexible=False, item_separator=", ", key_separator=": ")
        if spec.lenient:
            options["lenient"] = True
        try:
            source = llguidance.LLMatcher.grammar_from_json_schema(
                schema, defaults=options or None  # type: ignore[arg-type]
            )
        except ValueError as exc:
            raise ConstraintError(f"{what}: schema: {exc}") from None
        return compile_grammar("llguidance", "llguidance", source, tokenizer, what=what)


class RegexConstraint(_GrammarFactory):
    """``regex``: text matching a regular expression in full (:class:`RegexSpec`)."""

    name = "regex"

    def grammar(self, spec: RegexSpec, tokenizer: Any, what: str) -> Grammar:
        """See :meth:`_GrammarFactory.grammar`."""
        if spec.backend == "xgrammar":
            return compile_grammar("xgrammar", "regex", spec.pattern, tokenizer, what=what)
        import llguidance

        pattern = ascii_digits(spec.pattern) if spec.ascii_digits else spec.pattern
        source = llguidance.LLMatcher.grammar_from_regex(pattern)
        return compile_grammar("llguidance", "llguidance", source, tokenizer, what=what)


class GrammarFactory(_GrammarFactory):
    """``grammar``: a sentence of a Lark or GBNF grammar (:class:`GrammarSpec`)."""

    name = "grammar"

    def grammar(self, spec: GrammarSpec, tokenizer: Any, what: str) -> Grammar:
        """See :meth:`_GrammarFactory.grammar`."""
        syntax = spec.resolved_syntax()
        if spec.backend == "xgrammar":
            if syntax != "gbnf":
                raise ConstraintError(
                    f"{what}: syntax: the xgrammar backend reads GBNF/EBNF grammars "
                    "('rule ::= ...', root rule 'root'), not Lark; use backend 'llguidance' "
                    "for Lark"
                )
            return compile_grammar("xgrammar", "ebnf", spec.grammar, tokenizer, what=what)
        import llguidance
        from llguidance.gbnf_to_lark import gbnf_to_lark

        text = spec.grammar
        if syntax == "gbnf":
            try:
                text = gbnf_to_lark(text)
            except Exception as exc:  # the converter raises plain exceptions
                raise ConstraintError(f"{what}: grammar: not valid GBNF: {exc}") from None
        source = llguidance.LLMatcher.grammar_from_lark(text)
        return compile_grammar("llguidance", "llguidance", source, tokenizer, what=what)


class ChoiceConstraint(_GrammarFactory):
    """``choice``: exactly one of the given strings (:class:`ChoiceSpec`)."""

    name = "choice"

    def grammar(self, spec: ChoiceSpec, tokenizer: Any, what: str) -> Grammar:
        """See :meth:`_GrammarFactory.grammar`."""
        unique = dict.fromkeys(spec.choices)
        literals = " | ".join(json.dumps(c, ensure_ascii=False) for c in unique)
        if spec.backend == "xgrammar":
            return compile_grammar("xgrammar", "ebnf", f"root ::= {literals}", tokenizer,
                                   what=what)
        import llguidance

        source = llguidance.LLMatcher.grammar_from_lark(f"start: {literals}")
        return compile_grammar("llguidance", "llguidance", source, tokenizer, what=what)


def ascii_digits(pattern: str) -> str:
    r"""Rewrite ``\d`` / ``\D`` as ``[0-9]`` / ``[^0-9]`` (llguidance's ``\d`` is Unicode).

    Works inside character classes too (``[\d_]`` becomes ``[[0-9]_]``, a nested class).
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            pair = pattern[i : i + 2]
            out.append({"\\d": "[0-9]", "\\D": "[^0-9]"}.get(pair, pair))
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out)


FACTORIES: tuple[type[_GrammarFactory], ...] = (
    JsonSchemaConstraint, RegexConstraint, GrammarFactory, ChoiceConstraint,
)


def compile_constraint(spec: dict[str, Any], tokenizer: Any) -> GrammarConstraint:
    """Compile a constraint mapping (with its ``type``) for a tokenizer, without an Engine.

    Raises
    ------
    ConstraintError
        Unknown type, invalid fields, or a constraint the engine cannot compile.
    """
    kind = spec.get("type")
    for factory in FACTORIES:
        if factory.name == kind:
            return factory().compile(spec, tokenizer)
    names = ", ".join(f.name for f in FACTORIES)
    raise ConstraintError(f"constraint type {kind!r} is not one of {names}")


@hookimpl
def register_constraints(register: Callable[[type[ConstraintFactory]], None]) -> None:
    """Register ``json_schema``, ``regex``, ``grammar`` and ``choice``."""
    for factory in FACTORIES:
        register(factory)
