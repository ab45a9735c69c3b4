"""The conformance kit catches broken plugins and passes correct ones."""

import decodekit_mirostat
import pytest
import torch
from pydantic import Field

from decodekit import hookimpl
from decodekit.builtin import greedy, sample
from decodekit.builtin.greedy import ArgmaxVerifier
from decodekit.builtin.sample import AncestralVerifier
from decodekit.config import StrategyParams
from decodekit.contracts import Drafter, Selection, Verifier
from decodekit.sampling import draw_seeds
from decodekit.strategy import Guarantee, Pipeline, Strategy
from decodekit.testing import (
    PluginCheckError,
    assert_greedy_equivalent,
    assert_lossless,
    check_plugin,
)


def test_builtins_and_the_example_plugin_conform():
    assert check_plugin(greedy).registered["strategies"] == ("greedy",)
    assert check_plugin(sample).registered["verifiers"] == ("ancestral",)
    report = check_plugin(decodekit_mirostat)
    assert report.registered["strategies"] == ("mirostat",)
    assert "register_verifiers" in report.hooks
    assert check_plugin("mirostat").name == "mirostat"  # by installed name


def test_unknown_installed_plugin_name():
    with pytest.raises(PluginCheckError, match="no installed decodekit plugin"):
        check_plugin("no-such-plugin")


class BadDefaultParams(StrategyParams):
    width: int = Field(-1, ge=0, description="A default that violates its own bound.")


class BadParamsPlugin:
    @hookimpl
    def register_strategies(self, register):
        register(Strategy("bad_default", "x", BadDefaultParams, Guarantee.NONE, (), lambda p, c: None))


def test_invalid_parameter_model_fails_check_plugin():
    with pytest.raises(PluginCheckError, match=r"params\.width is invalid"):
        check_plugin(BadParamsPlugin(), name="bad-params")


class HalfDrafter(Drafter):  # forgets to implement draft()
    name = "half"


class WrongKinds:
    @hookimpl
    def register_drafters(self, register):
        register(HalfDrafter)
        register(ArgmaxVerifier)  # a verifier in the drafters family

    @hookimpl
    def register_verifiers(self, register):
        register(object())  # no name


def test_components_are_checked_against_their_contracts():
    with pytest.raises(PluginCheckError) as info:
        check_plugin(WrongKinds(), name="wrong-kinds")
    message = str(info.value)
    assert "'half' does not implement draft" in message
    assert "'argmax' must be a subclass of decodekit.Drafter" in message
    assert "has no non-empty 'name'" in message


class Misspelled:
    @hookimpl
    def register_strategy(self, register):  # not a decodekit hook
        pass


def test_unknown_hook_fails_check_plugin():
    with pytest.raises(PluginCheckError, match="register_strategy"):
        check_plugin(Misspelled(), name="misspelled")


def test_name_clash_with_an_installed_plugin():
    class Clash:
        @hookimpl
        def register_verifiers(self, register):
            class Other(ArgmaxVerifier):
                name = "argmax"

            register(Other)

    with pytest.raises(PluginCheckError, match="'argmax' is already registered by plugin"):
        check_plugin(Clash(), name="clash")


class SquaredVerifier(Verifier):
    """Deliberately biased: samples from p**2 renormalized instead of p."""

    name = "squared"
    lossless = True  # a false claim the kit must catch

    class Options(StrategyParams):
        """No options: the warper (the verifier protocol's argument) is all it reads."""

    def select(self, view, output, draft):
        probs = self.warper.probs(output.logits[:, 0]) ** 2
        scores = torch.log(probs) + torch.distributions.Gumbel(0.0, 1.0).sample(probs.shape)
        del view
        return Selection.single(scores.argmax(-1).tolist())


def test_a_biased_verifier_fails_assert_lossless():
    torch.manual_seed(0)
    with pytest.raises(AssertionError, match="chi-square rejects"):
        assert_lossless(verifier=SquaredVerifier, temperature=1.0, samples=2000)


def test_correct_verifiers_pass_assert_lossless():
    """3000 samples at alpha = 1e-4 (a correct sampler fails with probability 1e-4)."""
    result = assert_lossless(verifier="ancestral", temperature=0.8, top_p=0.9)
    assert result.samples == 3000
    assert_lossless("sample", temperature=1.3, top_k=3, seed=5)


