"""The ``decodekit`` command, run in-process on the embedded model."""

import json

import pytest
from typer.testing import CliRunner

from decodekit.cli import app, parse_set

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def test_parse_set_values():
    assert parse_set(["a=1", "b=0.5", "c=true", "d=hello", "e=[1, 2]", "f="]) == {
        "a": 1, "b": 0.5, "c": True, "d": "hello", "e": [1, 2], "f": "",
    }


def test_run_json_contract():
    result = invoke("run", "Name a colour.", "--strategy", "greedy", "--max-new-tokens", "8", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(record) == {"text", "token_ids", "strategy", "stats"}
    assert record["strategy"] == "greedy"
    assert {"new_tokens", "forward_passes", "seconds", "tokens_per_second", "finish_reason"} <= set(
        record["stats"]
    )
    assert record["stats"]["new_tokens"] == len(record["token_ids"]) <= 8


def test_run_with_set_and_prompts_file(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say yes.\n\nSay no.\n")
    result = invoke("run", "--prompts-file", str(prompts), "--strategy", "sample",
                    "--set", "temperature=0.5", "--set", "top_k=20", "--seed", "1",
                    "--max-new-tokens", "5", "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert len(lines) == 2 and all(r["strategy"] == "sample" for r in lines)


def test_run_with_config_file_prints_text():
    result = invoke("run", "--config", "examples/sample.toml", "--max-new-tokens", "6", "Hi")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    assert "sample:" in result.stderr


def test_raw_skips_the_chat_template():
    chat = json.loads(invoke("run", "Hello", "--max-new-tokens", "4", "--json").stdout)
    raw = json.loads(invoke("run", "Hello", "--raw", "--max-new-tokens", "4", "--json").stdout)
    assert chat["token_ids"] != raw["token_ids"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "Hi", "--strategy", "gredy"], "Unknown strategy 'gredy'. Did you mean 'greedy'?"),
        (["run", "Hi", "--strategy", "sample", "--set", "temperature=-1"], "params.temperature"),
        (["run", "Hi", "--set", "novalue"], "--set expects KEY=VALUE"),
        (["run", "Hi", "--model", "/nonexistent/model"], "Model path not found: /nonexistent/model"),
        (["run", ""], "prompt 0 is empty"),
        (["run"], "Give a PROMPT argument or --prompts-file"),
        (["run", "Hi", "--dtype", "int4"], "--dtype must be float32 or bfloat16"),
        (["config-schema", "nope"], "Unknown strategy 'nope'"),
    ],
)
def test_errors_are_one_clear_line(args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def test_config_syntax_error_names_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('strategy = "greedy"\nmax_new_tokens = = 3\n')
    result = invoke("run", "Hi", "--config", str(bad))
    assert result.exit_code == 2
    assert "bad.toml:2: TOML syntax error" in " ".join(result.stderr.split())


def test_prompt_longer_than_context():
    result = invoke("run", "word " * 9000, "--raw")
    assert result.exit_code == 2
    assert "the model's context holds 8192 tokens" in " ".join(result.stderr.split())


def test_strategies_and_plugins_listings():
    strategies = json.loads(invoke("strategies", "--json").stdout)
    by_name = {s["name"]: s for s in strategies}
    assert by_name["greedy"]["guarantee"] == "greedy-equivalent"
    assert by_name["sample"]["guarantee"] == "lossless"
    assert "temperature" in by_name["sample"]["parameters"]
    plugins = json.loads(invoke("plugins", "--json").stdout)
    core = {p["name"]: p for p in plugins}["decodekit.builtin.greedy"]
    assert core["version"] and "register_strategies" in core["hooks"]
    assert invoke("strategies").exit_code == 0 and invoke("plugins").exit_code == 0


def test_config_schema_command():
    schema = json.loads(invoke("config-schema", "sample").stdout)
    assert schema["properties"]["strategy"]["const"] == "sample"
    assert "oneOf" in json.loads(invoke("config-schema").stdout)


@pytest.mark.smollm2
def test_bench_writes_table_and_chart(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Name a colour.\n")
    result = invoke("bench", "--strategy", "greedy", "--strategy", "sample:temperature=0.7",
                    "--prompts-file", str(prompts), "--max-new-tokens", "4",
                    "--out", str(tmp_path / "bench"))
    assert result.exit_code == 0, result.output
    table = (tmp_path / "bench.md").read_text()
    assert "| greedy |" in table and "| sample(temperature=0.7) |" in table
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_unknown_strategy_fails_before_loading():
    result = invoke("bench", "--strategy", "gredy")
    assert result.exit_code == 2
    assert "greedy" in result.output
