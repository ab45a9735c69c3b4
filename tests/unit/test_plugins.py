"""Plugin loading through entry points, environment controls and conflicts."""

import logging
import sys

import pytest

import decodekit
from decodekit import plugins
from decodekit.config import StrategyParams
from decodekit.errors import PluginConflictError
from decodekit.strategy import Guarantee, Pipeline, Strategy
from decodekit.testing import registered_plugin


@pytest.fixture
def fresh_plugins():
    """Reload plugins from scratch before and after the test."""
    plugins.reset()
    yield
    plugins.reset()



GOOD = """
from decodekit import hookimpl
from decodekit.builtin.greedy import GREEDY
import dataclasses

@hookimpl
def register_strategies(register):
    register(dataclasses.replace(GREEDY, name="{name}"))
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("dk_test_")]:
        del sys.modules[name]


def test_builtins_register_like_plugins(fresh_plugins):
    registry = decodekit.get_registry()
    assert registry.strategies["greedy"].plugin == "decodekit.builtin.greedy"
    assert registry.strategies["sample"].plugin == "decodekit.builtin.sample"
    assert registry.verifiers["argmax"].plugin == "decodekit.builtin.greedy"
    assert "penalties" in registry.samplers and "full" in registry.caches


def test_entry_point_plugin_loads_and_lists_its_version(make_distribution, fresh_plugins, site):
    make_distribution(site, "dk-test-good", "dk_test_good", GOOD.format(name="good_one"))
    assert "good_one" in decodekit.get_registry().strategies
    info = {p.name: p for p in decodekit.get_plugins()}["dk-test-good"]
    assert info.version == "1.2.3"
    assert info.hooks == ("register_strategies",)
    assert info.builtin is False


def test_a_plugin_that_fails_to_import_warns_and_others_load(make_distribution, fresh_plugins, site):
    make_distribution(site, "dk-test-broken", "dk_test_broken", "raise ImportError('no numpy 9')\n")
    make_distribution(site, "dk-test-fine", "dk_test_fine", GOOD.format(name="fine_one"))
    with pytest.warns(plugins.PluginLoadWarning, match=r"'dk-test-broken'.*no numpy 9"):
        registry = decodekit.get_registry()
    assert "fine_one" in registry.strategies and "greedy" in registry.strategies


def test_a_plugin_whose_hook_raises_warns_and_others_load(make_distribution, fresh_plugins, site):
    body = "from decodekit import hookimpl\n@hookimpl\ndef register_strategies(register):\n    raise RuntimeError('boom')\n"
    make_distribution(site, "dk-test-raises", "dk_test_raises", body)
    with pytest.warns(plugins.PluginLoadWarning, match=r"'dk-test-raises'.*boom"):
        registry = decodekit.get_registry()
    assert "greedy" in registry.strategies


def test_same_strategy_name_from_two_plugins_names_both(make_distribution, fresh_plugins, site):
    make_distribution(site, "dk-test-a", "dk_test_a", GOOD.format(name="twin"))
    make_distribution(site, "dk-test-b", "dk_test_b", GOOD.format(name="twin"))
    with pytest.raises(PluginConflictError, match=r"'twin'.*'dk-test-a'.*'dk-test-b'"):
        decodekit.get_registry()


def test_allow_list(make_distribution, fresh_plugins, site, monkeypatch):
    make_distribution(site, "dk-test-a", "dk_test_a", GOOD.format(name="from_a"))
    make_distribution(site, "dk-test-b", "dk_test_b", GOOD.format(name="from_b"))
    monkeypatch.setenv("DECODEKIT_PLUGINS", "dk-test-b")
    registry = decodekit.get_registry()
    assert "from_b" in registry.strategies and "from_a" not in registry.strategies
    assert "greedy" in registry.strategies  # built-ins always load


def test_empty_allow_list_loads_no_external_plugin(make_distribution, fresh_plugins, site, monkeypatch):
    make_distribution(site, "dk-test-a", "dk_test_a", GOOD.format(name="from_a"))
    monkeypatch.setenv("DECODEKIT_PLUGINS", "")
    assert "from_a" not in decodekit.get_registry().strategies


def test_block_list(make_distribution, fresh_plugins, site, monkeypatch):
    make_distribution(site, "dk-test-a", "dk_test_a", GOOD.format(name="from_a"))
    monkeypatch.setenv("DECODEKIT_DISABLE_PLUGINS", "dk-test-a,decodekit.builtin.sample")
    registry = decodekit.get_registry()
    assert "from_a" not in registry.strategies
    assert "sample" not in registry.strategies and "greedy" in registry.strategies


def test_trace_logs_hook_calls(fresh_plugins, monkeypatch, caplog):
    monkeypatch.setenv("DECODEKIT_TRACE", "1")
    with caplog.at_level(logging.INFO, logger="decodekit.plugins"):
        decodekit.get_registry()
    assert any("register_strategies" in r.message for r in caplog.records)


def test_load_plugins_is_idempotent(fresh_plugins):
    decodekit.load_plugins()
    before = plugins.pm.list_name_plugin()
    decodekit.load_plugins()
    assert plugins.pm.list_name_plugin() == before


def test_strategy_definition_errors():
    class Loose(StrategyParams):
        model_config = {"extra": "allow"}

    with pytest.raises(TypeError, match="must forbid extra fields"):
        Strategy("x", "", Loose, Guarantee.NONE, (), lambda p, c: Pipeline(None))
    with pytest.raises(TypeError, match="subclass of StrategyParams"):
        Strategy("x", "", dict, Guarantee.NONE, (), lambda p, c: Pipeline(None))
    with pytest.raises(ValueError, match="identifier"):
        Strategy("a b", "", StrategyParams, Guarantee.NONE, (), lambda p, c: Pipeline(None))


def test_registered_object_needs_a_name():
    class Nameless:
        @decodekit.hookimpl
        def register_samplers(self, register):
            register(object())

    with (
        pytest.warns(plugins.PluginLoadWarning, match="no 'name' attribute"),
        registered_plugin(Nameless(), name="nameless"),
    ):
        decodekit.get_registry()
