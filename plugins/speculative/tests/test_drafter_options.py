"""Speculative config checks and the ``draft_model`` drafter's options.

- ``verify="chain"`` with a drafter that drafts trees is a ConfigError when the config is
  validated (naming ``params.verify`` and the drafter), before any model is loaded.
- ``draft_model`` takes an in-memory model (a decodekit LanguageModel or a transformers
  causal LM), a ``device``, and a directory without tokenizer; a directory whose files
  change on disk is loaded again, not served from the process-wide cache.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from decodekit_speculative import drafters as drafters_module
from decodekit_speculative.drafters import DraftModelDrafter
from decodekit_speculative.testing import ToyDrafters
from typer.testing import CliRunner

from decodekit import Engine, validate_config
from decodekit.cli import app
from decodekit.errors import ConfigError
from decodekit.model import HFModel
from decodekit.testing import registered_plugin

PROMPTS = [[5, 9, 11], [7], [3, 3, 8, 20, 41, 12]]


def speculative(**params):
    return {"strategy": "speculative", "params": params}


# ------------------------------------------------------------- verify="chain" with trees


@pytest.mark.parametrize(
    ("drafter", "options", "extra"),
    [
        ("token_recycling", {}, {}),
        ("prompt_lookup", {"num_candidates": 3}, {}),
        ("markov", {"branches": 2}, {"draft_length": 2}),
    ],
)
def test_chain_verification_of_a_tree_drafter_is_refused_at_validation(drafter, options, extra):
    with registered_plugin(ToyDrafters()), pytest.raises(ConfigError) as error:
        validate_config(speculative(drafter=drafter, verify="chain", drafter_options=options,
                                    **extra))
    message = str(error.value)
    assert "\n" not in message  # one line
    assert message.startswith("Invalid config: params.verify: ")
    problem = message.removeprefix("Invalid config: ")
    assert f"drafter {drafter!r} drafts trees" in problem and "use verify='tree'" in problem


@pytest.mark.parametrize(
    ("drafter", "options", "extra"),
    [
        ("prompt_lookup", {}, {}),
        ("token_recycling", {"top_k": 1}, {}),  # one candidate per node: the template is a chain
        ("token_recycling", {}, {"max_nodes": 1}),
        ("layer_skip", {}, {}),
        ("draft_model", {}, {}),
        ("markov", {"branches": 3}, {"draft_length": 4, "max_nodes": 4}),  # budget: one branch
    ],
)
def test_chain_verification_of_a_chain_drafter_validates(drafter, options, extra):
    with registered_plugin(ToyDrafters()):
        config = validate_config(speculative(drafter=drafter, verify="chain",
                                             drafter_options=options, **extra))
    assert config.params.verify == "chain"


def test_the_cli_refuses_chain_verification_of_trees_before_loading_a_model(tmp_path):
    missing = tmp_path / "no-model-here"
    result = CliRunner().invoke(app, [
        "run", "hi", "--strategy", "speculative", "--set", "verify=chain",
        "--set", "drafter=token_recycling", "--model", str(missing),
    ])
    assert result.exit_code == 2
    assert "params.verify" in result.output and "token_recycling" in result.output
    assert "no-model-here" not in result.output  # the model was never looked for


def test_a_tree_from_a_drafter_that_does_not_say_still_fails_clearly(tiny):
    with registered_plugin(ToyDrafters()):
        request = Engine(tiny).request([1, 2], strategy="speculative", drafter="markov",
                                       temperature=1.0, verify="tree", max_new_tokens=4,
                                       drafter_options={"branches": 2}, seed=0)
    from decodekit_speculative.verifiers import RejectionChainVerifier

    request.pipeline.verifier = RejectionChainVerifier(warper=request.pipeline.verifier.warper)
    with pytest.raises(ValueError, match="verify='tree'"):
        Engine(tiny).run(request)


# ------------------------------------------------------------------- draft_model options


@pytest.fixture(scope="module")
def other(tiny):
    """A transformers Llama close to the target (noise on the LM head)."""
    hf = copy.deepcopy(tiny.hf)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        hf.lm_head.weight.add_(torch.randn(hf.lm_head.weight.shape, generator=generator)
                               * hf.lm_head.weight.std() * 0.7)
    return hf


def draft_model_of(engine, **options):
    request = engine.request(PROMPTS, strategy="speculative", drafter="draft_model",
                             temperature=0.0, max_new_tokens=12, drafter_options=options)
    drafter = request.pipeline.drafter
    assert isinstance(drafter, DraftModelDrafter)
    return request, drafter


@pytest.mark.parametrize("kind", ["transformers", "decodekit"])
def test_draft_model_accepts_an_in_memory_model(tiny, other, kind):
    engine = Engine(tiny)
    given = other if kind == "transformers" else HFModel(other, None, name="other")
    request, drafter = draft_model_of(engine, model=given)
    if kind == "decodekit":
        assert drafter.model is given
    else:
        assert drafter.model.hf is other and drafter.model.tokenizer is None
    plain = engine.generate(PROMPTS, strategy="greedy", max_new_tokens=12)
    result = engine.run(request)
    assert [c.token_ids for c in result.completions] == [c.token_ids for c in plain]
    assert sum(c.stats.accepted_draft_tokens for c in result.completions) > 0


def test_draft_model_refuses_what_is_no_model(tiny):
    with pytest.raises(ConfigError, match=r"drafter_options\.model: .*got int"):
        Engine(tiny).generate([1, 2], strategy="speculative", drafter="draft_model",
                              max_new_tokens=2, drafter_options={"model": 3})


def test_draft_model_device_option(tiny, other, tmp_path):
    other.save_pretrained(tmp_path / "draft")
    engine = Engine(tiny)
    _, drafter = draft_model_of(engine, model=str(tmp_path / "draft"), device="cpu")
    assert drafter.model.device == torch.device("cpu")
    _, default = draft_model_of(engine, model=str(tmp_path / "draft"))  # the target's device
    assert default.model.device == tiny.device
    with pytest.raises(ConfigError, match=r"drafter_options\.device: .*on cpu, not meta"):
        draft_model_of(engine, model=other, device="meta")
    with pytest.raises(ConfigError, match=r"drafter_options\.device: .*not a torch device"):
        draft_model_of(engine, model=other, device="no-such-device")


def test_draft_model_directory_needs_no_tokenizer(tiny, other, tmp_path):
    path = tmp_path / "draft"
    other.save_pretrained(path)  # weights and config only
    assert not any(p.name.startswith("tokenizer") for p in path.iterdir())
    engine = Engine(tiny)
    request, drafter = draft_model_of(engine, model=str(path))
    assert drafter.model.tokenizer is None
    plain = engine.generate(PROMPTS, strategy="greedy", max_new_tokens=12)
    assert [c.token_ids for c in engine.run(request).completions] == [
        c.token_ids for c in plain]


def test_draft_model_directory_reloads_when_its_files_change(tiny, other, tmp_path):
    path = tmp_path / "draft"
    other.save_pretrained(path)
    engine = Engine(tiny)
    _, first = draft_model_of(engine, model=str(path))
    _, again = draft_model_of(engine, model=str(path))
    assert again.model is first.model  # unchanged files: the cached load
    changed = copy.deepcopy(other)
    with torch.no_grad():
        changed.lm_head.weight.mul_(-1.0)
    changed.save_pretrained(path)
    for weights in path.glob("*.safetensors"):  # coarse file-system clocks: a sure change
        stat = weights.stat()
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    _, fresh = draft_model_of(engine, model=str(path))
    assert fresh.model is not first.model
    assert torch.equal(fresh.model.hf.lm_head.weight, changed.lm_head.weight)
    key = (str(path.resolve()), "float32", "cpu")
    assert drafters_module._models[key][1] is fresh.model  # the stale copy is gone


def test_draft_model_missing_directory_names_the_field(tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"drafter_options\.model: model directory not found"):
        draft_model_of(Engine(tiny), model=str(tmp_path / "missing"))
