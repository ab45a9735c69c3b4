"""Model drafters on tiny random Llamas: cache sync, batches, errors, adaptive lengths.

The target is a tiny random Llama (vocab 97, real attention, KV cache with holes); the
draft model is another tiny Llama (different weights: partial acceptance) or the target
itself (identical distributions: every draft token must be accepted if the draft cache
is kept exactly in step with the committed tokens).
"""

from __future__ import annotations

import copy
from typing import ClassVar, Literal

import pytest
import torch
from decodekit_speculative.adaptive import AdaptiveDraftLength, best_draft_length, truncate_depth
from decodekit_speculative.drafters import LayerSkipDrafter, ModelDrafter
from decodekit_speculative.testing import ToyDrafters

from decodekit import Engine, hookimpl
from decodekit.config import StrategyParams
from decodekit.contracts import DecodeView, Drafter, DraftTree, Selection
from decodekit.errors import ConfigError
from decodekit.model import HFModel
from decodekit.testing import registered_plugin

PROMPTS = [[5, 9, 11], [7], [3, 3, 8, 20, 41, 2 + 10], [60, 61]]


def perturbed(model):
    """A copy of a tiny Llama with noise on its LM head: it agrees with the model often."""
    hf = copy.deepcopy(model.hf)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        weight = hf.lm_head.weight
        weight.add_(torch.randn(weight.shape, generator=generator) * weight.std() * 0.7)
    return HFModel(hf, None, name="tiny-perturbed")


class TinyOptions(StrategyParams):
    draft: Literal["other", "self"] = "other"
    confidence_threshold: float = 0.0


class TinyDrafter(ModelDrafter):
    """A ModelDrafter over another tiny Llama, or over the target itself."""

    name = "tiny"
    Options = TinyOptions
    instances: ClassVar[list[TinyDrafter]] = []

    def __init__(self, options, *, context, draft_length, max_nodes, warper):
        model = context.model if options.draft == "self" else perturbed(context.model)
        super().__init__(model, draft_length=draft_length, warper=warper,
                         confidence_threshold=options.confidence_threshold)
        TinyDrafter.instances.append(self)


class Plugin:
    @hookimpl
    def register_drafters(self, register):
        register(TinyDrafter)


@pytest.fixture(scope="module")
def engine(tiny):
    with registered_plugin(Plugin()), registered_plugin(ToyDrafters()):
        yield Engine(tiny)


def test_greedy_equivalence_with_another_draft_model(engine):
    plain = engine.generate(PROMPTS, strategy="greedy", max_new_tokens=20)
    accepted = {}
    for threshold in (0.0, 0.2):
        spec = engine.generate(PROMPTS, strategy="speculative", drafter="tiny", temperature=0,
                               draft_length=3, max_new_tokens=20,
                               drafter_options={"confidence_threshold": threshold})
        assert [c.token_ids for c in spec] == [c.token_ids for c in plain]
        accepted[threshold] = [c.stats.accepted_draft_tokens for c in spec]
        drafted = sum(c.stats.drafted_tokens for c in spec)
        if threshold == 0.0:
            assert drafted == sum(3 * c.stats.forward_passes for c in spec)
    # rows accepted different numbers of draft tokens in the same batch
    assert len(set(accepted[0.0])) > 1, accepted


def test_self_drafting_accepts_everything_under_sampling(engine):
    """Draft == target: acceptance ~100% only if the draft cache tracks every row exactly."""
    out = engine.generate(PROMPTS, strategy="speculative", drafter="tiny", temperature=0.8,
                          draft_length=3, max_new_tokens=25, seed=3,
                          drafter_options={"draft": "self"})
    for completion in out:
        stats = completion.stats
        assert stats.drafted_tokens > 0
        assert stats.accepted_draft_tokens >= 0.95 * stats.drafted_tokens - 1
        assert stats.mean_accepted_per_forward > 3.5


def test_sampling_is_reproducible_and_batch_independent(engine):
    settings = dict(strategy="speculative", drafter="tiny", temperature=0.9, draft_length=2,
                    max_new_tokens=16, seed=[11, 12, 13, 14])
    a = engine.generate(PROMPTS, **settings)
    b = engine.generate(PROMPTS, **settings)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]


def test_a_failing_drafter_leaves_the_engine_usable(engine):
    plain = engine.generate(PROMPTS, strategy="greedy", max_new_tokens=16)
    with pytest.raises(RuntimeError, match="deliberate error at step 2"):
        engine.generate(PROMPTS, strategy="speculative", drafter="failing", temperature=0,
                        max_new_tokens=16)
    again = engine.generate(PROMPTS, strategy="speculative", drafter="tiny", temperature=0,
                            max_new_tokens=16)
    assert [c.token_ids for c in again] == [c.token_ids for c in plain]


