"""Matcher behaviour of the four constraint types on SmolLM2's tokenizer, both backends.

No model weights: tokens are fed to the compiled constraints directly, exactly as the
decode loop does (``start``, ``fill_bitmask``, ``advance``, ``forced_tokens``,
``is_finished``, ``select_rows``).
"""

from __future__ import annotations

import json

import pytest
import torch
from decodekit_json import backends, compile_constraint
from pydantic import BaseModel

from decodekit import DraftTree, get_registry
from decodekit.errors import ConstraintError

BACKENDS = ["llguidance", "xgrammar"]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def allowed(bitmask: torch.Tensor, token: int) -> bool:
    """Whether ``token``'s bit is set in a packed mask ``[W]``."""
    return bool((int(bitmask[token // 32]) >> (token % 32)) & 1)


def new_mask(constraint, rows: int = 1, nodes: int = 1) -> torch.Tensor:
    return torch.full((rows, nodes, constraint.grammar.words), -1, dtype=torch.int32)


def feed(constraint, tokenizer, text: str, row: int = 0) -> None:
    for token in encode(tokenizer, text):
        mask = new_mask(constraint, len(constraint.matchers))
        constraint.fill_bitmask(mask, None)
        assert allowed(mask[row, 0], token), f"token {token} of {text!r} is masked"
        constraint.advance(row, [token])


def test_the_four_types_are_registered():
    assert {"json_schema", "regex", "grammar", "choice"} <= set(get_registry().constraints)


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_schema_accepts_valid_and_finishes(smollm2_tokenizer, backend):
    tok = smollm2_tokenizer
    c = compile_constraint({"type": "json_schema", "schema": PERSON, "backend": backend}, tok)
    c.start(1)
    text = json.dumps({"name": "Ada", "age": 36})
    tokens = encode(tok, text)
    feed(c, tok, text[: len(text) - 1])  # all but the closing brace
    assert not c.is_finished(0) and not c.is_accepting(0)
    c.advance(0, encode(tok, "}"))
    assert c.is_finished(0) and c.is_accepting(0)
    assert len(tokens) > 5
    mask = new_mask(c)
    c.fill_bitmask(mask, None)  # only EOS is left
    eos = next(iter(c.grammar.eos_tokens))
    assert allowed(mask[0, 0], eos)
    assert not allowed(mask[0, 0], encode(tok, ",")[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_schema_rejects_invalid(smollm2_tokenizer, backend):
    c = compile_constraint({"type": "json_schema", "schema": PERSON, "backend": backend},
                           smollm2_tokenizer)
    c.start(1)
    feed(c, smollm2_tokenizer, '{"name": "Ada", "age": ')
    mask = new_mask(c)
    c.fill_bitmask(mask, None)
    assert not allowed(mask[0, 0], encode(smollm2_tokenizer, '"')[0])  # age must be a number
    assert allowed(mask[0, 0], encode(smollm2_tokenizer, "3")[0])
    with pytest.raises(ConstraintError, match="does not allow"):
        c.advance(0, encode(smollm2_tokenizer, '"'))


def test_fast_forward_forces_the_only_continuation(smollm2_tokenizer):
    tok = smollm2_tokenizer
    c = compile_constraint({"type": "json_schema", "schema": PERSON, "whitespace": "compact"},
                           tok)
    c.start(1)
    forced = c.forced_tokens(0)
    head = tok.decode(forced)
    # llguidance stops before a token that could merge with what the model writes next
    assert head in ('{"name":', '{"name": "'), head
    c.advance(0, forced)
    feed(c, tok, '{"name": "'[len(head):] + 'Ada"')
    assert tok.decode(c.forced_tokens(0)).startswith(', "age":')
    choice = compile_constraint({"type": "choice", "choices": ["hello world"]}, tok)
    choice.start(1)
    assert tok.decode(choice.forced_tokens(0)) == "hello world"


@pytest.mark.parametrize("backend", BACKENDS)
def test_regex_choice_and_grammar(smollm2_tokenizer, backend):
    tok = smollm2_tokenizer
    regex = compile_constraint({"type": "regex", "pattern": r"\d{3}-\d{4}", "backend": backend},
                               tok)
    regex.start(1)
    feed(regex, tok, "555-1234")
    assert regex.is_finished(0)
    choice = compile_constraint(
        {"type": "choice", "choices": ["red", "green", 'say "hi"'], "backend": backend}, tok
    )
    choice.start(1)
    mask = new_mask(choice)
    choice.fill_bitmask(mask, None)
    assert allowed(mask[0, 0], encode(tok, "red")[0])
    assert not allowed(mask[0, 0], encode(tok, "blue")[0])
    feed(choice, tok, 'say "hi"')
    assert choice.is_finished(0)
    if backend == "llguidance":
        grammar = {"type": "grammar", "grammar": 'start: "(" NUM ("," NUM)* ")"\nNUM: /[0-9]+/'}
    else:
        grammar = {"type": "grammar", "backend": backend,
                   "grammar": 'root ::= "(" num ("," num)* ")"\nnum ::= [0-9]+'}
    g = compile_constraint(grammar, tok)
    g.start(1)
    feed(g, tok, "(1,22")
    assert not g.is_accepting(0)
    feed(g, tok, ")")
    assert g.is_finished(0)


def test_gbnf_grammar_on_llguidance(smollm2_tokenizer):
    g = compile_constraint({"type": "grammar", "grammar": 'root ::= "yes" | "no"'},
                           smollm2_tokenizer)
    g.start(1)
    feed(g, smollm2_tokenizer, "no")
    assert g.is_finished(0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_draft_masks_follow_each_node_path_and_roll_back(smollm2_tokenizer, backend):
    """Masks at draft nodes equal the masks after advancing along the node's path."""
    tok = smollm2_tokenizer
    spec = {"type": "json_schema", "schema": PERSON, "backend": backend}
    c = compile_constraint(spec, tok)
    c.start(2)
    feed(c, tok, '{"name": "', row=0)
    a, b, bad = encode(tok, "Ada")[0], encode(tok, '"')[0], encode(tok, "}")[0]
    # row 0: tree  root -> a -> b ; root -> b (sibling) ; row 1 (at the start): root -> bad
    tokens = torch.tensor([[a, b, b], [bad, -1, -1]])
    parents = torch.tensor([[-1, 0, -1], [-1, -1, -1]])
    draft = DraftTree(tokens=tokens, parents=parents)
    mask = new_mask(c, 2, 4)
    c.fill_bitmask(mask, draft)
    reference = compile_constraint(spec, tok)
    for path, node in (([a], 1), ([a, b], 2), ([b], 3)):
        reference.start(1)
        feed(reference, tok, '{"name": "')
        reference.advance(0, path)
        expected = new_mask(reference)
        reference.fill_bitmask(expected, None)
        assert torch.equal(mask[0, node], expected[0, 0]), f"node {node - 1}"
    assert not allowed(mask[1, 0], bad)
    # the rows' own state did not move: row 0 still expects the name, row 1 the object
    after = new_mask(c, 2)
    c.fill_bitmask(after, None)
    assert torch.equal(after[:, 0], mask[:, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_select_rows_forks_matchers(smollm2_tokenizer, backend):
    tok = smollm2_tokenizer
    c = compile_constraint({"type": "regex", "pattern": "(ab|cd)+", "backend": backend}, tok)
    c.start(2)
    feed(c, tok, "ab", row=0)
    c.select_rows(torch.tensor([0, 0, 1]))  # fork row 0, drop nothing
    assert len(c.matchers) == 3 and c.matchers[0] is not c.matchers[1]
    feed(c, tok, "cd", row=0)
    assert c.is_accepting(0) and c.is_accepting(1) and not c.is_accepting(2)
    masks = new_mask(c, 3)
    c.fill_bitmask(masks, None)
    assert torch.equal(masks[0, 0], masks[1, 0])
    c.select_rows(torch.tensor([2]))
    assert len(c.matchers) == 1 and not c.is_accepting(0)


def test_compiled_grammars_are_cached(smollm2_tokenizer):
    spec = {"type": "json_schema", "schema": {"type": "array", "items": {"type": "number"}}}
    first = compile_constraint(spec, smollm2_tokenizer)
    second = compile_constraint(dict(spec), smollm2_tokenizer)
    assert first.grammar is second.grammar and first is not second
    backends.clear_caches()
    assert compile_constraint(spec, smollm2_tokenizer).grammar is not first.grammar


def test_schema_inputs_file_string_and_pydantic(smollm2_tokenizer, tmp_path):
    class Person(BaseModel):
        name: str
        age: int

    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON))
    for schema in (PERSON, str(path), path, json.dumps(PERSON), Person):
        c = compile_constraint({"type": "json_schema", "schema": schema}, smollm2_tokenizer)
        c.start(1)
        feed(c, smollm2_tokenizer, '{"name": "A", "age": 1}')
        assert c.is_finished(0), schema


def test_bad_input_errors_name_the_problem(smollm2_tokenizer, tmp_path):
    tok = smollm2_tokenizer
    cases = [
        ({"type": "json_schema", "schema": {"type": "foo"}}, "Invalid type: foo"),
        ({"type": "json_schema", "schema": {"type": "array", "uniqueItems": True}},
         "uniqueItems"),
        ({"type": "json_schema", "schema": {"type": "string", "format": "url"}},
         "Unknown format: url"),
        ({"type": "json_schema", "schema": {"type": "string", "minLength": 5, "maxLength": 2}},
         "Unsatisfiable"),
        ({"type": "json_schema", "schema": False}, "unsatisfiable"),
        ({"type": "json_schema", "schema": str(tmp_path / "nope.json")}, "file not found"),
        ({"type": "json_schema", "schema": "{oops"}, "JSON syntax error"),
        ({"type": "json_schema"}, "schema: Field required"),
        ({"type": "json_schema", "schema": {}, "whitespace": "tabs"}, "whitespace"),
        ({"type": "json_schema", "schema": {}, "backend": "outlines"}, "backend"),
        ({"type": "regex", "pattern": "(a"}, "regex constraint: llguidance cannot compile"),
        ({"type": "regex", "pattern": "a", "flags": 1}, "flags: Extra inputs"),
        ({"type": "choice", "choices": []}, "choices"),
        ({"type": "choice", "choices": ["a", ""]}, "empty string"),
        ({"type": "grammar", "grammar": "start: foo"}, 'unknown name: "foo"'),
        ({"type": "grammar", "grammar": "start: /a/", "backend": "xgrammar"}, "not Lark"),
        ({"type": "json_schema", "schema": {"type": "foo"}, "backend": "xgrammar"},
         "xgrammar cannot compile"),
        ({"type": "yaml"}, "not one of"),
    ]
    for spec, message in cases:
        with pytest.raises(ConstraintError, match=message):
            compile_constraint(spec, tok)
