"""One decode step for all: no plugin replaces the loop through ``run_generation``."""

from __future__ import annotations

import inspect
import sys
import warnings

import pytest

import decodekit
from decodekit import hookimpl, plugins
from decodekit.errors import PluginContractError
from decodekit.testing import MarkovModel, registered_plugin


def test_only_the_builtin_runner_implements_run_generation_as_a_non_wrapper():
    decodekit.get_registry()
    impls = plugins.pm.hook.run_generation.get_hookimpls()
    runners = [i.plugin_name for i in impls if not (i.wrapper or i.hookwrapper)]
    assert runners == [plugins.LOOP_RUNNER]
    assert plugins.loop_replacements() == []


def test_no_installed_plugin_defines_run_generation():
    """Every strategy decodes in the loop: no installed plugin module defines the hook."""
    decodekit.get_registry()
    installed = [
        (name, plugin) for name, plugin in plugins.pm.list_name_plugin()
        if not name.startswith("decodekit.")
    ]
    assert {name for name, _ in installed} >= {"beam", "speculative", "superposed"}
    for name, plugin in installed:
        modules = [plugin] + [
            module for module_name, module in sys.modules.items()
            if module_name.startswith(plugin.__name__ + ".")
        ]
        for module in modules:
            assert not hasattr(module, "run_generation"), f"{name}: {module.__name__}"
            assert "def run_generation" not in inspect.getsource(module), module.__name__


class ReplacesTheLoop:
    @hookimpl
    def run_generation(self, request):
        raise AssertionError("must not run")


def test_a_plugin_replacing_the_loop_is_refused_by_name():
    engine = decodekit.Engine(MarkovModel.random(6))
    with (
        registered_plugin(ReplacesTheLoop(), name="dk-test-replacer"),
        pytest.raises(PluginContractError) as info,
    ):
        engine.generate([1, 2], strategy="greedy", max_new_tokens=2)
    assert str(info.value) == (
        "plugin 'dk-test-replacer' hook 'run_generation': must be a wrapper "
        "(@hookimpl(wrapper=True)); a plugin may wrap the decode loop but not replace it"
    )
    assert engine.generate([1, 2], strategy="greedy", max_new_tokens=2).token_ids  # gone


REPLACER = """
from decodekit import hookimpl

@hookimpl
def run_generation(request):
    return None
"""


@pytest.fixture
def fresh_plugins():
    plugins.reset()
    yield
    plugins.reset()


def test_an_installed_plugin_replacing_the_loop_fails_to_load_and_the_others_work(
    make_distribution, fresh_plugins, tmp_path, monkeypatch
):
    monkeypatch.syspath_prepend(str(tmp_path))
    make_distribution(tmp_path, "dk-loop-replacer", "dk_loop_replacer", REPLACER)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = decodekit.get_registry()
    failures = {f.name: f.error for f in plugins.failed_plugins()}
    assert failures["dk-loop-replacer"] == (
        "RuntimeError: run_generation must be a wrapper (@hookimpl(wrapper=True)); a plugin "
        "may wrap the decode loop but not replace it"
    )
    assert any("dk-loop-replacer" in str(w.message) for w in caught)
    assert "superposed" in registry.strategies and plugins.loop_replacements() == []
    sys.modules.pop("dk_loop_replacer", None)