class EveryOtherTokenDrafter(Drafter):
    """Proposes token 0 after everything: a deterministic draft the verifier must check."""

    name = "zeros"

    def draft(self, view):
        from decodekit.contracts import DraftTree

        return DraftTree.chain(torch.zeros((len(view.sequences), 2), dtype=torch.long))


def test_assert_greedy_equivalent_with_a_drafter_and_a_strategy():
    assert_greedy_equivalent(drafter=EveryOtherTokenDrafter, verifier=ArgmaxVerifier)
    assert_greedy_equivalent("sample", temperature=0.0)


class OffByOneVerifier(Verifier):
    name = "off_by_one"

    class Options(StrategyParams):
        """No options."""

    def select(self, view, output, draft):
        return Selection.single(((output.logits[:, 0].argmax(-1) + 1) % 8).tolist())


def test_assert_greedy_equivalent_catches_a_wrong_verifier():
    with pytest.raises(AssertionError, match="greedy produced"):
        assert_greedy_equivalent(verifier=OffByOneVerifier)


def test_assert_lossless_accepts_a_strategy_object():
    def build(params, context):
        from decodekit.sampling import Warper

        return Pipeline(verifier=AncestralVerifier(warper=Warper.from_params(params)))

    strategy = Strategy("my_sampler", "x", sample.SampleParams, Guarantee.LOSSLESS, (), build)
    assert_lossless(strategy, temperature=0.7)
    assert draw_seeds([torch.Generator().manual_seed(1)]).dtype == torch.int64


def _squared_build(params, context):
    from decodekit.sampling import Warper

    return Pipeline(verifier=SquaredVerifier(warper=Warper.from_params(params)))


class BiasedLosslessPlugin:
    """Declares ``lossless`` but samples from p**2 renormalized: well formed, and false."""

    @hookimpl
    def register_strategies(self, register):
        register(Strategy("squared_sampler", "biased", sample.SampleParams, Guarantee.LOSSLESS,
                          (), _squared_build))


def test_a_strategy_declaring_lossless_but_biased_fails_check_plugin():
    """check_plugin runs assert_lossless (3,000 outputs, chi-square at alpha = 1e-4) for a
    strategy that declares lossless; sampling from p**2 is far outside what it accepts."""
    torch.manual_seed(0)  # SquaredVerifier draws from torch's global generator
    with pytest.raises(PluginCheckError) as info:
        check_plugin(BiasedLosslessPlugin(), name="biased")
    message = str(info.value)
    assert "'squared_sampler' declares lossless but fails assert_lossless" in message
    assert "chi-square rejects" in message
    # the hook specs and contracts alone are met
    report = check_plugin(BiasedLosslessPlugin(), name="biased", check_guarantees=False)
    assert report.registered["strategies"] == ("squared_sampler",)


class OffByOnePlugin:
    @hookimpl
    def register_strategies(self, register):
        register(Strategy("off_by_one", "wrong", sample.SampleParams,
                          Guarantee.GREEDY_EQUIVALENT, (),
                          lambda params, context: Pipeline(verifier=OffByOneVerifier())))


def test_a_strategy_declaring_greedy_equivalence_but_wrong_fails_check_plugin():
    with pytest.raises(PluginCheckError,
                       match="'off_by_one' declares greedy-equivalent but fails "
                             "assert_greedy_equivalent: prompt 0"):
        check_plugin(OffByOnePlugin(), name="off-by-one")


class WidthParams(sample.SampleParams):
    width: int = Field(description="Required: the defaults alone cannot build the strategy.")


class NeedsParamsPlugin:
    @hookimpl
    def register_strategies(self, register):
        def build(params, context):
            from decodekit.sampling import Warper

            return Pipeline(verifier=AncestralVerifier(warper=Warper.from_params(params)))

        register(Strategy("needs_width", "x", WidthParams, Guarantee.LOSSLESS, (), build))


def test_guarantee_checks_that_cannot_run_are_reported_and_take_parameters():
    with pytest.raises(PluginCheckError, match=r"'needs_width': its lossless check "
                                               r"\(assert_lossless\) could not run"):
        check_plugin(NeedsParamsPlugin(), name="needs-params")
    report = check_plugin(NeedsParamsPlugin(), name="needs-params",
                          guarantee_params={"needs_width": {"width": 2, "temperature": 0.9}})
    assert report.registered["strategies"] == ("needs_width",)
