"""Row independence: a row's tokens depend on its prompt, the parameters and its seed only.

docs/concepts.md promises that the rows of a batch are independent. For every installed
strategy (and, for ``speculative``, every drafter with adaptive draft length on and off),
each prompt is run alone and inside a batch of prompts of different lengths, with the same
per-row seed both times (``seed`` given as a list), and the tokens must be identical, and
so must every row's forward and draft counts (drafts too must not depend on the batch;
``token_recycling``, whose table the rows share by design, is held to its tokens only).
The model is the tiny random Llama in float32 (real attention, KV cache with holes and
left padding), so the check is cheap but runs the real model path.

Beam strategies are covered too: their rows are a prompt's beams, which compete with each
other by design; what must hold is that one prompt's hypotheses never depend on another
prompt of the batch, so results are compared per prompt (all returned sequences).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from decodekit import Engine, get_registry
from decodekit.model import HFModel
from decodekit.settings import row_seeds as _seeds

# repeated n-grams so prompt lookup finds matches; lengths 7, 1, 14 and 5
PROMPTS = [
    [5, 9, 11, 5, 9, 11, 5],
    [7],
    [3, 3, 8, 20, 41, 12, 3, 3, 8, 20, 41, 12, 3, 3],
    [60, 61, 62, 60, 61],
]
SEEDS = [1001, 7, 123456789, 42]
TOKENS = 20
SAMPLING = {"temperature": 0.9, "top_p": 0.95}
#: Colder for speculative cases: layer_skip's default confidence threshold (0.3) then
#: drafts, and stops, at different depths in different rows.
SPECULATIVE_SAMPLING = {"temperature": 0.6, "top_p": 0.95}

#: Stands for the in-memory draft model of the ``draft_model`` cases (built per session).
DRAFT_MODEL = "<perturbed tiny llama>"


def _speculative_cases() -> list[Any]:
    drafters: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("draft_model", {"model": DRAFT_MODEL}, {}),
        ("layer_skip", {}, {}),  # default confidence threshold: drafts end at row-own depths
        ("prompt_lookup", {}, {}),
        ("prompt_lookup", {"num_candidates": 3}, {"max_nodes": 8}),
        ("prompt_lookup", {}, {"verify": "chain"}),
        ("token_recycling", {}, {}),
        ("token_recycling", {"persistent": True}, {}),
    ]
    cases = []
    for drafter, options, extra in drafters:
        for adaptive in (False, True):
            label = "-".join([drafter, *(f"{k}={v}" for k, v in {**options, **extra}.items()
                                         if v is not DRAFT_MODEL)])
            params = {"drafter": drafter, "drafter_options": options, "draft_length": 4,
                      "adaptive": adaptive, **SPECULATIVE_SAMPLING, **extra}
            cases.append(pytest.param("speculative", params,
                                      id=f"speculative-{label}-adaptive={adaptive}"))
    cases.append(pytest.param(
        "speculative", {"drafter": "layer_skip", "temperature": 0.0, "adaptive": True},
        id="speculative-layer_skip-greedy-adaptive=True",
    ))
    cases.append(pytest.param(
        "speculative",
        {"drafter": "prompt_lookup", "repetition_penalty": 1.3, **SPECULATIVE_SAMPLING},
        id="speculative-prompt_lookup-penalties",
    ))
    return cases


CASES = [
    pytest.param("greedy", {}, id="greedy"),
    pytest.param("sample", SAMPLING, id="sample"),
    pytest.param("sample", {"temperature": 1.0, "top_k": 20, "presence_penalty": 0.5},
                 id="sample-top_k-penalties"),
    pytest.param("mirostat", {"tau": 3.0}, id="mirostat"),
    pytest.param("contrastive", {"top_k": 4, "alpha": 0.6}, id="contrastive"),
    pytest.param("superposed", {"k": 3}, id="superposed"),
    # a prompt's beams compete with each other (that is beam search); prompts must not
    pytest.param("beam", {"num_beams": 3, "num_return_sequences": 2}, id="beam"),
    pytest.param("diverse_beam", {"num_beams": 4, "num_groups": 2, "num_return_sequences": 2},
                 id="diverse_beam"),
    pytest.param("stochastic_beam", {"num_beams": 3}, id="stochastic_beam"),
    *_speculative_cases(),
]


@pytest.fixture(scope="module")
def engine(tiny):
    return Engine(tiny)


@pytest.fixture(scope="module")
def draft_model(tiny):
    """Another tiny Llama close to the target (noise on its LM head): partial acceptance."""
    hf = copy.deepcopy(tiny.hf)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        weight = hf.lm_head.weight
        weight.add_(torch.randn(weight.shape, generator=generator) * weight.std() * 0.7)
    return HFModel(hf, None, name="tiny-perturbed")


def _by_prompt(completions: list[Any], stats: bool) -> dict[int, list[Any]]:
    """Per prompt, its completions' tokens (and draft statistics, with ``stats``)."""
    rows: dict[int, list[Any]] = {}
    for c in completions:
        row: Any = list(c.token_ids)
        if stats:
            row = (row, c.stats.forward_passes, c.stats.drafted_tokens,
                   c.stats.accepted_draft_tokens)
        rows.setdefault(c.prompt_index, []).append(row)
    return rows


