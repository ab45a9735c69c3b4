"""decodekit-superposed: the n-gram filter, the superposed forward, k outputs per prompt."""

from __future__ import annotations

import math

import pytest
import torch
from decodekit_superposed import (
    Draft,
    NGramModel,
    SuperposedDecoder,
    default_corpus_path,
)

import decodekit
from decodekit.engine import Engine
from decodekit.errors import ConfigError


def test_registered_through_its_entry_point():
    entry = decodekit.get_registry().strategies["superposed"]
    assert entry.plugin == "superposed"
    assert entry.strategy.guarantee == "none"
    assert default_corpus_path().is_file()


def test_ngram_probabilities_by_hand():
    model = NGramModel(3).add([1, 2, 3, 1, 2, 4, 1, 2, 3])
    # bigram (2,) -> 3 twice, 4 once; trigram (1, 2) -> 3 twice, 4 once: weights 1 and 2
    assert model.prob([1, 2], 3) == pytest.approx((1 * 2 / 3 + 2 * 2 / 3) / 3)
    assert model.prob([5, 2], 4) == pytest.approx(1 / 3)  # only the bigram context was seen
    assert model.prob([7], 1) is None
    extra = NGramModel(3).add([2, 4])
    assert model.prob([5, 2], 4, extra) == pytest.approx(2 / 4)


def test_ngram_filter_reranks_candidates():
    """The LM prefers token 0, the n-gram model has only seen 1 after the context (k=2)."""
    corpus = NGramModel(2).add([7, 1, 7, 1])
    probs = torch.tensor([0.6, 0.4, 0.0, 0.0])
    off = SuperposedDecoder(2, 0.0, corpus)._extend([Draft()], probs, [7], NGramModel(2),
                                                    frozenset())
    on = SuperposedDecoder(2, 0.8, corpus)._extend([Draft()], probs, [7], NGramModel(2),
                                                   frozenset())
    assert [d.tokens for d in off] == [[0], [1]]
    assert [d.tokens for d in on] == [[1], [0]]
    assert on[0].logprob == pytest.approx(math.log(0.2 * 0.4 + 0.8 * 1.0))


def test_extend_keeps_finished_drafts_and_k_best():
    decoder = SuperposedDecoder(3, 0.0, NGramModel(2))
    drafts = [Draft([5], math.log(0.5), finished=True), Draft([6], math.log(0.3)),
              Draft([7], math.log(0.2))]
    probs = torch.tensor([0.1, 0.7, 0.2])
    out = decoder._extend(drafts, probs, [], NGramModel(2), frozenset({2}))
    assert out[0] is drafts[0]
    assert [d.tokens for d in out[1:]] == [[6, 1], [7, 1]]
    assert out[1].logprob == pytest.approx(math.log(0.3 * 0.7))
    assert not out[1].finished


def test_k1_without_filter_is_greedy(tiny):
    engine = Engine(tiny)
    prompts = [[1, 5, 9, 13], [1, 40, 41]]
    greedy = engine.generate(prompts, strategy="greedy", max_new_tokens=16)
    out = engine.generate(prompts, strategy="superposed", k=1, ngram_weight=0.0,
                          max_new_tokens=16)
    assert [c.token_ids for c in out] == [g.token_ids for g in greedy]


def reference_superposed(hf, prompt: list[int], steps: int, k: int) -> list[list[int]]:
    """Superposed decoding without a cache (filter off): every step recomputes the whole
    input, the prompt's embeddings followed by every superposed embedding so far."""
    embed = hf.get_input_embeddings()
    inputs = embed(torch.tensor(prompt))  # [T, H]
    drafts: list[tuple[list[int], float]] = [([], 0.0)]
    with torch.inference_mode():
        for step in range(steps):
            logits = hf(inputs_embeds=inputs.unsqueeze(0)).logits[0, -1]
            probs = torch.softmax(logits.float(), -1)
            values, ids = torch.topk(probs, k)
            candidates = [(lp + math.log(v), i, t) for i, (tokens, lp) in enumerate(drafts)
                          for t, v in zip(ids.tolist(), values.tolist(), strict=True)]
            candidates.sort(key=lambda c: -c[0])
            drafts = [([*drafts[i][0], t], s) for s, i, t in candidates[:k]]
            if step < steps - 1:
                weights = torch.softmax(torch.tensor([lp for _, lp in drafts]), 0)
                last = embed(torch.tensor([tokens[-1] for tokens, _ in drafts]))
                mixed = (weights.unsqueeze(1) * last).sum(0)
                inputs = torch.cat([inputs, mixed.unsqueeze(0)])
    drafts.sort(key=lambda d: -d[1])
    return [tokens for tokens, _ in drafts]


