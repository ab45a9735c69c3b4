"""``decodekit bench --suite``: the matrix runner, its tables, its load check, its CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import decodekit.suite as suite
from decodekit.bench import StrategySpec
from decodekit.cli import app
from decodekit.engine import Engine
from decodekit.errors import ConfigError
from decodekit.testing import tiny_llama

PROMPTS = ((1, 5, 9, 4), (1, 7, 3, 3, 8, 2, 6))  # mixed lengths: transformers pads left

GREEDY = suite.Workload(
    "greedy, tiny", PROMPTS, 6,
    (suite.Contender("transformers greedy", transformers={"do_sample": False}),
     suite.Contender("decodekit greedy", strategy=StrategySpec("greedy")),
     suite.Contender("decodekit prompt lookup", strategy=StrategySpec(
         "speculative", {"drafter": "prompt_lookup", "temperature": 0.0}))),
    goal="≥ 1.05× transformers",
)
MISSING = suite.Workload("not installed", PROMPTS[:1], 4, (
    suite.Contender("decodekit greedy", strategy=StrategySpec("greedy")),
    suite.Contender("ghost", strategy=StrategySpec("no_such_strategy")),
    suite.Contender("odd constraint", strategy=StrategySpec(
        "greedy", {"constraint": {"type": "no_such_constraint"}})),
))


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(tiny_llama())


def test_every_contender_runs_and_tokens_are_counted_alike(engine):
    notes: list[str] = []
    results = suite.run_suite(engine, [GREEDY, MISSING], repeats=2, progress=notes.append)
    assert [(r.workload.name, r.contender.label) for r in results] == [
        ("greedy, tiny", "transformers greedy"), ("greedy, tiny", "decodekit greedy"),
        ("greedy, tiny", "decodekit prompt lookup"), ("not installed", "decodekit greedy")]
    assert "skipped ghost: no_such_strategy not installed" in notes
    assert "skipped odd constraint: constraint type no_such_constraint not installed" in notes
    hf, greedy, lookup = results[:3]
    assert all(len(r.rates) == 2 and min(r.rates) > 0 for r in results)
    # greedy in float32 on the same model: transformers and decodekit make the same tokens
    assert hf.new_tokens == greedy.new_tokens == lookup.new_tokens
    assert hf.tokens_per_forward is None  # transformers' forwards are not counted
    assert greedy.tokens_per_forward == pytest.approx(1.0)
    assert lookup.tokens_per_forward >= 1.0


def test_a_bad_contender_fails_before_anything_runs(engine, monkeypatch):
    calls: list[Any] = []
    monkeypatch.setattr(engine, "generate", lambda *a, **k: calls.append(a))
    bad = suite.Workload("bad", PROMPTS, 4, (
        suite.Contender("greedy", strategy=StrategySpec("greedy")),
        suite.Contender("bad sample", strategy=StrategySpec("sample", {"temperature": -1})),
    ))
    with pytest.raises(ConfigError, match="temperature"):
        suite.run_suite(engine, [bad], repeats=1)
    assert calls == []


def test_markdown_has_the_machine_the_load_and_a_table_per_workload(engine):
    results = suite.run_suite(engine, [GREEDY], repeats=1)
    text = suite.suite_markdown(results, header=suite.machine_summary(engine.model, "float32"),
                                load_before=0.3, load_after=1.9, under_load=False, repeats=1)
    assert "torch 2." in text and "transformers " in text and "float32" in text
    assert "load average 0.30 before, 1.90 after" in text
    assert "**greedy, tiny** (goal: ≥ 1.05× transformers)" in text
    rows = [line for line in text.splitlines() if line.startswith("| decodekit greedy |")]
    assert len(rows) == 1 and rows[0].split("|")[4].strip() == "1.00"  # tokens per forward
    assert "Measured under load" not in text
    loaded = suite.suite_markdown(results, header="h", load_before=5.0, load_after=5.0,
                                  under_load=True, repeats=1)
    assert "**Measured under load** (load average 5.00 at the start)" in loaded


def test_charts_are_pngs(engine, tmp_path):
    results = suite.run_suite(engine, [GREEDY], repeats=1)
    paths = suite.write_suite_charts(results, tmp_path / "s", title="t")
    assert [p.name for p in paths] == ["s.png", "s-forwards.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_a_loaded_machine_is_refused_unless_allowed(monkeypatch):
    monkeypatch.setattr("os.getloadavg", lambda: (3.5, 3.0, 2.0))
    with pytest.raises(ConfigError, match=r"load average is 3.50, above --max-load 1"):
        suite.check_load(1.0, allow=False)
    assert suite.check_load(1.0, allow=True) == 3.5


def test_the_named_suites_cover_the_matrix():
    names = [w.name for w in suite.SUITES["full"]]
    for expected in ("greedy, batch 1, 128", "greedy, batch 8 mixed, 128", "sample, batch 8",
                     "greedy, batch 1, 1024", "beam 4", "prompt lookup, code edit",
                     "token recycling", "contrastive", "superposed", "constrained (JSON"):
        assert any(n.startswith(expected) for n in names), expected
    assert len(suite.MIXED) == 8 and len({len(p) for p in suite.MIXED}) > 4


def test_only_selects_workloads_by_name():
    full = suite.SUITES["full"]
    assert [w.name for w in suite.select_workloads(full, "BEAM")] == ["beam 4, batch 1, 64 tokens"]
    assert suite.select_workloads(full, None) == full
    with pytest.raises(ConfigError, match=r"--only 'nothing' matches no workload; the "
                                          r"workloads are: greedy, batch 1, 128 tokens; "):
        suite.select_workloads(full, "nothing")


# ---------------------------------------------------------------------------- CLI

runner = CliRunner()


def refused(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def no_model(monkeypatch):
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr("decodekit.engine.load_model", forbidden)


def test_cli_unknown_suite_lists_the_suites(no_model):
    line = refused(runner.invoke(app, ["bench", "--suite", "huge"]))
    assert line == "error: unknown suite 'huge'; the suites are: quick, full"


def test_cli_only_that_matches_nothing_is_refused(no_model):
    line = refused(runner.invoke(app, ["bench", "--suite", "quick", "--only", "zzz"]))
    assert line.startswith("error: --only 'zzz' matches no workload; the workloads are: ")


def test_cli_suite_with_strategies_is_refused(no_model):
    line = refused(runner.invoke(app, ["bench", "--suite", "quick", "--strategy", "greedy"]))
    assert "--suite runs its own strategies and prompts" in line


def test_cli_refuses_a_loaded_machine_before_loading_the_model(no_model, monkeypatch):
    monkeypatch.setattr("os.getloadavg", lambda: (9.0, 9.0, 9.0))
    line = refused(runner.invoke(app, ["bench", "--suite", "quick", "--max-load", "1"]))
    assert "load average is 9.00, above --max-load 1" in line and "--allow-load" in line


def test_cli_runs_a_suite_and_writes_tables_and_charts(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("decodekit.engine.load_model", lambda *a, **k: tiny_llama())
    monkeypatch.setitem(suite.SUITES, "quick", (GREEDY,))
    monkeypatch.setattr("os.getloadavg", lambda: (0.1, 0.1, 0.1))
    out = tmp_path / "suite"
    result = runner.invoke(app, ["bench", "--suite", "quick", "--repeats", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| decodekit greedy |" in (tmp_path / "suite.md").read_text()
    assert (tmp_path / "suite.png").exists() and (tmp_path / "suite-forwards.png").exists()
    assert f"wrote {tmp_path / 'suite.md'}" in result.stderr
