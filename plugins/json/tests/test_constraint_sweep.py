"""No strategy ever commits a token the constraint forbids, in either dtype, for any seed.

A sweep over dev schemas x every strategy that takes constraints x float32 and bfloat16 x
every available device (the ``device`` fixture: the CPU, and CUDA on a GPU machine) x
several seeds (one row per seed, in one batch). Two checks per output: the generation
itself raises if a committed token is not allowed (the matcher refuses it), and a fresh
matcher, compiled apart from the run, accepts every committed token in order. Small on
purpose (short outputs); ``benchmarks/constrained.py --generate`` is the large sweep.
"""

from __future__ import annotations

import pytest
from decodekit_json import compile_constraint, maskbench

pytestmark = pytest.mark.smollm2

TOKENS = 16
SEEDS = [0, 1, 2]
STRATEGIES = [
    ("greedy", {}),
    ("sample", {}),
    ("sample", {"temperature": 1.3, "top_p": 0.95}),
    ("mirostat", {}),
    ("beam", {"num_beams": 2}),
    ("stochastic_beam", {"num_beams": 2}),
    ("contrastive", {"top_k": 4, "alpha": 0.6}),
    ("speculative", {"drafter": "prompt_lookup"}),
]


@pytest.fixture(scope="module")
def schemas(maskbench_entries):
    """Dev schemas of different shapes, evenly spread over the file."""
    return maskbench.generation_schemas(maskbench_entries, 2, max_chars=600)


_engines: dict[tuple[str, str], object] = {}


@pytest.fixture
def engine(request, dtype, device):
    """SmolLM2 in ``dtype`` on ``device`` (the session's engine for float32 on the CPU)."""
    from decodekit import Engine

    if (device, dtype) == ("cpu", "float32"):
        return request.getfixturevalue("smollm2")
    if (device, dtype) not in _engines:
        _engines[device, dtype] = Engine(dtype=dtype, device=device)
    return _engines[device, dtype]


def spec_of(entry):
    return {"type": "json_schema", "schema": entry["schema"]}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize(("strategy", "params"), STRATEGIES,
                         ids=[f"{s}-{i}" for i, (s, _) in enumerate(STRATEGIES)])
def test_every_committed_token_is_allowed(engine, schemas, dtype, device, strategy, params):
    if strategy not in engine.registry.strategies:
        pytest.fail(f"strategy {strategy!r} is not installed")
    tokenizer = engine.model.tokenizer
    for entry in schemas:
        prompt = maskbench.prompt_for(entry["schema"])
        outputs = engine.generate(
            [prompt] * len(SEEDS), strategy=strategy, max_new_tokens=TOKENS, seed=SEEDS,
            constraint=spec_of(entry), **params,
        )
        for out in outputs:
            fresh = compile_constraint(spec_of(entry), tokenizer)
            fresh.start(1)
            fresh.advance(0, out.token_ids)  # raises on the first token it does not allow
