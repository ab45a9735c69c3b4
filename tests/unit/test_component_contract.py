"""Registered components are built one way: ``factory(options, context=...)`` from a spec."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import decodekit
from decodekit.builtin import processors as builtin_processors
from decodekit.errors import ConfigError
from decodekit.settings import merge_config
from decodekit.testing import MarkovModel

PROMPTS = [[0, 1, 0, 1], [2, 2, 3]]


@pytest.fixture
def engine():
    return decodekit.Engine(MarkovModel.random(6, seed=2, spread=1.5))


def test_a_processor_with_options_from_the_config(engine):
    spec = {"name": "penalties", "options": {"repetition_penalty": 3.0}}
    built = engine.request(PROMPTS, strategy="greedy", processors=[spec])
    (processor,) = built.pipeline.processors
    assert processor.repetition_penalty == 3.0
    configured = engine.generate(PROMPTS, strategy="greedy", processors=[spec],
                                 max_new_tokens=10)
    # the sample strategy's own penalties at temperature 0: the same processor, the same tokens
    own = engine.generate(PROMPTS, strategy="sample", temperature=0.0, repetition_penalty=3.0,
                          max_new_tokens=10)
    plain = engine.generate(PROMPTS, strategy="greedy", max_new_tokens=10)
    assert [c.token_ids for c in configured] == [c.token_ids for c in own]
    assert [c.token_ids for c in configured] != [c.token_ids for c in plain]


def test_invalid_options_name_the_field_before_any_model_work():
    with pytest.raises(ConfigError) as info:
        merge_config(None, {"processors": ["penalties", {"name": "penalties",
                                                         "options": {"repetition_penalty": 0}}]})
    assert str(info.value).startswith("processors.1.options.repetition_penalty: ")
    with pytest.raises(ConfigError, match=r"processors\.0\.options\.colour: Extra inputs"):
        merge_config(None, {"processors": [{"name": "penalties", "options": {"colour": 1}}]})


def test_options_for_a_component_without_options_are_refused():
    with pytest.raises(ConfigError) as info:
        merge_config(None, {"cache": {"name": "full", "options": {"window": 8}}})
    assert str(info.value) == "cache.options.cache 'full' takes no options, got window"


def test_unknown_component_names_list_the_installed_ones():
    with pytest.raises(decodekit.UnknownComponentError, match="penalties"):
        merge_config(None, {"processors": [{"name": "nope"}]})


def test_a_processor_with_every_penalty_off_costs_nothing(engine, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("an inactive penalties processor counted tokens")

    monkeypatch.setattr(builtin_processors, "TokenCounts", fail)
    monkeypatch.setattr(builtin_processors, "node_paths", fail)
    plain = engine.generate(PROMPTS, strategy="greedy", max_new_tokens=6)
    idle = engine.generate(PROMPTS, strategy="greedy", processors=["penalties"],
                           max_new_tokens=6)
    assert [c.token_ids for c in idle] == [c.token_ids for c in plain]


@pytest.mark.parametrize("family", ["drafters", "samplers", "caches"])
def test_installed_components_follow_the_contract(family):
    """A name; options, when a component takes any, as a pydantic model forbidding extras."""
    registry = decodekit.get_registry()
    table = getattr(registry, family)
    assert table, f"no {family} installed"
    for name, entry in table.items():
        assert entry.obj.name == name
        model = getattr(entry.obj, "Options", None)
        if family == "drafters":
            assert model is not None, f"drafter {name!r} has no Options"
        if model is not None:
            assert isinstance(model, type) and issubclass(model, BaseModel), name
            assert model.model_config.get("extra") == "forbid", name


def test_the_kit_builds_a_drafter_written_to_the_protocol():
    """A drafter written to the drafter protocol is tested by the kit as strategies build it."""
    import importlib.util
    from pathlib import Path

    from decodekit.testing import assert_greedy_equivalent, assert_lossless, registered_plugin

    path = Path(__file__).resolve().parents[2] / "examples" / "drafter" / "echo_drafter.py"
    spec = importlib.util.spec_from_file_location("echo_drafter_kit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with registered_plugin(module, name="echo-kit"):
        assert_greedy_equivalent(drafter="echo", verifier="argmax")
        assert_greedy_equivalent(drafter=module.EchoDrafter, verifier="argmax")
        assert_lossless(drafter="echo", verifier="rejection_tree", temperature=0.9,
                        samples=2000)
