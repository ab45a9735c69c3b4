"""The plugin-author tutorial (docs/tutorial.md), step by step, as a new user runs it."""

import importlib.metadata
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from decodekit.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_plugin_builds_as_a_wheel_with_its_entry_point(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT / "plugins" / "mirostat")],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("decodekit_mirostat-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "[decodekit]\nmirostat = decodekit_mirostat" in archive.read(entry_points).decode()
    assert "decodekit_mirostat/__init__.py" in names and "decodekit_mirostat/py.typed" in names


def test_the_strategy_is_listed_with_its_plugin_and_version():
    runner = CliRunner()
    listed = json.loads(runner.invoke(app, ["strategies", "--json"]).output)
    entry = next(s for s in listed if s["name"] == "mirostat")
    assert entry["plugin"] == "mirostat" and set(entry["parameters"]) == {"tau", "eta", "temperature"}
    plugins = json.loads(runner.invoke(app, ["plugins", "--json"]).output)
    installed = importlib.metadata.version("decodekit-mirostat")
    assert {"name": "mirostat", "version": installed}.items() <= next(
        p for p in plugins if p["name"] == "mirostat"
    ).items()


@pytest.mark.smollm2
def test_selected_from_a_config_file_and_run():
    result = CliRunner().invoke(
        app, ["run", "--config", str(ROOT / "examples" / "mirostat.toml"), "--json",
              "--max-new-tokens", "12", "Tell me a story."],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(next(line for line in result.output.splitlines() if line.startswith("{")))
    assert record["strategy"] == "mirostat"
    assert record["stats"]["new_tokens"] == len(record["token_ids"]) > 0
    assert record["text"].strip()
