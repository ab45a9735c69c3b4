"""One test per hook (tests/docs checks that every hook has a ``test_hook_<name>``)."""

from __future__ import annotations

import dataclasses

import torch

import decodekit
from decodekit import hookimpl
from decodekit.builtin.greedy import GREEDY, ArgmaxVerifier
from decodekit.contracts import (
    CachePolicy,
    CompiledConstraint,
    ConstraintFactory,
    Drafter,
    DraftTree,
    LogitsProcessor,
    Selection,
    Verifier,
)
from decodekit.engine import Engine
from decodekit.strategy import Guarantee, Pipeline, Strategy
from decodekit.testing import AttentionModel, MarkovModel, registered_plugin

PROMPTS = [[1], [2, 3], [4, 5, 1]]


def markov_engine(vocab=8, seed=1):
    return Engine(MarkovModel.random(vocab, seed=seed))


def test_hook_register_strategies():
    renamed = dataclasses.replace(GREEDY, name="greedy_again", summary="Greedy, twice.")

    class Plugin:
        @hookimpl
        def register_strategies(self, register):
            register(renamed)

    engine = markov_engine()
    with registered_plugin(Plugin(), name="again"):
        entry = decodekit.get_registry().strategies["greedy_again"]
        assert entry.plugin == "again"
        ours = engine.generate(PROMPTS, strategy="greedy_again", max_new_tokens=6)
    plain = engine.generate(PROMPTS, strategy="greedy", max_new_tokens=6)
    assert [c.token_ids for c in ours] == [c.token_ids for c in plain]
    assert "greedy_again" not in decodekit.get_registry().strategies  # unregistered again


class RepeatDrafter(Drafter):
    """Proposes the last token twice: usually wrong, sometimes right."""

    name = "repeat_last"
    deterministic = True

    def draft(self, view):
        last = torch.tensor([[seq[-1]] * 2 for seq in view.sequences])
        return DraftTree.chain(last)


def test_hook_register_drafters():
    def build(params, context):
        drafter = context.registry.get("drafters", "repeat_last")()
        return Pipeline(verifier=ArgmaxVerifier(), drafter=drafter)

    strategy = Strategy(
        "greedy_repeat", "Greedy with a repeat drafter.", GREEDY.params,
        Guarantee.GREEDY_EQUIVALENT, (("drafter", "repeat_last"), ("verifier", "argmax")), build,
    )

    class Plugin:
        @hookimpl
        def register_drafters(self, register):
            register(RepeatDrafter)

        @hookimpl
        def register_strategies(self, register):
            register(strategy)

    # greedy decoding of the toy attention model falls into repeats, so drafts get accepted
    engine = Engine(AttentionModel.random(6, seed=0))
    with registered_plugin(Plugin(), name="drafting"):
        drafted = engine.generate(PROMPTS, strategy="greedy_repeat", max_new_tokens=12)
    plain = engine.generate(PROMPTS, strategy="greedy", max_new_tokens=12)
    assert [c.token_ids for c in drafted] == [c.token_ids for c in plain]
    assert sum(c.stats.accepted_draft_tokens for c in drafted) > 0
    assert sum(c.stats.forward_passes for c in drafted) < sum(c.stats.forward_passes for c in plain)


class SecondBestVerifier(Verifier):
    """Commits the second most likely token (a deliberately different choice)."""

    name = "second_best"

    def select(self, view, output, draft):
        return Selection.single(output.logits[:, 0].topk(2).indices[:, 1].tolist())


def test_hook_register_verifiers():
    def build(params, context):
        return Pipeline(verifier=context.registry.get("verifiers", "second_best")())

    strategy = Strategy("second", "Second best.", GREEDY.params, Guarantee.NONE,
                        (("verifier", "second_best"),), build)

    class Plugin:
        @hookimpl
        def register_verifiers(self, register):
            register(SecondBestVerifier)

        @hookimpl
        def register_strategies(self, register):
            register(strategy)

    engine = markov_engine()
    model = engine.model
    with registered_plugin(Plugin(), name="verifying"):
        out = engine.generate([[3]], strategy="second", max_new_tokens=5)[0]
    previous = 3
    for token in out.token_ids:
        assert token == int(model.log_probs[previous].topk(2).indices[1])
        previous = token


class BanZero(LogitsProcessor):
    name = "ban_zero"

    def __call__(self, logits, view, draft):
        logits[..., 0] = -torch.inf
        return logits


