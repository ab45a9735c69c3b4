"""``decodekit components``: every selectable component, with its plugin and options."""

import json

import pytest
from pydantic import Field
from typer.testing import CliRunner

import decodekit
from decodekit import cli
from decodekit.builtin.greedy import ArgmaxVerifier
from decodekit.config import StrategyParams
from decodekit.contracts import Drafter
from decodekit.testing import registered_plugin


class EchoOptions(StrategyParams):
    """Options of ``echo``."""

    span: int = Field(3, ge=1, description="Tokens to echo.")


class EchoDrafter(Drafter):
    """Drafts the last tokens again.

    A second paragraph that the listing leaves out.
    """

    name = "echo"
    Options = EchoOptions

    def draft(self, view):
        return None


class EchoPlugin:
    @decodekit.hookimpl
    def register_drafters(self, register):
        register(EchoDrafter)


@pytest.fixture
def echo():
    with registered_plugin(EchoPlugin(), name="dk-test-echo"):
        yield


def invoke(*args):
    return CliRunner().invoke(cli.app, ["components", *args])


def test_json_lists_every_family_with_plugin_summary_and_options(echo):
    result = invoke("--json")
    assert result.exit_code == 0, result.output
    rows = {(row["family"], row["name"]): row for row in json.loads(result.stdout)}
    assert rows[("drafters", "echo")] == {
        "family": "drafters",
        "name": "echo",
        "plugin": "dk-test-echo",
        "summary": "Drafts the last tokens again.",
        "options": EchoOptions.model_json_schema()["properties"],
    }
    argmax = rows[("verifiers", "argmax")]
    assert argmax["plugin"] == "decodekit.builtin.greedy" and argmax["options"] == {}
    assert argmax["summary"] == ArgmaxVerifier.__doc__.splitlines()[0]
    families = {family for family, _ in rows}
    assert {"drafters", "verifiers", "samplers", "caches"} <= families
    assert ("samplers", "penalties") in rows and ("caches", "full") in rows


def test_family_filter(echo):
    for family in ("drafters", "drafter"):
        rows = json.loads(invoke("--family", family, "--json").stdout)
        assert {row["family"] for row in rows} == {"drafters"}
        assert "echo" in {row["name"] for row in rows}


def test_text_table(echo, monkeypatch):
    monkeypatch.setattr(cli.out, "_width", 240)  # no wrapped or truncated cells
    result = invoke("--family", "drafters")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if " echo " in line)
    for cell in ("drafters", "dk-test-echo", "span", "Drafts the last tokens again."):
        assert cell in line
    assert "verifiers" not in result.stdout


def test_unknown_family_is_one_error_listing_the_families():
    result = invoke("--family", "nope")
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())  # the error console wraps long lines
    assert message == (
        "error: Unknown component family 'nope'; the families are drafters, verifiers, "
        "samplers, caches, constraints"
    )