def _drafts_are_row_independent(params: dict[str, Any]) -> bool:
    """Whether a row's drafts, not only its tokens, must equal alone and in a batch.

    ``token_recycling`` shares its adjacency table across the rows of a call (and across
    calls with ``persistent``): what a row drafts, hence its draft statistics, depends on
    the batch by design. Its tokens must not, and are checked.
    """
    return params.get("drafter") != "token_recycling"


def test_every_installed_strategy_is_covered():
    covered = {case.values[0] for case in CASES}
    missing = set(get_registry().strategies) - covered
    assert not missing, f"add row-independence cases for {sorted(missing)}"


@pytest.mark.parametrize(("strategy", "params"), CASES)
def test_a_row_alone_equals_the_row_in_a_batch(engine, draft_model, strategy, params):
    params = dict(params)
    if params.get("drafter_options", {}).get("model") == DRAFT_MODEL:
        params["drafter_options"] = {**params["drafter_options"], "model": draft_model}
    settings = {"strategy": strategy, "max_new_tokens": TOKENS, **params}
    stats = _drafts_are_row_independent(params)
    batch = engine.generate(PROMPTS, seed=SEEDS, **settings)
    together = _by_prompt(batch, stats)
    assert sorted(together) == list(range(len(PROMPTS)))
    for i, (prompt, seed) in enumerate(zip(PROMPTS, SEEDS, strict=True)):
        alone = _by_prompt(engine.generate([prompt], seed=[seed], **settings), stats)
        assert alone[0] == together[i], f"prompt {i} (length {len(prompt)}) changed in a batch"
    if strategy == "speculative":  # the check must have gone through draft verification
        assert sum(c.stats.accepted_draft_tokens for c in batch) > 0


# ------------------------------------------------------------------ seed derivation


def test_integer_seeds_give_distinct_rows_and_keep_a_single_prompt_reproducible():
    assert _seeds(5, 1) == [5]  # one prompt with seed=s is seeded with s itself
    assert _seeds(5, 3)[0] == 5
    assert _seeds(5, 3) == _seeds(5, 3)
    rows = 64
    seen = [seed for base in range(rows) for seed in _seeds(base, rows)]
    assert len(set(seen)) == len(seen)  # seed=0 and seed=1 used to share rows 1.. and 0..
    assert all(0 <= seed < 2**63 for seed in seen)


def test_consecutive_integer_seeds_do_not_repeat_a_batchs_rows(engine):
    prompts = [[5, 9, 11], [5, 9, 11]]
    first = engine.generate(prompts, strategy="sample", seed=0, max_new_tokens=12)
    second = engine.generate(prompts, strategy="sample", seed=1, max_new_tokens=12)
    assert first[1].token_ids != second[0].token_ids
    alone = engine.generate([5, 9, 11], strategy="sample", seed=0, max_new_tokens=12)
    assert alone.token_ids == first[0].token_ids
