"""Decode-loop behaviour on toy models: stopping, determinism, streaming, errors."""

import pytest
import torch

from decodekit.engine import Engine
from decodekit.errors import ConfigError, PromptError
from decodekit.settings import row_seeds as _seeds
from decodekit.testing import MarkovModel


@pytest.fixture
def engine():
    return Engine(MarkovModel.random(8, seed=4, eos_token_id=7))


def test_per_row_finish_reasons_and_eos(engine):
    out = engine.generate([[0], [1], [2], [3]] * 4, strategy="sample", seed=0, max_new_tokens=10)
    reasons = {c.finish_reason for c in out}
    assert reasons == {"stop", "length"}
    for completion in out:
        if completion.finish_reason == "stop":
            assert completion.token_ids[-1] == 7 and 7 not in completion.token_ids[:-1]
        else:
            assert len(completion.token_ids) == 10 and 7 not in completion.token_ids


def test_same_seed_same_output_and_rows_independent_of_batch(engine):
    first = engine.generate([[0], [1], [2]], strategy="sample", seed=5, max_new_tokens=12)
    again = engine.generate([[0], [1], [2]], strategy="sample", seed=5, max_new_tokens=12)
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    row_seed = _seeds(5, 3)[1]  # the seed row 1 of a seed-5 call gets
    alone = engine.generate([[1]], strategy="sample", seed=[row_seed], max_new_tokens=12)
    assert alone[0].token_ids == first[1].token_ids
    other = engine.generate([[0], [1], [2]], strategy="sample", seed=99, max_new_tokens=12)
    assert [c.token_ids for c in other] != [c.token_ids for c in first]


def test_stop_strings_cut_the_text():
    model = MarkovModel(torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]]))
    engine = Engine(model)
    out = engine.generate([[0]], strategy="greedy", stop=["2 0"], max_new_tokens=20)[0]
    assert out.finish_reason == "stop"
    assert out.text == "1 "
    assert out.token_ids == [1, 2, 0]


def test_stream_yields_the_same_tokens_as_generate(engine):
    stream = engine.stream([[0], [5]], strategy="sample", seed=2, max_new_tokens=9)
    pieces: dict[int, list[int]] = {0: [], 1: []}
    finished = {}
    for chunk in stream:
        pieces[chunk.prompt_index] += chunk.token_ids
        if chunk.finish_reason:
            finished[chunk.prompt_index] = chunk.finish_reason
    full = engine.generate([[0], [5]], strategy="sample", seed=2, max_new_tokens=9)
    assert [pieces[0], pieces[1]] == [c.token_ids for c in full]
    assert stream.result is not None
    assert [c.finish_reason for c in stream.result.completions] == [finished[0], finished[1]]


def test_stats(engine):
    out = engine.generate([0], strategy="greedy", max_new_tokens=6)
    stats = out.stats
    assert stats.new_tokens == len(out.token_ids)
    assert stats.forward_passes == len(out.token_ids)
    assert stats.seconds > 0 and stats.tokens_per_second > 0
    assert stats.mean_accepted_per_forward == 1.0
    assert out.as_dict()["stats"]["finish_reason"] == out.finish_reason


def test_context_limit_ends_rows_with_length():
    engine = Engine(MarkovModel.random(5, seed=1, context_length=6))
    out = engine.generate([[0, 1, 2, 3]], strategy="greedy", max_new_tokens=50)[0]
    assert len(out.token_ids) == 2 and out.finish_reason == "length"


def test_bad_prompts(engine):
    with pytest.raises(PromptError, match="prompt 1 is empty"):
        engine.generate([[0], []], strategy="greedy")
    with pytest.raises(PromptError, match="prompt 0 is empty"):
        engine.generate("   ", strategy="greedy")
    with pytest.raises(PromptError, match="outside the vocabulary"):
        engine.generate([[0, 99]], strategy="greedy")
    short = Engine(MarkovModel.random(5, context_length=4))
    with pytest.raises(PromptError, match="prompt 0 is 4 tokens long; the model's context holds 4"):
        short.generate([[0, 1, 2, 3]], strategy="greedy")
    with pytest.raises(PromptError, match="no prompts"):
        engine.generate([], strategy="greedy")


def test_bad_settings(engine):
    with pytest.raises(ConfigError, match=r"params\.top_p"):
        engine.generate([[0]], strategy="sample", top_p=0)
    with pytest.raises(ConfigError, match="one per prompt"):
        engine.generate([[0], [1]], strategy="sample", seed=[1])
    with pytest.raises(ConfigError, match="Unknown sampler 'nope'"):
        engine.generate([[0]], strategy="greedy", processors=["nope"])
    with pytest.raises(ConfigError, match="Unknown constraint 'json'"):
        engine.generate([[0]], strategy="greedy", constraint={"type": "json"})


def test_settings_override_config_and_switching_strategy_never_drops_params(engine):
    from decodekit.settings import validate_config

    config = validate_config({"strategy": "sample", "params": {"temperature": 0.5}})
    request = engine.request([[0]], config, top_k=3)
    assert request.config.params.temperature == 0.5 and request.config.params.top_k == 3
    # a strategy that does not take the config's parameters refuses them by name
    with pytest.raises(ConfigError, match=r"params temperature of the config \(strategy 'sample'\)"):
        engine.request([[0]], config, strategy="greedy")
    assert engine.request([[0]], {"strategy": "sample"}, strategy="greedy").config.strategy == "greedy"


def test_row_state_follows_the_rows_and_ends_in_the_row_results():
    """Selection.row_state is kept by the loop: reordered and forked with row_sources,
    dropped with finished rows, and a finished row's values land in RowResult.state."""
    from decodekit.contracts import Selection, Verifier
    from decodekit.loop import run, start
    from decodekit.strategy import Pipeline

    seen = []

    class Forking(Verifier):
        name = "forking"

        def select(self, view, output, draft):
            rows = len(view.sequences)
            seen.append(None if view.row_state is None else view.row_state["mark"].tolist())
            if view.step == 0:  # fork the one row into three, marked 10, 11, 12
                sources = [0, 0, 0]
                mark = torch.tensor([10.0, 11.0, 12.0])
            else:  # reverse the rows, and add the step to each mark
                sources = list(reversed(range(rows)))
                mark = view.row_state["mark"][sources] + 100.0
            return Selection(
                tokens=[[1 + s] for s in range(len(sources))],
                kept_nodes=[[] for _ in sources], accepted_draft=[0] * len(sources),
                row_sources=torch.tensor(sources), row_state={"mark": mark},
            )

    model = MarkovModel.random(4, seed=0)
    state = start(model, [[0]], max_new_tokens=3, seeds=[0])
    list(run(state, Pipeline(verifier=Forking())))
    assert seen == [None, [10.0, 11.0, 12.0], [112.0, 111.0, 110.0]]
    # after three steps: step 1 reversed (12, 11, 10) + 100, step 2 reversed again + 100
    assert sorted(row.state["mark"] for row in state.done) == [210.0, 211.0, 212.0]
    assert all(len(row.token_ids) == 3 for row in state.done)