def test_hook_register_samplers():
    class Plugin:
        @hookimpl
        def register_samplers(self, register):
            register(BanZero)

    # token 0 is very likely after every token in this chain
    logits = torch.zeros(5, 5)
    logits[:, 0] = 5.0
    engine = Engine(MarkovModel(logits))
    assert 0 in engine.generate([[1]], strategy="greedy", max_new_tokens=4)[0].token_ids
    with registered_plugin(Plugin(), name="banning"):
        out = engine.generate([[1]], strategy="sample", processors=["ban_zero"],
                              max_new_tokens=20, seed=0)[0]
    assert 0 not in out.token_ids and len(out.token_ids) == 20


class CountingCache(CachePolicy):
    name = "counting"
    calls = 0

    def evict(self, valid, positions):
        CountingCache.calls += 1
        return None


def test_hook_register_caches(tiny):
    class Plugin:
        @hookimpl
        def register_caches(self, register):
            register(CountingCache)

    engine = Engine(tiny)
    with registered_plugin(Plugin(), name="caching"):
        counted = engine.generate([5, 6, 7], strategy="greedy", cache="counting", max_new_tokens=6)
    plain = engine.generate([5, 6, 7], strategy="greedy", max_new_tokens=6)
    assert counted.token_ids == plain.token_ids
    assert CountingCache.calls == counted.stats.forward_passes


class TokenSet(CompiledConstraint):
    def __init__(self, allowed, vocab):
        self.allowed, self.vocab = allowed, vocab

    def start(self, rows):
        self.rows = rows

    def fill_bitmask(self, bitmask, draft):
        bitmask.zero_()
        for token in self.allowed:
            bitmask[..., token // 32] |= 1 << (token % 32)

    def advance(self, row, tokens):
        assert set(tokens) <= self.allowed

    def is_finished(self, row):
        return False

    def select_rows(self, rows):
        pass


class TokenSetFactory(ConstraintFactory):
    name = "token_set"

    def compile(self, spec, tokenizer):
        return TokenSet(set(spec["tokens"]), None)


def test_hook_register_constraints():
    class Plugin:
        @hookimpl
        def register_constraints(self, register):
            register(TokenSetFactory)

    engine = markov_engine(vocab=40)
    with registered_plugin(Plugin(), name="constraining"):
        out = engine.generate(PROMPTS, strategy="greedy", max_new_tokens=8,
                              constraint={"type": "token_set", "tokens": [3, 7, 33]})
    model = engine.model
    for prompt, completion in zip(PROMPTS, out, strict=True):
        previous = prompt[-1]
        for token in completion.token_ids:
            allowed = torch.full((40,), -torch.inf)
            allowed[[3, 7, 33]] = model.log_probs[previous][[3, 7, 33]]
            assert token == int(allowed.argmax())
            previous = token


def test_hook_select_kernel_backend():
    seen = []

    class Plugin:
        @hookimpl
        def select_kernel_backend(self, op, device):
            seen.append((op, device))
            return "reference"

    engine = markov_engine()
    with registered_plugin(Plugin(), name="backend"):
        request = engine.request(PROMPTS, strategy="sample", seed=0, max_new_tokens=6)
        assert request.pipeline.verifier.warper.backend == "reference"
        by_reference = engine.run(request).completions
    assert seen == [("sample", "cpu")]
    by_auto = engine.generate(PROMPTS, strategy="sample", seed=0, max_new_tokens=6)
    assert [c.token_ids for c in by_reference] == [c.token_ids for c in by_auto]


def test_hook_run_generation():
    calls = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def run_generation(self, request):
            calls.append(request.config.strategy)
            result = yield
            calls.append(result.stats.new_tokens)
            return result

    engine = markov_engine()
    with registered_plugin(Wrapper(), name="timing"):
        out = engine.generate([1], strategy="greedy", max_new_tokens=5)
    assert calls == ["greedy", len(out.token_ids)]


class ForceAfterThree(TokenSet):
    """Allows every token; after token 3 the next two tokens are forced to 5, 6."""

    def fill_bitmask(self, bitmask, draft):
        bitmask.fill_(-1)

    def advance(self, row, tokens):
        self.last = tokens[-1]

    def forced_tokens(self, row):
        return [5, 6] if self.last == 3 else []


def test_forced_tokens_are_committed_without_their_own_forward():
    logits = torch.full((8, 8), -5.0)
    logits[:, 3] = 5.0  # the chain always wants token 3
    engine = Engine(MarkovModel(logits))

    class Factory(ConstraintFactory):
        name = "force_after_three"

        def compile(self, spec, tokenizer):
            return ForceAfterThree(set(), None)

    class Plugin:
        @hookimpl
        def register_constraints(self, register):
            register(Factory)

    with registered_plugin(Plugin(), name="forcing"):
        out = engine.generate([[1]], strategy="greedy", max_new_tokens=9,
                              constraint={"type": "force_after_three"})[0]
    assert out.token_ids == [3, 5, 6, 3, 5, 6, 3, 5, 6]
    assert out.stats.forward_passes == 3
