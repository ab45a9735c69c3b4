"""A broken plugin is named: contract errors, load failures, their listing and checks."""

import json
import logging
import sys
import warnings

import pytest
import torch
from typer.testing import CliRunner

import decodekit
from decodekit import cli, plugins
from decodekit.builtin.greedy import ArgmaxVerifier
from decodekit.config import StrategyParams
from decodekit.contracts import Drafter, DraftTree, LogitsProcessor, Verifier
from decodekit.engine import Engine
from decodekit.errors import DecodekitError, PluginContractError
from decodekit.loop import run, start
from decodekit.strategy import BuildContext, Guarantee, Pipeline, Strategy
from decodekit.testing import MarkovModel, PluginCheckError, check_plugin, registered_plugin


class ComponentPlugin:
    """A plugin object registering one strategy and any components."""

    def __init__(self, strategy=None, *, verifiers=(), drafters=(), samplers=()):
        self.strategy, self.verifiers = strategy, verifiers
        self.drafters, self.samplers = drafters, samplers

    @decodekit.hookimpl
    def register_strategies(self, register):
        if self.strategy is not None:
            register(self.strategy)

    @decodekit.hookimpl
    def register_verifiers(self, register):
        for factory in self.verifiers:
            register(factory)

    @decodekit.hookimpl
    def register_drafters(self, register):
        for factory in self.drafters:
            register(factory)

    @decodekit.hookimpl
    def register_samplers(self, register):
        for factory in self.samplers:
            register(factory)


def strategy_of(name, verifier, drafter=None):
    """A strategy building ``Pipeline(verifier(), drafter())`` (factories are callables)."""

    def build(params, context):
        return Pipeline(verifier=verifier(), drafter=None if drafter is None else drafter())

    return Strategy(name, "test", StrategyParams, Guarantee.NONE, (), build)


class TensorVerifier(Verifier):
    """Returns the argmax tensor instead of a Selection."""

    name = "tensor_verifier"

    def select(self, view, output, draft):
        return output.logits[:, 0].argmax(-1)


class ExtraRowDrafter(Drafter):
    """Drafts one row more than the batch has."""

    name = "extra_row"

    def draft(self, view):
        return DraftTree.chain(torch.zeros((len(view.sequences) + 1, 2), dtype=torch.long))


class TokenDrafter(Drafter):
    """Drafts a chain of one given token."""

    name = "token_drafter"

    def __init__(self, token):
        self.token = token

    def draft(self, view):
        return DraftTree.chain(torch.full((len(view.sequences), 2), self.token, dtype=torch.long))


class NarrowingSampler(LogitsProcessor):
    """Drops part of the vocabulary axis."""

    name = "narrowing"

    def __call__(self, logits, view, draft):
        return logits[..., :3]


class HelperVerifier(Verifier):
    """A strategy's own helper, registered by no plugin; returns None."""

    def select(self, view, output, draft):
        return None


def test_contract_error_is_a_decodekit_error():
    error = PluginContractError("p", "drafter", "d", "returned 3 rows for a batch of 2")
    assert isinstance(error, DecodekitError)
    assert str(error) == "plugin 'p' drafter 'd': returned 3 rows for a batch of 2"
    assert (error.plugin, error.family, error.component) == ("p", "drafter", "d")


def test_verifier_returning_a_tensor_is_named():
    plugin = ComponentPlugin(strategy_of("tensor_select", TensorVerifier),
                             verifiers=[TensorVerifier])
    with registered_plugin(plugin, name="dk-test-verifier"):
        engine = Engine(MarkovModel.random(5, seed=0))
        with pytest.raises(PluginContractError) as info:
            engine.generate([[0], [1]], strategy="tensor_select", max_new_tokens=3)
    assert str(info.value) == (
        "plugin 'dk-test-verifier' verifier 'tensor_verifier': select returned a Tensor, "
        "expected a Selection"
    )