def test_a_model_drafter_recovers_from_an_error_inside_its_forward(engine, monkeypatch):
    """An exception after the draft model's forward appended to its cache: the drafter
    rebuilds its cache, and a later draft is still exact."""
    plain = engine.generate(PROMPTS, strategy="greedy", max_new_tokens=12)
    TinyDrafter.instances.clear()
    request = engine.request(PROMPTS, strategy="speculative", drafter="tiny", temperature=0,
                             max_new_tokens=12)
    drafter = TinyDrafter.instances[-1]
    original = drafter.model.forward
    calls = {"n": 0}

    def flaky(step, cache, **kwargs):
        calls["n"] += 1
        result = original(step, cache, **kwargs)
        if calls["n"] == 4:
            raise RuntimeError("draft forward failed")
        return result

    monkeypatch.setattr(drafter.model, "forward", flaky)
    with pytest.raises(RuntimeError, match="draft forward failed"):
        engine.run(request)
    assert drafter.state is None  # rebuilt from scratch at the next draft
    monkeypatch.setattr(drafter.model, "forward", original)
    # the same drafter instance, used again in a fresh request, drafts correctly
    request = engine.request(PROMPTS, strategy="speculative", drafter="tiny", temperature=0,
                             max_new_tokens=12)
    request.pipeline.drafter = drafter
    result = engine.run(request)
    assert [c.token_ids for c in result.completions] == [c.token_ids for c in plain]


def test_layer_skip_is_greedy_equivalent_on_a_tiny_model(engine):
    plain = engine.generate(PROMPTS, strategy="greedy", max_new_tokens=16)
    spec = engine.generate(PROMPTS, strategy="speculative", drafter="layer_skip", temperature=0,
                           max_new_tokens=16, drafter_options={"layers": 1,
                                                               "confidence_threshold": 0.0})
    assert [c.token_ids for c in spec] == [c.token_ids for c in plain]
    assert sum(c.stats.drafted_tokens for c in spec) > 0


def test_layer_skip_shares_weights_and_leaves_the_target_intact(tiny):
    from decodekit import get_registry
    from decodekit.sampling import Warper
    from decodekit.strategy import BuildContext

    layers_before = len(tiny.hf.model.layers)
    drafter = LayerSkipDrafter(LayerSkipDrafter.Options(layers=1), context=BuildContext(
        tiny, get_registry()), draft_length=2, max_nodes=None, warper=Warper())
    assert len(tiny.hf.model.layers) == layers_before == 2
    assert len(drafter.model.hf.model.layers) == 1
    assert drafter.model.hf.model.layers[0] is tiny.hf.model.layers[0]
    assert drafter.model.hf.lm_head is tiny.hf.lm_head


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"draft_length": 0}, "params.draft_length"),
        ({"draft_length": -2}, "params.draft_length"),
        ({"drafter": "nonexistent"}, "Unknown drafter 'nonexistent'.*Installed drafters: .*layer_skip"),
        ({"drafter": "layer_skip", "drafter_options": {"layers": 0}}, "drafter_options.layers"),
        ({"drafter": "layer_skip", "drafter_options": {"depth": 3}}, "drafter_options.depth"),
        ({"verify": "beam"}, "params.verify"),
    ],
)
def test_bad_parameters_name_the_field(engine, params, message):
    with pytest.raises(ConfigError, match=message):
        engine.generate([1, 2], strategy="speculative", max_new_tokens=2, **params)


def test_layer_skip_rejects_too_many_layers(engine):
    with pytest.raises(ConfigError, match=r"drafter_options.layers: must be between 1 and 1"):
        engine.generate([1, 2], strategy="speculative", drafter="layer_skip", max_new_tokens=2,
                        drafter_options={"layers": 2})


def test_chain_verifier_refuses_trees(engine):
    with pytest.raises(ValueError, match="verify='tree'"):
        engine.generate([1, 2], strategy="speculative", drafter="markov", temperature=1.0, verify="chain",
                        max_new_tokens=4, drafter_options={"branches": 2}, seed=0)


def test_best_draft_length_follows_acceptance():
    assert best_draft_length(0.05, 0.1, 8) == 1
    assert best_draft_length(0.99, 0.05, 8) == 8
    lengths = [best_draft_length(a, 0.1, 8) for a in (0.2, 0.5, 0.8, 0.95)]
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]


def test_adaptive_length_shrinks_for_a_bad_drafter_and_grows_for_a_good_one(engine):
    from decodekit.testing import MarkovModel

    model = MarkovModel.random(5, seed=0, spread=4.0)
    toy = Engine(model)
    lengths = {}
    for name, draft_seed in (("good", 0), ("bad", 77)):
        request = toy.request([[0]] * 4, strategy="speculative", drafter="markov",
                              temperature=1.0, draft_length=6, adaptive=True, seed=1,
                              max_new_tokens=60, drafter_options={"seed": draft_seed,
                                                                  "spread": 4.0})
        drafter = request.pipeline.drafter
        assert isinstance(drafter, AdaptiveDraftLength)
        toy.run(request)
        # every row's length at the last five steps: each row adapts on its own
        lengths[name] = [length for step in drafter.history[-5:] for length in step]
    assert min(lengths["good"]) == 6
    assert max(lengths["bad"]) <= 2