def test_matches_cache_free_reference_on_tiny_model(tiny):
    """Shared cache and positions of the superposed inputs: equal to full recomputation."""
    prompt = [1, 5, 9, 13, 20]
    out = Engine(tiny).generate([prompt], strategy="superposed", k=3, ngram_weight=0.0,
                                max_new_tokens=12, stop=[])
    assert len(out) == 3 and all(c.prompt_index == 0 for c in out)
    assert [c.token_ids for c in out] == reference_superposed(tiny.hf, prompt, 12, 3)
    assert all(c.stats.forward_passes == 12 for c in out)  # one forward per token
    scores = [c.score for c in out]
    assert scores == sorted(scores, reverse=True)


def test_k_outputs_per_prompt_on_a_batch(tiny):
    out = Engine(tiny).generate([[1, 5, 9], [1, 40, 41, 42]], strategy="superposed", k=3,
                                max_new_tokens=10)
    assert [c.prompt_index for c in out] == [0, 0, 0, 1, 1, 1]
    for index in (0, 1):
        drafts = [tuple(c.token_ids) for c in out if c.prompt_index == index]
        assert len(set(drafts)) == 3 and all(len(d) == 10 for d in drafts)


def test_four_prompts_in_one_call_equal_each_prompt_alone(tiny):
    """Batched in the loop: a prompt's k drafts do not depend on the prompts beside it
    (left padding, shared forwards, rows finishing at different steps), in float32."""
    prompts = [[1, 5, 9, 13, 20], [1, 40], [1, 7, 7, 7, 3, 2, 60], [1, 90, 91]]
    settings = {"strategy": "superposed", "k": 3, "ngram_weight": 0.5, "max_new_tokens": 12}
    engine = Engine(tiny)
    batched = engine.generate(prompts, **settings)
    assert [c.prompt_index for c in batched] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    for index, prompt in enumerate(prompts):
        alone = engine.generate([prompt], **settings)
        together = [c for c in batched if c.prompt_index == index]
        assert [c.token_ids for c in together] == [c.token_ids for c in alone]
        assert [c.score for c in together] == pytest.approx([c.score for c in alone], abs=1e-5)
    # one forward per step for the whole batch, not one per prompt
    assert engine.run(engine.request(prompts, **settings)).stats.forward_passes == 12


def test_stop_strings_cut_each_draft(tiny):
    """The loop checks the reported drafts, not the carrier row, for stop strings."""

    class Text:
        def decode(self, ids):
            return " ".join(map(str, ids))

    engine = Engine(tiny)
    full = engine.generate([[1, 5, 9]], strategy="superposed", k=3, max_new_tokens=8)
    second = str(full[0].token_ids[1])
    tiny_decode = tiny.decode
    try:
        tiny.decode = Text().decode  # the tiny model has no tokenizer: ids as text
        cut = engine.generate([[1, 5, 9]], strategy="superposed", k=3, max_new_tokens=8,
                              stop=[" " + second + " "])
    finally:
        tiny.decode = tiny_decode
    assert cut[0].finish_reason == "stop" and cut[0].text == str(full[0].token_ids[0])
    assert [c.token_ids for c in cut] == [c.token_ids for c in full]  # tokens are kept


def test_bad_input_names_the_field(tiny, tmp_path):
    engine = Engine(tiny)
    with pytest.raises(ConfigError, match=r"params\.k"):
        engine.generate([[1, 2]], strategy="superposed", k=0)
    with pytest.raises(ConfigError, match=r"params\.ngram_weight"):
        engine.generate([[1, 2]], strategy="superposed", ngram_weight=1.5)
    with pytest.raises(ConfigError, match=r"params\.corpus: file not found"):
        engine.generate([[1, 2]], strategy="superposed", corpus=str(tmp_path / "none.txt"))
    with pytest.raises(ConfigError, match=r"constraint: strategy 'superposed' does not support"):
        engine.request([[1, 2]], strategy="superposed",
                       constraint={"type": "choice", "choices": ["a"]})
    with pytest.raises(ConfigError, match=r"processors: strategy 'superposed' does not support"):
        engine.request([[1, 2]], strategy="superposed", processors=["penalties"])


@pytest.mark.smollm2
def test_smollm2_three_drafts_with_a_user_corpus(smollm2, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The dragon was afraid of the dark. The dragon slept in a cave.\n")
    out = smollm2.generate("Write a story about a dragon.", strategy="superposed", k=3,
                           corpus=str(corpus), max_new_tokens=24)
    assert len(out) == 3
    assert len({tuple(c.token_ids) for c in out}) == 3
    assert all(c.text.strip() for c in out)
    greedy = smollm2.generate("Write a story about a dragon.", strategy="greedy",
                              max_new_tokens=24)
    single = smollm2.generate("Write a story about a dragon.", strategy="superposed", k=1,
                              ngram_weight=0.0, max_new_tokens=24)
    assert single.token_ids == greedy.token_ids
