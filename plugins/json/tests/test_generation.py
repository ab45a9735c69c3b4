"""Constrained generation with SmolLM2-135M-Instruct under several strategies.

Outputs that finish (finish_reason "stop") must parse and validate with ``jsonschema``;
outputs cut by the token limit must say "length" and are never parsed. Kept short for the
test budget (4 dev schemas, at most 40 new tokens, compact whitespace); the 50-schema
sweep is ``benchmarks/constrained.py --generate 50`` (figures in docs/constraints.md).
"""

from __future__ import annotations

import json

import jsonschema
import pytest
from decodekit_json import maskbench
from pydantic import BaseModel
from typer.testing import CliRunner

from decodekit.cli import app
from decodekit.errors import ConstraintError

pytestmark = pytest.mark.smollm2

TOKENS = 40


@pytest.fixture(scope="module")
def schemas(maskbench_entries):
    """4 small dev schemas, evenly spread over the file."""
    return maskbench.generation_schemas(maskbench_entries, 4)


def generate(engine, entry, strategy, **kw):
    return engine.generate(
        maskbench.prompt_for(entry["schema"]), strategy=strategy, max_new_tokens=TOKENS,
        constraint={"type": "json_schema", "schema": entry["schema"], "whitespace": "compact"},
        **kw,
    )


def check(out, schema) -> bool:
    """Finished outputs validate; cut ones say "length". Returns whether it finished."""
    assert out.finish_reason in ("stop", "length")
    if out.finish_reason == "stop":
        jsonschema.validate(json.loads(out.text), schema)
        return True
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.text)  # an incomplete value is never a complete JSON document
    return False


def require(engine, strategy: str, drafter: str | None = None) -> None:
    registry = engine.registry
    if strategy not in registry.strategies:
        pytest.skip(f"strategy {strategy!r} is not installed (plugin absent)")
    if drafter is not None and drafter not in registry.drafters:
        pytest.skip(f"drafter {drafter!r} is not installed (decodekit-lookup absent)")


@pytest.mark.parametrize(("strategy", "kw", "least"), [
    ("greedy", {}, 2),
    # sampled string values often run past 40 tokens: those end "length", unparsed
    ("sample", {"temperature": 0.7, "seed": 0}, 1),
])
def test_outputs_that_finish_validate(smollm2, schemas, strategy, kw, least):
    finished = sum(check(generate(smollm2, e, strategy, **kw), e["schema"]) for e in schemas)
    assert finished >= least, f"only {finished} of {len(schemas)} finished"


def test_beam_search_forks_matchers(smollm2, schemas):
    require(smollm2, "beam")
    finished = sum(check(generate(smollm2, e, "beam", num_beams=2), e["schema"])
                   for e in schemas[:2])
    assert finished >= 1


def test_speculative_prompt_lookup_rolls_back(smollm2, schemas):
    require(smollm2, "speculative", "prompt_lookup")
    for entry in schemas[:2]:
        plain = generate(smollm2, entry, "greedy")
        out = generate(smollm2, entry, "speculative", drafter="prompt_lookup", temperature=0.0)
        check(out, entry["schema"])
        # greedy-equivalent under the same constraint: the same tokens as greedy
        assert out.token_ids == plain.token_ids
        assert out.stats.drafted_tokens > 0


class Point(BaseModel):
    x: int
    y: int


def test_pydantic_constraint_parses_complete_values_only(smollm2):
    done = smollm2.generate("Give a point with x=3 and y=4 as JSON.", constraint=Point,
                            max_new_tokens=TOKENS)
    assert done.finish_reason == "stop"
    assert isinstance(done.parsed, Point) and Point.model_validate_json(done.text) == done.parsed
    cut = smollm2.generate("Give a point with x=3 and y=4 as JSON.", constraint=Point,
                           max_new_tokens=3)
    assert cut.finish_reason == "length" and cut.parsed is None
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.text)


def test_choice_and_regex_finish(smollm2):
    colour = smollm2.generate("Name a primary colour.", max_new_tokens=8,
                              constraint={"type": "choice", "choices": ["red", "blue", "yellow"]})
    assert colour.text in {"red", "blue", "yellow"} and colour.finish_reason == "stop"
    phone = smollm2.generate("A phone number?", max_new_tokens=16,
                             constraint={"type": "regex", "pattern": r"\d{3}-\d{4}"})
    assert phone.finish_reason == "stop"
    assert len(phone.text) == 8 and phone.text[3] == "-" and phone.text.replace("-", "").isdigit()


def test_unsatisfiable_constraint_fails_before_generating(smollm2):
    with pytest.raises(ConstraintError, match="Unsatisfiable"):
        smollm2.generate("Hi", max_new_tokens=4, constraint={
            "type": "json_schema", "schema": {"type": "integer", "minimum": 5, "maximum": 1}})


def test_cli_schema_regex_grammar_and_config(tmp_path):
    runner = CliRunner()
    schema = tmp_path / "point.json"
    strict = {**Point.model_json_schema(), "additionalProperties": False}  # no extra keys
    schema.write_text(json.dumps(strict))
    grammar = tmp_path / "yesno.lark"
    grammar.write_text('start: "yes" | "no"')
    config = tmp_path / "run.toml"
    config.write_text('strategy = "greedy"\nmax_new_tokens = 24\n\n[constraint]\n'
                      'type = "json_schema"\nschema = ' + json.dumps(str(schema)) + '\n')
    runs = [
        (["--schema", str(schema)], lambda t: Point.model_validate_json(t)),
        (["--regex", "[0-9]{2}"], lambda t: t.isdigit() and len(t) == 2),
        (["--grammar", str(grammar)], lambda t: t in ("yes", "no")),
        (["--config", str(config)], lambda t: Point.model_validate_json(t)),
    ]
    for args, valid in runs:
        result = runner.invoke(app, ["run", "Give a point as JSON, or answer yes or no.",
                                     "--max-new-tokens", "24", "--json", *args])
        assert result.exit_code == 0, result.output
        record = json.loads(result.stdout.strip().splitlines()[-1])
        assert record["stats"]["finish_reason"] == "stop", record
        assert valid(record["text"]), record["text"]
