"""Superposed decoding (k=3) against one greedy generation, and draft perplexities.

Speed: embedded SmolLM2-135M-Instruct on CPU, batch 1, the same prompt and token limit.
Each repetition runs greedy decoding (decodekit's loop) and superposed decoding (``k=3``,
three drafts from one forward per token) back to back in alternating order; the table
reports median wall times and their ratio. Superposed decoding yields 3 sequences in
that time; a third contender decodes 4 copies of the prompt in one call (12 sequences),
the prompts sharing every forward of the decode loop.

Quality: on three prompts, 64 new tokens, the perplexity of every draft under the model
itself (float32, the prompt as context), by draft rank, next to nucleus sampling
(``top_p=0.9``, 3 seeds per prompt) and greedy. Lower is more likely text.

    python benchmarks/superposed.py [--tokens 64] [--repeats 5] [--dtype float32]
        [--out benchmarks/results/superposed.md]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from decodekit import Engine

SPEED_PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
QUALITY_PROMPTS = [
    "Write a story about a dragon who is afraid of the dark.",
    "Describe your ideal weekend in detail.",
    "Explain why people enjoy music.",
]


def perplexity(engine: Engine, prompt_ids: list[int], tokens: list[int]) -> float:
    """``exp`` of the mean negative log-likelihood of ``tokens`` after ``prompt_ids``."""
    if not tokens:
        return float("nan")
    hf = engine.model.hf
    ids = torch.tensor([prompt_ids + tokens])
    with torch.inference_mode():
        logits = hf(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)
    nll = -logp.gather(1, torch.tensor(tokens).unsqueeze(1)).mean()
    return math.exp(float(nll))


def measure_speed(dtype: str, tokens: int, repeats: int) -> dict[str, list[tuple[float, int]]]:
    """Wall seconds and generated positions for each contender, interleaved runs."""
    engine = Engine(dtype=dtype)  # type: ignore[arg-type]
    ids = engine.model.encode(SPEED_PROMPT)
    # name: (settings, prompts in the call); the batched run decodes 4 prompts in one call
    runs = {"greedy": ({}, 1), "superposed k=3": ({"k": 3}, 1),
            "superposed k=3, 4 prompts": ({"k": 3}, 4)}
    results: dict[str, list[tuple[float, int]]] = {name: [] for name in runs}

    def once(name: str) -> tuple[float, int]:
        strategy = name.split()[0]
        settings, copies = runs[name]
        start = time.perf_counter()
        out = engine.generate([ids] * copies, strategy=strategy, max_new_tokens=tokens,
                              **settings)
        return time.perf_counter() - start, max(len(c.token_ids) for c in out)

    for name in runs:
        once(name)
    for rep in range(repeats):
        order = list(runs) if rep % 2 == 0 else list(reversed(runs))
        for name in order:
            results[name].append(once(name))
            print(f"  {name}: {results[name][-1][0]:.2f}s", flush=True)
    return results


def measure_quality(tokens: int) -> dict[str, list[float]]:
    """Perplexity per draft rank, nucleus sample and greedy output, over the prompts."""
    engine = Engine()
    ppl: dict[str, list[float]] = {}
    for prompt in QUALITY_PROMPTS:
        ids = engine.model.encode(prompt)
        drafts = engine.generate([ids], strategy="superposed", k=3, max_new_tokens=tokens)
        for rank, completion in enumerate(drafts, 1):
            ppl.setdefault(f"superposed draft {rank}", []).append(
                perplexity(engine, ids, completion.token_ids))
        for seed in range(3):
            sample = engine.generate([ids], strategy="sample", top_p=0.9, seed=seed,
                                     max_new_tokens=tokens)[0]
            ppl.setdefault("nucleus top_p=0.9", []).append(
                perplexity(engine, ids, sample.token_ids))
        greedy = engine.generate([ids], strategy="greedy", max_new_tokens=tokens)[0]
        ppl.setdefault("greedy", []).append(perplexity(engine, ids, greedy.token_ids))
    return ppl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 keeps ratios stable on a shared machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/superposed.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    speed = measure_speed(args.dtype, args.tokens, args.repeats)
    greedy = statistics.median(s for s, _ in speed["greedy"])
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, CPU, {args.dtype}. Batch 1, {args.tokens} new "
        f"tokens, median of {args.repeats} interleaved runs; the last row decodes 4 prompts in "
        "one call.",
        "",
        "| contender | sequences | wall s (median) | min | max | positions | ratio to greedy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, values in speed.items():
        seconds = [s for s, _ in values]
        median = statistics.median(seconds)
        count = (3 if name.startswith("superposed") else 1) * (4 if "4 prompts" in name else 1)
        lines.append(f"| {name} | {count} | {median:.2f} | {min(seconds):.2f} | "
                     f"{max(seconds):.2f} | {values[0][1]} | {median / greedy:.2f}x |")
    ppl = measure_quality(args.tokens)
    lines += [
        "",
        f"Perplexity under the model (float32) of {args.tokens}-token outputs on "
        f"{len(QUALITY_PROMPTS)} prompts (mean; nucleus: 3 seeds per prompt):",
        "",
        "| output | mean perplexity | min | max |",
        "| --- | --- | --- | --- |",
    ]
    for name, values in ppl.items():
        lines.append(f"| {name} | {statistics.mean(values):.2f} | {min(values):.2f} | "
                     f"{max(values):.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
