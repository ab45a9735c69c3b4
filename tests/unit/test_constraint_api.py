"""How constraints are given: pydantic models, mappings, CLI flags."""

import pytest
from pydantic import BaseModel

from decodekit.cli import constraint_option
from decodekit.errors import ConfigError
from decodekit.settings import constraint_from


class Person(BaseModel):
    name: str
    age: int


def test_pydantic_model_becomes_a_json_schema_constraint():
    spec, output_type = constraint_from(Person)
    assert spec == {"type": "json_schema", "schema": Person.model_json_schema()}
    assert output_type is Person
    assert constraint_from({"type": "regex", "pattern": "a+"}) == ({"type": "regex", "pattern": "a+"}, None)
    assert constraint_from(None) == (None, None)
    with pytest.raises(ConfigError, match="pydantic model class"):
        constraint_from(42)


def test_cli_constraint_flags(tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object"}')
    grammar = tmp_path / "g.lark"
    grammar.write_text("start: /[a-z]+/")
    assert constraint_option(schema, None, None) == {"type": "json_schema", "schema": {"type": "object"}}
    assert constraint_option(None, "[0-9]+", None) == {"type": "regex", "pattern": "[0-9]+"}
    assert constraint_option(None, None, grammar) == {"type": "grammar", "grammar": "start: /[a-z]+/"}
    assert constraint_option(None, None, None) is None
    with pytest.raises(ConfigError, match="at most one"):
        constraint_option(schema, "x", None)
    with pytest.raises(ConfigError, match="file not found"):
        constraint_option(tmp_path / "missing.json", None, None)
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  nope\n}")
    with pytest.raises(ConfigError, match=r"bad\.json:2: JSON syntax error"):
        constraint_option(bad, None, None)
