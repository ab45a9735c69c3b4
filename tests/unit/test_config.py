import json

import pytest

from decodekit.config import ModelSettings
from decodekit.errors import ConfigError, UnknownComponentError
from decodekit.settings import generation_config_schema, load_config_file, validate_config


def test_validates_in_one_step_with_the_strategy_model():
    config = validate_config(
        {"strategy": "sample", "params": {"temperature": 0.7, "top_p": 0.9}, "seed": 3}
    )
    assert type(config.params).__name__ == "SampleParams"
    assert config.params.temperature == 0.7
    assert config.seed == 3 and config.max_new_tokens == 128


def test_unknown_strategy_lists_installed_and_suggests():
    with pytest.raises(UnknownComponentError) as info:
        validate_config({"strategy": "sampel"})
    message = str(info.value)
    assert "Did you mean 'sample'?" in message
    assert "greedy" in message and "sample" in message


def test_invalid_value_names_the_field_path():
    with pytest.raises(ConfigError, match=r"params\.temperature: .*greater than or equal to 0"):
        validate_config({"strategy": "sample", "params": {"temperature": -1}})
    with pytest.raises(ConfigError, match=r"max_new_tokens: .*greater than or equal to 1"):
        validate_config({"strategy": "greedy", "max_new_tokens": 0})


def test_unknown_fields_are_rejected():
    with pytest.raises(ConfigError, match=r"params\.temprature: Extra inputs are not permitted"):
        validate_config({"strategy": "sample", "params": {"temprature": 0.5}})
    with pytest.raises(ConfigError, match=r"colour: Extra inputs"):
        validate_config({"strategy": "greedy", "colour": "red"})
    with pytest.raises(ConfigError, match=r"params\.temperature: Extra inputs"):
        validate_config({"strategy": "greedy", "params": {"temperature": 0.5}})


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.toml", 'strategy = "sample"\nmax_new_tokens = 9\n[params]\ntop_k = 5\n[model]\ndtype = "bfloat16"\n'),
        ("c.yaml", "strategy: sample\nmax_new_tokens: 9\nparams:\n  top_k: 5\nmodel:\n  dtype: bfloat16\n"),
        ("c.json", json.dumps({"strategy": "sample", "max_new_tokens": 9, "params": {"top_k": 5},
                               "model": {"dtype": "bfloat16"}})),
    ],
)
def test_load_each_format(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    loaded = load_config_file(path)
    assert loaded.generation.strategy == "sample"
    assert loaded.generation.params.top_k == 5
    assert loaded.generation.max_new_tokens == 9
    assert loaded.model == ModelSettings(dtype="bfloat16")


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("bad.toml", 'strategy = "sample"\nmax_new_tokens = \n', 2),
        ("bad.yaml", "strategy: sample\nparams:\n  top_k: [1\n", 4),
        ("bad.json", '{\n  "strategy": "sample",\n  "seed": ,\n}', 3),
    ],
)
def test_syntax_error_names_file_and_line(tmp_path, name, text, line):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"{name}:{line}: \w+ syntax error"):
        load_config_file(path)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config_file(tmp_path / "missing.toml")
    (tmp_path / "c.ini").write_text("x")
    with pytest.raises(ConfigError, match="unsupported config format"):
        load_config_file(tmp_path / "c.ini")
    (tmp_path / "c.toml").write_text('strategy = "sample"\n[params]\ntop_p = 2\n')
    with pytest.raises(ConfigError, match=r"(?s)c\.toml: .*params\.top_p: Input should be less than"):
        load_config_file(tmp_path / "c.toml")
    (tmp_path / "m.toml").write_text('[model]\ndtype = "int8"\n')
    with pytest.raises(ConfigError, match=r"model\.dtype"):
        load_config_file(tmp_path / "m.toml")


def test_example_config_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for path in sorted((root / "examples").glob("*.toml")):
        load_config_file(path)


def test_schema_for_one_strategy_and_for_all():
    schema = generation_config_schema("sample")
    params = schema["$defs"]["SampleParams"]["properties"]
    assert {"temperature", "top_k", "top_p", "min_p", "typical_p"} <= set(params)
    assert schema["properties"]["strategy"]["const"] == "sample"
    everything = generation_config_schema()
    assert everything["discriminator"]["propertyName"] == "strategy"
    assert {"greedy", "sample"} <= set(everything["discriminator"]["mapping"])
    with pytest.raises(UnknownComponentError):
        generation_config_schema("nope")
