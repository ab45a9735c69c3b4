"""One decode step for all: no plugin replaces the loop or runs a model outside its step."""

from __future__ import annotations

import ast
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


def _installed_plugin_modules():
    """Every module of every installed (non built-in) plugin package, imported."""
    import importlib
    import pkgutil

    decodekit.get_registry()
    installed = [
        (name, plugin) for name, plugin in plugins.pm.list_name_plugin()
        if not name.startswith("decodekit.")
    ]
    assert {name for name, _ in installed} >= {"beam", "speculative", "superposed"}
    for name, plugin in installed:
        yield name, plugin
        for info in pkgutil.walk_packages(plugin.__path__, plugin.__name__ + "."):
            yield name, importlib.import_module(info.name)


def test_no_installed_plugin_defines_run_generation():
    """Every strategy decodes in the loop: no installed plugin module defines the hook."""
    for name, module in _installed_plugin_modules():
        assert not hasattr(module, "run_generation"), f"{name}: {module.__name__}"
        assert "def run_generation" not in inspect.getsource(module), module.__name__


def _model_calls(tree: ast.AST) -> list[str]:
    """Calls that run a model directly: ``x.forward(...)`` or ``x.hf(...)``/``hf(...)``."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in {"forward", "hf"}:
            found.append(f"line {node.lineno}: .{func.attr}(...)")
        elif isinstance(func, ast.Name) and func.id == "hf":
            found.append(f"line {node.lineno}: hf(...)")
    return found


def test_no_installed_plugin_calls_a_model_outside_the_step():
    """Drafters that run a model drive a SubState with the loop's step function."""
    for name, module in _installed_plugin_modules():
        calls = _model_calls(ast.parse(inspect.getsource(module)))
        assert calls == [], f"{name}: {module.__name__} {calls}"


def test_the_model_call_finder_finds_model_calls():
    tree = ast.parse("model.forward(step, cache)\nself.model.hf(input_ids=x)\nhf(x)\nf(x)")
    assert _model_calls(tree) == [
        "line 1: .forward(...)", "line 2: .hf(...)", "line 3: hf(...)"
    ]


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
