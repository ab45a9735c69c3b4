"""``decodekit bench`` building blocks: strategy specs, the table and the chart."""

import pytest

from decodekit.bench import BenchResult, StrategySpec, markdown_table, parse_spec, write_chart
from decodekit.errors import ConfigError


def test_parse_spec():
    assert parse_spec("greedy") == StrategySpec("greedy", {})
    spec = parse_spec("speculative:drafter=prompt_lookup,draft_length=8,adaptive=true")
    assert spec.params == {"drafter": "prompt_lookup", "draft_length": 8, "adaptive": True}
    assert spec.label == "speculative(drafter=prompt_lookup,draft_length=8,adaptive=True)"
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_spec("sample:temperature")
    with pytest.raises(ConfigError, match="NAME or NAME:key=value"):
        parse_spec(":x=1")


def results():
    return [
        BenchResult(StrategySpec("greedy"), new_tokens=100, forward_passes=100, seconds=4.0),
        BenchResult(StrategySpec("speculative", {"drafter": "x"}), new_tokens=100,
                    forward_passes=40, accepted_draft_tokens=60, seconds=2.0),
    ]


def test_markdown_table_ratios_against_the_first_row():
    table = markdown_table(results(), title="**t**")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| strategy |") and "ratio to greedy" in rows[0]
    assert rows[1].split("|")[4].strip() == "25.0" and rows[1].endswith("| 1.00x |")
    assert rows[2].split("|")[5].strip() == "0.40"  # forwards per token
    assert rows[2].split("|")[6].strip() == "1.50"  # accepted draft tokens per forward
    assert rows[2].endswith("| 2.00x |")


def test_chart_is_a_png(tmp_path):
    path = tmp_path / "chart.png"
    write_chart(results(), path, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