class ChainOfOnes(Drafter):
    """Drafts ``draft_length`` copies of token 1 for every row; records the length asked."""

    name = "ones"
    prefix_consistent = True

    def __init__(self, draft_length):
        self.draft_length = draft_length
        self.asked = []

    def draft(self, view):
        self.asked.append(self.draft_length)
        return DraftTree.chain(torch.ones((len(view.sequences), self.draft_length),
                                          dtype=torch.long))


def _step(adaptive, rows, step, accepted):
    """One draft and observe of ``adaptive``; row r accepts ``accepted[r]`` draft tokens."""
    view = DecodeView(sequences=[[0]] * rows, prompt_lengths=[1] * rows,
                      generators=[torch.Generator() for _ in range(rows)], model=None,
                      step=step, row_ids=list(range(rows)))
    draft = adaptive.draft(view)
    depth = draft.tokens.ge(0).sum(1).tolist()
    taken = [min(a, d) for a, d in zip(accepted, depth, strict=True)]
    selection = Selection(tokens=[[1] * (n + 1) for n in taken],
                          kept_nodes=[list(range(n)) for n in taken], accepted_draft=taken)
    adaptive.observe(view, draft, None, selection)
    return depth


def test_adaptive_lengths_are_per_row_and_follow_the_rows():
    inner = ChainOfOnes(6)
    adaptive = AdaptiveDraftLength(inner, max_length=6, draft_cost=0.1)
    for step in range(8):  # row 0 accepts everything, row 1 nothing
        depths = _step(adaptive, 2, step, [6, 0])
    assert adaptive.lengths == [6, 1]
    assert depths == [6, 1]  # each row is cut to its own length
    assert inner.asked[-1] == 6  # a prefix-consistent drafter drafts the longest length
    adaptive.select_rows(torch.tensor([1]))  # row 0 finished: row 1 keeps its estimate
    assert adaptive.lengths == [1]
    assert _step(adaptive, 1, 8, [0]) == [1] and inner.asked[-1] == 1
    _step(adaptive, 3, 0, [0, 0, 0])  # a new generation starts from the prior
    assert adaptive.history[-1] == [6, 6, 6]


def test_adaptive_mode_keeps_the_full_length_of_a_drafter_that_is_not_prefix_consistent():
    inner = ChainOfOnes(6)
    inner.prefix_consistent = False
    adaptive = AdaptiveDraftLength(inner, max_length=6, draft_cost=0.1)
    for step in range(8):
        depths = _step(adaptive, 2, step, [0, 0])
    assert depths == [1, 1] and inner.asked[-1] == 6


def test_truncate_depth_keeps_the_shallow_part_of_a_tree():
    tree = DraftTree(tokens=torch.tensor([[4, 5, 6, 7]]), parents=torch.tensor([[-1, 0, -1, 2]]),
                     proposals=torch.rand(1, 4, 9))
    cut = truncate_depth(tree, 1)
    assert cut is not None
    assert cut.tokens.tolist() == [[4, 6]] and cut.parents.tolist() == [[-1, -1]]
    assert torch.equal(cut.proposals[0, 1], tree.proposals[0, 2])


def test_truncate_depth_per_row():
    tree = DraftTree.chain(torch.tensor([[4, 5, 6], [7, 8, 9]]))
    cut = truncate_depth(tree, [1, 3])
    assert cut is not None
    assert cut.tokens.tolist() == [[4, -1, -1], [7, 8, 9]]
    assert cut.parents.tolist() == [[-1, -1, -1], [-1, 0, 1]]


def test_a_model_drafter_drafts_its_full_length_near_the_end_of_the_context():
    """The sub-state's rows never run out of budget: a draft of 4 tokens two tokens before
    the target's context ends is whole (the target cuts what it cannot accept)."""
    from decodekit_speculative.drafters import ModelDrafter

    from decodekit import DecodeView
    from decodekit.sampling import Warper
    from decodekit.testing import MarkovModel

    model = MarkovModel.random(6, seed=0, context_length=8)
    drafter = ModelDrafter(model, draft_length=4, warper=Warper(temperature=0.0))
    view = DecodeView(sequences=[[0, 1, 2, 3, 4, 5]], prompt_lengths=[2], generators=[],
                      model=model, step=0, row_ids=[0])
    draft = drafter.draft(view)
    assert (draft.tokens >= 0).sum() == 4