def test_drafter_returning_too_many_rows_is_named():
    plugin = ComponentPlugin(strategy_of("extra_rows", ArgmaxVerifier, ExtraRowDrafter),
                             drafters=[ExtraRowDrafter])
    with registered_plugin(plugin, name="dk-test-drafter"):
        engine = Engine(MarkovModel.random(5, seed=0))
        with pytest.raises(PluginContractError) as info:
            engine.generate([[0], [1]], strategy="extra_rows", max_new_tokens=3)
    assert str(info.value) == (
        "plugin 'dk-test-drafter' drafter 'extra_row': returned 3 rows for a batch of 2"
    )


class WrappingDrafter(Drafter):
    """Wraps a drafter and takes its name, as speculative's adaptive draft length does."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name

    def draft(self, view):
        return self.inner.draft(view)


def test_a_wrapped_drafter_is_blamed_on_the_plugin_of_the_drafter_it_wraps():
    strategy = strategy_of("wrapped", ArgmaxVerifier, lambda: WrappingDrafter(ExtraRowDrafter()))
    with registered_plugin(ComponentPlugin(strategy), name="dk-test-strategy"), \
            registered_plugin(ComponentPlugin(drafters=[ExtraRowDrafter]), name="dk-test-drafter"):
        engine = Engine(MarkovModel.random(5, seed=0))
        with pytest.raises(PluginContractError, match=r"^plugin 'dk-test-drafter' drafter "):
            engine.generate([[0], [1]], strategy="wrapped", max_new_tokens=3)


@pytest.mark.parametrize("token", [97, -2])
def test_out_of_vocabulary_draft_token_is_named(tiny, token):
    plugin = ComponentPlugin(
        strategy_of("bad_tokens", ArgmaxVerifier, lambda: TokenDrafter(token)),
        drafters=[TokenDrafter],
    )
    with registered_plugin(plugin, name="dk-test-tokens"), pytest.raises(
        PluginContractError,
        match=rf"^plugin 'dk-test-tokens' drafter 'token_drafter': proposed token {token}, "
        r"outside the vocabulary 0\.\.96",
    ):
        Engine(tiny).generate([[3, 4]], strategy="bad_tokens", max_new_tokens=3)


def test_sampler_changing_the_logits_shape_is_named():
    with registered_plugin(ComponentPlugin(samplers=[NarrowingSampler]), name="dk-test-sampler"):
        engine = Engine(MarkovModel.random(5, seed=0))
        with pytest.raises(PluginContractError) as info:
            engine.generate([[0]], strategy="greedy", processors=["narrowing"], max_new_tokens=2)
    assert str(info.value) == (
        "plugin 'dk-test-sampler' sampler 'narrowing': returned (1, 1, 3), expected logits "
        "(1, 1, 5)"
    )


def dict_strategy():
    return Strategy("dict_builder", "test", StrategyParams, Guarantee.NONE, (),
                    lambda params, context: {"verifier": ArgmaxVerifier()})


def test_build_returning_no_pipeline_is_named_where_it_is_built():
    strategy = dict_strategy()
    with registered_plugin(ComponentPlugin(strategy), name="dk-test-builder"):
        context = BuildContext(model=MarkovModel.random(4), registry=decodekit.get_registry())
        with pytest.raises(PluginContractError) as info:
            strategy.build_pipeline(StrategyParams(), context)
    assert str(info.value) == (
        "plugin 'dk-test-builder' strategy 'dict_builder': build returned a dict, expected a "
        "decodekit.Pipeline"
    )


def test_engine_reports_a_build_returning_no_pipeline():
    # needs Engine.request to build through Strategy.build_pipeline; without it another
    # plugin's run_generation hook fails on the dict with an AttributeError
    with registered_plugin(ComponentPlugin(dict_strategy()), name="dk-test-builder"), \
            pytest.raises(PluginContractError, match=r"^plugin 'dk-test-builder' strategy "):
        Engine(MarkovModel.random(4)).generate([[0]], strategy="dict_builder")


def test_unregistered_component_is_blamed_on_the_strategy_plugin():
    strategy = strategy_of("helper", HelperVerifier)
    model = MarkovModel.random(4)
    with registered_plugin(ComponentPlugin(strategy), name="dk-test-helper"):
        context = BuildContext(model=model, registry=decodekit.get_registry())
        pipeline = strategy.build_pipeline(StrategyParams(), context)
        assert (pipeline.plugin, pipeline.strategy) == ("dk-test-helper", "helper")
        state = start(model, [[0]], max_new_tokens=2, seeds=[0])
        with pytest.raises(PluginContractError) as info:
            list(run(state, pipeline))
    assert str(info.value) == (
        "plugin 'dk-test-helper' verifier 'HelperVerifier': select returned a NoneType, "
        "expected a Selection"
    )


# ----------------------------------------------------------------- plugins that fail to load


@pytest.fixture
def fresh_plugins():
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("dk_err_")]:
        del sys.modules[name]



RAISING_HOOK = """
from decodekit import hookimpl

