"""Registered verifiers are built one way, by strategies and the test kit alike:
``factory(Options.model_validate(options), context=..., warper=...)``."""

from __future__ import annotations

import pytest
from pydantic import Field

import decodekit
from decodekit import hookimpl
from decodekit.config import StrategyParams
from decodekit.contracts import Selection, Verifier
from decodekit.errors import ConfigError, PluginContractError, UnknownComponentError
from decodekit.sampling import Warper
from decodekit.strategy import BuildContext
from decodekit.testing import AttentionModel, PluginCheckError, check_plugin
from decodekit.verifying import build_verifier


@pytest.fixture
def context():
    return BuildContext(model=AttentionModel.random(5, seed=1), registry=decodekit.get_registry())


def test_every_installed_verifier_builds_with_its_default_options(context):
    verifiers = decodekit.get_registry().verifiers
    assert {"argmax", "ancestral", "rejection_chain", "rejection_tree", "contrastive",
            "mirostat", "beam", "stochastic_beam"} <= set(verifiers)
    warper = Warper(temperature=0.7)
    for name, entry in verifiers.items():
        verifier = build_verifier(name, context=context, warper=warper)
        assert type(verifier) is entry.obj
        assert issubclass(entry.obj.Options, StrategyParams)


def test_options_reach_the_verifier_and_the_warper_too(context):
    tree = build_verifier("rejection_tree", {"backend": "torch"}, context=context,
                          warper=Warper(temperature=0.5))
    assert tree.backend == "torch" and tree.warper.temperature == 0.5
    beam = build_verifier("beam", {"num_beams": 3, "num_return_sequences": 2}, context=context)
    assert (beam.num_beams, beam.num_return_sequences, beam.num_groups) == (3, 2, 1)


def test_bad_options_name_the_field(context):
    with pytest.raises(ConfigError, match=r"^verifier_options\.alpha: "):
        build_verifier("contrastive", {"alpha": 2.0}, context=context)
    with pytest.raises(ConfigError, match=r"^verifier_options\.colour: Extra inputs"):
        build_verifier("argmax", {"colour": 1}, context=context)
    with pytest.raises(ConfigError, match=r"num_return_sequences \(5\) must be <= num_beams"):
        build_verifier("beam", {"num_beams": 2, "num_return_sequences": 5}, context=context)


def test_an_unknown_verifier_lists_the_installed_ones(context):
    with pytest.raises(UnknownComponentError, match="rejection_tree"):
        build_verifier("nope", context=context)


class NoOptions(Verifier):
    name = "no_options"

    def select(self, view, output, draft):
        return Selection.single([0] * len(view.sequences))


class RequiredOption(NoOptions):
    name = "required_option"

    class Options(StrategyParams):
        width: int = Field(description="No default: the kit cannot build it unconfigured.")


class NotAVerifier(NoOptions):
    name = "not_a_verifier"

    class Options(StrategyParams):
        pass

    def __new__(cls, *args, **kwargs):
        return object()


def test_a_verifier_without_options_cannot_be_built(context):
    with pytest.raises(ConfigError, match="verifier 'no_options' has no Options model"):
        build_verifier(NoOptions, context=context)


def test_a_class_that_builds_something_else_breaks_the_contract(context):
    with pytest.raises(PluginContractError, match="built a object, not a Verifier"):
        build_verifier(NotAVerifier, context=context)


class LooseVerifiers:
    @hookimpl
    def register_verifiers(self, register):
        register(NoOptions)
        register(RequiredOption)


def test_check_plugin_holds_verifiers_to_the_protocol():
    with pytest.raises(PluginCheckError) as info:
        check_plugin(LooseVerifiers(), name="loose")
    message = str(info.value)
    assert "'no_options' has no Options model" in message
    assert "'required_option': Options fields without a default: width" in message
