"""Beam strategies side by side in one run: decodekit greedy, beam, diverse_beam,
stochastic_beam and transformers' beam search, on the embedded SmolLM2 (CPU, float32).

Batch 1, the same prompt for everyone. Each repetition runs the contenders back to back
in rotating order; the table reports the median tokens/s (tokens of the best returned
sequence per second of wall time, so beam strategies pay for their beams) and the ratio
to transformers' beam search. decodekit's beam output is checked against transformers'
(same tokens). A second table measures how much the returned beams overlap: the mean
pairwise Jaccard overlap of their distinct bigram sets (lower is more diverse).

    python benchmarks/beam.py [--tokens 32] [--repeats 3] [--out benchmarks/results/beam.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from decodekit import Engine

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
OVERLAP_PROMPTS = [
    "Write a short poem about the sea.",
    "Give me a name for a coffee shop.",
    "Describe a sunset in one sentence.",
]
BEAMS = 4


def bigram_overlap(sequences: list[list[int]]) -> float:
    """Mean pairwise Jaccard overlap of the sequences' distinct bigram sets."""
    grams = [{tuple(s[i : i + 2]) for i in range(len(s) - 1)} for s in sequences]
    pairs = [(a, b) for i, a in enumerate(grams) for b in grams[i + 1 :]]
    return sum(len(a & b) / max(len(a | b), 1) for a, b in pairs) / max(len(pairs), 1)


def contenders(engine: Engine, ids: list[int], tokens: int) -> dict[str, Callable[[], list[int]]]:
    """Name -> a function that generates and returns the best sequence's token ids."""
    model = engine.model
    eos = sorted(model.eos_token_ids)

    def hf_beam() -> list[int]:
        out = model.hf.generate(
            input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=tokens, do_sample=False, num_beams=BEAMS, pad_token_id=eos[0],
            eos_token_id=eos,
        )
        row = out[0, len(ids) :].tolist()
        end = next((i for i, t in enumerate(row) if t in model.eos_token_ids), None)
        return row if end is None else row[: end + 1]

    def ours(strategy: str, **params: object) -> Callable[[], list[int]]:
        def run() -> list[int]:
            out = engine.generate([ids], strategy=strategy, max_new_tokens=tokens, seed=0,
                                  **params)
            return out[0].token_ids

        return run

    return {
        "transformers beam (4)": hf_beam,
        "decodekit greedy": ours("greedy"),
        "decodekit beam (4)": ours("beam", num_beams=BEAMS),
        "decodekit diverse_beam (4 beams, 2 groups, penalty 0.5)": ours(
            "diverse_beam", num_beams=BEAMS, num_groups=2, diversity_penalty=0.5
        ),
        "decodekit stochastic_beam (k=4)": ours("stochastic_beam", num_beams=BEAMS),
    }


def measure_speed(engine: Engine, tokens: int, repeats: int) -> dict[str, list[float]]:
    ids = engine.model.encode(PROMPT)
    runners = contenders(engine, ids, tokens)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    outputs: dict[str, list[int]] = {}
    for run in contenders(engine, ids, 4).values():  # warm up (short)
        run()
    for rep in range(repeats):
        names = list(runners)
        names = names[rep % len(names) :] + names[: rep % len(names)]
        for name in names:
            start = time.perf_counter()
            produced = runners[name]()
            rates[name].append(len(produced) / (time.perf_counter() - start))
            outputs[name] = produced
    assert outputs["decodekit beam (4)"] == outputs["transformers beam (4)"], "beam differs"
    return rates


def measure_overlap(engine: Engine, tokens: int) -> dict[str, float]:
    settings = {
        "beam (4)": dict(strategy="beam", num_beams=BEAMS),
        "diverse_beam (4 beams, 4 groups, penalty 0.5)": dict(
            strategy="diverse_beam", num_beams=BEAMS, num_groups=4, diversity_penalty=0.5
        ),
        "diverse_beam (4 beams, 4 groups, penalty 2.0)": dict(
            strategy="diverse_beam", num_beams=BEAMS, num_groups=4, diversity_penalty=2.0
        ),
        "stochastic_beam (k=4)": dict(strategy="stochastic_beam", num_beams=BEAMS, seed=0),
    }
    result = {}
    for name, params in settings.items():
        extra = {} if params["strategy"] == "stochastic_beam" else {"num_return_sequences": BEAMS}
        outs = engine.generate(OVERLAP_PROMPTS, max_new_tokens=tokens, **params, **extra)
        per_prompt = [
            [c.token_ids for c in outs if c.prompt_index == i] for i in range(len(OVERLAP_PROMPTS))
        ]
        result[name] = statistics.mean(bigram_overlap(s) for s in per_prompt)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/beam.md"))
    args = parser.parse_args()
    engine = Engine()
    rates = measure_speed(engine, args.tokens, args.repeats)
    base = statistics.median(rates["transformers beam (4)"])
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, CPU, float32. Batch 1, up to {args.tokens} new "
        f"tokens, median of {args.repeats} interleaved runs. tokens/s counts the best "
        "returned sequence. decodekit beam (4) returned the same tokens as transformers.",
        "",
        "| contender | tokens/s (median) | min | max | ratio to transformers beam |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, values in rates.items():
        median = statistics.median(values)
        lines.append(
            f"| {name} | {median:.1f} | {min(values):.1f} | {max(values):.1f} | "
            f"{median / base:.2f}x |"
        )
        print(lines[-1], flush=True)
    overlap = measure_overlap(engine, args.tokens)
    lines += [
        "",
        f"Overlap of the 4 returned sequences ({len(OVERLAP_PROMPTS)} prompts, up to "
        f"{args.tokens} new tokens): mean pairwise Jaccard overlap of distinct bigrams.",
        "",
        "| strategy | bigram overlap |",
        "| --- | --- |",
    ]
    for name, value in overlap.items():
        lines.append(f"| {name} | {value:.3f} |")
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
