"""Bad input on the command line and in the Python API: one clear line, exit status 2.

The CLI runs in-process on a small Markov model (text prompts are token ids, "1 2 3") or
with model loading forbidden, so that every test here takes milliseconds, not a model load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from decodekit import hookimpl
from decodekit.builtin.greedy import ArgmaxVerifier
from decodekit.cli import app, handle_errors, parse_set
from decodekit.config import StrategyParams
from decodekit.engine import Engine
from decodekit.errors import ConfigError, ModelLoadError, PromptError
from decodekit.settings import merge_config, validate_config
from decodekit.strategy import Guarantee, Pipeline, Strategy
from decodekit.testing import MarkovModel, registered_plugin, tiny_llama

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def invoke(*args: str, **kwargs: Any) -> Any:
    return runner.invoke(app, list(args), **kwargs)


def refused(result: Any) -> str:
    """The error line of a refused command (asserting it is one line, status 2)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a command loads a model: its errors must come before that."""

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr("decodekit.engine.load_model", forbidden)


@pytest.fixture
def markov(monkeypatch: pytest.MonkeyPatch) -> MarkovModel:
    """Commands load this model (prompts are space-separated token ids)."""
    model = MarkovModel.random(16, seed=0)
    monkeypatch.setattr("decodekit.engine.load_model", lambda *args, **kwargs: model)
    return model


class OptionsParams(StrategyParams):
    temperature: float = 1.0
    options: dict[str, int] = {}


class OptionsPlugin:
    """A greedy strategy ``with_options`` that records the parameters it was built with."""

    def __init__(self) -> None:
        self.built: list[OptionsParams] = []

    @hookimpl
    def register_strategies(self, register: Any) -> None:
        def build(params: OptionsParams, context: Any) -> Pipeline:
            self.built.append(params)
            return Pipeline(verifier=ArgmaxVerifier())

        register(Strategy(
            name="with_options", summary="Greedy with a table of options (tests only).",
            params=OptionsParams, guarantee=Guarantee.GREEDY_EQUIVALENT,
            components=(("verifier", "argmax"),), build=build,
        ))


@pytest.fixture
def options_plugin() -> Any:
    plugin = OptionsPlugin()
    with registered_plugin(plugin, name="test-with-options"):
        yield plugin


# ------------------------------------------------------------------ 1. unreadable files

FILE_FLAGS = [
    ("--config", "config", ".toml"),
    ("--prompts-file", "prompts", ".txt"),
    ("--schema", "--schema", ".json"),
    ("--grammar", "--grammar", ".lark"),
]


@pytest.mark.parametrize(("flag", "kind", "suffix"), FILE_FLAGS)
def test_file_that_is_not_utf8_names_file_byte_and_offset(
    tmp_path: Path, no_model: None, flag: str, kind: str, suffix: str
) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(b"ab\xffcd\n")
    line = refused(invoke("run", "Hi", flag, str(path)))
    assert line == f"error: {kind} file {path} is not UTF-8 text (byte 0xff at offset 2)"


@pytest.mark.parametrize(("flag", "kind", "suffix"), FILE_FLAGS)
def test_file_that_is_a_directory_is_refused(
    tmp_path: Path, no_model: None, flag: str, kind: str, suffix: str
) -> None:
    folder = tmp_path / f"folder{suffix}"
    folder.mkdir()
    assert refused(invoke("run", "Hi", flag, str(folder))) == (
        f"error: {kind} file {folder} is a directory"
    )


def test_file_that_is_not_readable_is_refused(
    tmp_path: Path, no_model: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chmod 000 means nothing to root, so the permission error is simulated
    locked = tmp_path / "locked.toml"
    locked.write_text('strategy = "greedy"\n')
    read_bytes = Path.read_bytes

    def guarded(self: Path) -> bytes:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", guarded)
    assert refused(invoke("run", "Hi", "--config", str(locked))) == (
        f"error: config file {locked} is not readable (permission denied)"
    )


def test_utf8_files_with_a_byte_order_mark_still_load(tmp_path: Path) -> None:
    from decodekit.settings import load_config_file

    path = tmp_path / "bom.toml"
    path.write_bytes(b'\xef\xbb\xbfstrategy = "sample"\n')
    assert load_config_file(path).generation.strategy == "sample"


# ---------------------------------------------------------- 2. prompt bytes not UTF-8


def test_prompt_argument_that_is_not_utf8_is_refused(no_model: None) -> None:
    # this is how Linux hands Python the argument bytes b"ab\xff" (surrogate escape)
    assert refused(invoke("run", "ab\udcff")) == (
        "error: the PROMPT argument is not valid UTF-8 text (byte 0xff at position 2)"
    )


def test_prompt_bytes_on_a_real_command_line_are_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "decodekit.cli", "run", b"ab\xff\xfe"],
        capture_output=True, timeout=120, cwd=ROOT,
    )
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr
    assert stderr.strip() == (
        "error: the PROMPT argument is not valid UTF-8 text (byte 0xff at position 2)"
    )


def test_python_api_refuses_a_prompt_with_lone_surrogates() -> None:
    with pytest.raises(PromptError, match=r"prompt 1 is not valid UTF-8 text \(byte 0xff"):
        Engine(MarkovModel.random(8)).generate(["1 2", "3\udcff"], max_new_tokens=1)


# ------------------------------------------------------------ 3. dotted --set keys


def test_parse_set_dotted_keys_build_and_merge_tables() -> None:
    params = parse_set([
        "drafter_options.layers=4", "temperature=0.5", "drafter_options.name=x",
        'drafter_options={"extra": true}', "a.b.c=[1]",
    ])
    assert params == {
        "drafter_options": {"layers": 4, "name": "x", "extra": True},
        "temperature": 0.5,
        "a": {"b": {"c": [1]}},
    }


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["a=1", "a.b=2"], "--set 'a.b=2': a is already set to 1, not a table"),
        (["a..b=1"], "--set expects KEY=VALUE or TABLE.KEY=VALUE, got 'a..b=1'"),
        (["a.=1"], "--set expects KEY=VALUE or TABLE.KEY=VALUE, got 'a.=1'"),
    ],
)
def test_parse_set_dotted_key_errors(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_set(items)
    assert str(info.value) == message


def test_dotted_set_merges_with_the_config_file_table(
    tmp_path: Path, markov: MarkovModel, options_plugin: OptionsPlugin
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'strategy = "with_options"\n[params]\ntemperature = 0.5\n'
        "[params.options]\nkept = 1\nreplaced = 2\n"
    )
    result = invoke("run", "1 2 3", "--config", str(config), "--max-new-tokens", "2",
                    "--set", "options.replaced=20", "--set", "options.added=3", "--json")
    assert result.exit_code == 0, result.output
    (params,) = options_plugin.built
    assert params.options == {"kept": 1, "replaced": 20, "added": 3}
    assert params.temperature == 0.5


def test_dotted_set_of_an_unknown_option_names_its_path(
    no_model: None, options_plugin: OptionsPlugin
) -> None:
    result = invoke("run", "Hi", "--strategy", "with_options", "--set", "options.x=oops")
    assert result.exit_code == 2
    assert "params.options.x" in result.stderr


def test_set_help_documents_the_dotted_form() -> None:
    boxed = invoke("run", "--help").stdout
    help_text = " ".join(boxed.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())
    assert "--set drafter_options.layers=4" in help_text


# ------------------------------------------- 4. --config with --strategy of another


def test_config_params_the_new_strategy_does_not_take_are_refused(no_model: None) -> None:
    line = refused(invoke("run", "Hi", "--config", "examples/sample.toml",
                          "--strategy", "greedy"))
    assert line == (
        "error: params repetition_penalty, temperature, top_p of the config file "
        "examples/sample.toml (strategy 'sample') are not parameters of strategy 'greedy'; "
        "remove them or keep strategy 'sample'"
    )


def test_config_params_the_new_strategy_takes_carry_over(
    tmp_path: Path, markov: MarkovModel, options_plugin: OptionsPlugin
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('strategy = "sample"\n[params]\ntemperature = 0.7\n')
    result = invoke("run", "1 2", "--config", str(config), "--strategy", "with_options",
                    "--max-new-tokens", "2")
    assert result.exit_code == 0, result.output
    assert options_plugin.built[0].temperature == 0.7


def test_python_api_applies_the_same_rule(options_plugin: OptionsPlugin) -> None:
    engine = Engine(MarkovModel.random(8))
    config = {"strategy": "sample", "params": {"temperature": 0.7, "top_p": 0.9}}
    with pytest.raises(ConfigError, match=r"params top_p of the config \(strategy 'sample'\)"):
        engine.generate("1 2", config, strategy="with_options", max_new_tokens=1)
    # of a validated config only the parameters that were given count, not the defaults
    validated = validate_config({"strategy": "sample", "params": {"temperature": 0.7}})
    engine.generate("1 2", validated, strategy="with_options", max_new_tokens=1)
    assert options_plugin.built[-1].temperature == 0.7
    assert merge_config(validated, {"strategy": "sample"}).params.temperature == 0.7


# ------------------------------------- 5. stdin prompts, empty stop strings, closed stdout


def test_prompts_file_dash_reads_standard_input(markov: MarkovModel) -> None:
    result = invoke("run", "--prompts-file", "-", "--max-new-tokens", "2", "--json",
                    input="1 2\n\n3 4 5\n")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [len(r["token_ids"]) for r in records] == [2, 2]


def test_standard_input_that_is_not_utf8_is_refused(no_model: None) -> None:
    result = invoke("run", "--prompts-file", "-", input=b"1 2\n\xfe\n")
    assert refused(result) == (
        "error: prompts from standard input is not UTF-8 text (byte 0xfe at offset 4)"
    )


def test_blank_prompts_file_is_refused(tmp_path: Path, no_model: None) -> None:
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    assert refused(invoke("run", "--prompts-file", str(blank))) == (
        f"error: --prompts-file {blank} holds no prompts (every line is blank)"
    )


def test_empty_stop_string_is_refused(tmp_path: Path, no_model: None) -> None:
    assert refused(invoke("run", "Hi", "--stop", "")) == (
        "error: --stop: a stop string must not be empty (it would match at once)"
    )
    with pytest.raises(ConfigError, match=r"stop\.1: String should have at least 1 character"):
        validate_config({"stop": ["\n", ""]})
    config = tmp_path / "c.yaml"
    config.write_text('stop: [""]\n')
    result = invoke("run", "Hi", "--config", str(config))
    assert result.exit_code == 2 and "stop.0: String should have at least 1" in result.stderr


def test_broken_pipe_ends_quietly_with_status_1() -> None:
    @handle_errors
    def writer() -> None:
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(typer.Exit) as info:
        writer()
    assert info.value.exit_code == 1


def test_closed_stdout_exits_nonzero_without_a_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -0`: the reader is gone before anything is written
    try:
        result = subprocess.run(
            [sys.executable, "-m", "decodekit.cli", "strategies"],
            stdout=write_end, stderr=subprocess.PIPE, timeout=120, cwd=ROOT,
        )
    finally:
        os.close(write_end)
    assert result.returncode != 0
    assert result.stderr.decode() == ""


# ---------------------------------------------------- 6. flags checked before the load


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "Hi", "--strategy", "nope"], "Unknown strategy 'nope'."),
        (["run", "Hi", "--strategy", "sample", "--set", "temperature=-1"],
         "params.temperature: Input should be greater than or equal to 0"),
        (["run", "Hi", "--set", "temperature=0.5"], "params.temperature: Extra inputs"),
        (["run", "Hi", "--max-new-tokens", "0"], "max_new_tokens: Input should be greater"),
        (["run", "Hi", "--regex", "a\udcff"], "--regex is not valid UTF-8 text"),
        (["bench", "--strategy", "gredy"], "--strategy gredy: Unknown strategy 'gredy'."),
        (["bench", "--strategy", "sample:temperature=-1"],
         "--strategy sample(temperature=-1): Invalid config: params.temperature"),
        (["bench", "--strategy", "sample:seed=3"],
         "--strategy sample(seed=3): seed is a bench option, not a strategy parameter"),
    ],
)
def test_bad_flags_fail_before_the_model_loads(
    no_model: None, args: list[str], message: str
) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())


def test_unknown_component_names_fail_before_the_model_loads(no_model: None) -> None:
    with pytest.raises(ConfigError, match="Unknown cache 'nope'"):
        merge_config(None, {"cache": "nope"})
    with pytest.raises(ConfigError, match="Unknown constraint 'nope'"):
        merge_config(None, {"constraint": {"type": "nope"}})


# ------------------------------------------------------- 7. bench output location


def test_bench_without_out_writes_to_a_new_temporary_folder(
    tmp_path: Path, markov: MarkovModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    tracked = ROOT / "benchmarks" / "results" / "bench.md"
    before = tracked.read_bytes() if tracked.exists() else None
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("1 2 3\n")
    result = invoke("bench", "--strategy", "greedy", "--prompts-file", str(prompts),
                    "--max-new-tokens", "2")
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.glob("decodekit-bench-*")
    assert "| greedy |" in (folder / "bench.md").read_text()
    assert f"wrote {folder / 'bench.md'} and {folder / 'bench.png'}" in result.stderr
    assert (tracked.read_bytes() if tracked.exists() else None) == before


def test_bench_without_matplotlib_writes_the_table_and_says_why_no_chart(
    tmp_path: Path, markov: MarkovModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("decodekit.bench.chart_available", lambda: False)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("1 2 3\n")
    out = tmp_path / "b"
    result = invoke("bench", "--strategy", "greedy", "--prompts-file", str(prompts),
                    "--max-new-tokens", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "| greedy |" in (tmp_path / "b.md").read_text()
    assert not (tmp_path / "b.png").exists()
    assert "no chart: it needs matplotlib, pip install 'decodekit[bench]'" in result.stderr


def test_bench_out_that_cannot_be_created_fails_first(tmp_path: Path, no_model: None) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = refused(invoke("bench", "--strategy", "greedy", "--out", str(blocker / "x" / "b")))
    assert line.startswith(f"error: --out {blocker / 'x' / 'b'}: cannot create {blocker / 'x'}")


# ------------------------------------------------------ 8. schema of config files


def _example_files() -> list[Path]:
    return sorted(
        p for p in (ROOT / "examples").iterdir() if p.suffix in (".toml", ".yaml", ".yml", ".json")
    )


def _parse(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        return tomllib.loads(text)
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def test_every_example_validates_against_the_printed_schema() -> None:
    schema = json.loads(invoke("config-schema").stdout)
    examples = _example_files()
    assert examples and any("model" in _parse(p) for p in examples)
    for path in examples:
        data = _parse(path)
        jsonschema.validate(data, schema)
        one = json.loads(invoke("config-schema", data.get("strategy", "greedy")).stdout)
        jsonschema.validate(data, one)


@pytest.mark.parametrize(
    "data",
    [
        {"strategy": "sample", "colour": "red"},
        {"strategy": "sample", "model": {"dtype": "int8"}},
        {"strategy": "sample", "model": {"device": "cuda"}},
        {"strategy": "greedy", "params": {"temperature": 0.5}},
        {"strategy": "sample", "stop": [""]},
    ],
)
def test_printed_schema_still_refuses_bad_files(data: dict[str, Any]) -> None:
    schema = json.loads(invoke("config-schema").stdout)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


# ------------------------------------------- 9. model objects and tensor prompts in the API


def test_engine_wraps_a_transformers_model_object() -> None:
    wrapped = tiny_llama()
    direct = Engine(wrapped).generate([1, 5, 7], max_new_tokens=4)
    engine = Engine(wrapped.hf)  # the bare transformers LlamaForCausalLM
    assert type(engine.model).__name__ == "HFModel"
    assert engine.generate([1, 5, 7], max_new_tokens=4).token_ids == direct.token_ids


def test_engine_passes_the_tokenizer_keyword_on() -> None:
    tokenizer = SimpleNamespace(eos_token_id=2, chat_template=None)
    engine = Engine(tiny_llama().hf, tokenizer=tokenizer)
    assert engine.model.tokenizer is tokenizer


@pytest.mark.parametrize(
    ("model", "tokenizer", "error", "message"),
    [
        (42, None, ModelLoadError, "got int"),
        (object(), None, ModelLoadError, "got object"),
        ("some/dir", object(), ConfigError, "a model directory brings its own tokenizer"),
        (MarkovModel.random(4), object(), ConfigError, "MarkovModel already has its tokenizer"),
    ],
)
def test_engine_refuses_what_is_not_a_model(
    model: Any, tokenizer: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Engine(model, tokenizer=tokenizer)


def test_tensor_prompts() -> None:
    engine = Engine(MarkovModel.random(16, seed=1))
    one = engine.generate(torch.tensor([1, 2, 3]), max_new_tokens=3)
    assert one.token_ids == engine.generate([1, 2, 3], max_new_tokens=3).token_ids
    rows = engine.generate(torch.tensor([[1, 2, 3], [4, 5, 6]]), max_new_tokens=3)
    assert [c.prompt_index for c in rows] == [0, 1]
    assert rows[1].token_ids == engine.generate([4, 5, 6], max_new_tokens=3).token_ids
    assert engine.request(torch.tensor([[1, 2], [3, 4]])).prompt_ids == [[1, 2], [3, 4]]
    chunks = list(engine.stream(torch.tensor([1, 2]), max_new_tokens=2))
    assert sum(len(c.token_ids) for c in chunks) == 2
    mixed = engine.generate([torch.tensor([1, 2]), [3]], max_new_tokens=1)
    assert len(mixed) == 2


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        (torch.tensor([1.0, 2.0]), "prompts: a tensor of token ids needs an integer dtype"),
        (torch.ones(1, 2, 2, dtype=torch.long), "must be 1-D .* or 2-D .* got 3-D"),
        (torch.tensor(3), "got 0-D"),
        ([torch.ones(2, 2, dtype=torch.long)], "prompt 0: a tensor prompt must be 1-D"),
        ([[1, 2.5]], "prompt 0: token ids must be integers, got float"),
        (3.5, "prompts: expected a string, token ids"),
    ],
)
def test_bad_tensor_or_token_prompts(prompts: Any, message: str) -> None:
    engine = Engine(MarkovModel.random(8))
    with pytest.raises(PromptError, match=message):
        engine.generate(prompts, max_new_tokens=1)