@hookimpl
def register_strategies(register):
    raise RuntimeError('boom')
"""


@pytest.fixture
def broken(make_distribution, fresh_plugins, site):
    """One plugin that fails to import and one whose hook raises."""
    make_distribution(site, "dk-err-import", "dk_err_import", "raise ImportError('no numpy 9')\n")
    make_distribution(site, "dk-err-hook", "dk_err_hook", RAISING_HOOK)


def test_each_failure_is_recorded_and_warned_once(broken, caplog):
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        decodekit.get_registry()
        plugins.invalidate_registry()  # collecting again must not warn again
        decodekit.get_registry()
    messages = [str(w.message) for w in caught if issubclass(w.category, plugins.PluginLoadWarning)]
    assert messages == [
        "Failed to load decodekit plugin 'dk-err-import': ImportError: no numpy 9",
        "Failed to run register_strategies of decodekit plugin 'dk-err-hook': RuntimeError: boom",
    ]
    assert not [r for r in caplog.records if r.name == "decodekit.plugins"]  # no second copy
    assert plugins.failed_plugins() == [
        plugins.PluginFailure("dk-err-import", "load", "ImportError: no numpy 9", "1.2.3"),
        plugins.PluginFailure("dk-err-hook", "register_strategies", "RuntimeError: boom"),
    ]
    plugins.reset()
    assert plugins.failed_plugins() == []


def invoke_plugins(*args):
    with pytest.warns(plugins.PluginLoadWarning):
        result = CliRunner().invoke(cli.app, ["plugins", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_plugins_json_lists_failed_plugins_with_their_errors(broken):
    rows = {row["name"]: row for row in json.loads(invoke_plugins("--json"))}
    assert rows["dk-err-import"] == {
        "name": "dk-err-import", "version": "1.2.3", "hooks": [], "builtin": False,
        "loaded": False, "errors": [{"stage": "load", "error": "ImportError: no numpy 9"}],
    }
    hook = rows["dk-err-hook"]
    assert hook["loaded"] is True and hook["hooks"] == ["register_strategies"]
    assert hook["errors"] == [{"stage": "register_strategies", "error": "RuntimeError: boom"}]
    assert rows["decodekit.builtin.greedy"]["errors"] == []


def test_plugins_table_shows_the_errors(broken, monkeypatch):
    monkeypatch.setattr(cli.out, "_width", 240)  # no wrapped or truncated cells
    text = invoke_plugins()
    lines = {line.split()[1]: line for line in text.splitlines() if "dk-err-" in line}
    assert "load: ImportError: no numpy 9" in lines["dk-err-import"]
    assert "register_strategies: RuntimeError: boom" in lines["dk-err-hook"]


def test_check_plugin_says_an_installed_plugin_failed_to_import(broken):
    with pytest.warns(plugins.PluginLoadWarning), pytest.raises(
        PluginCheckError,
        match=r"^plugin 'dk-err-import' is installed but failed to import: "
        r"ImportError: no numpy 9$",
    ):
        check_plugin("dk-err-import")
