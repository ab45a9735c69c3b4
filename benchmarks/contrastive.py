"""Contrastive search against greedy decoding: time per token and repetition, one run.

Speed: embedded SmolLM2-135M-Instruct in bfloat16 on CPU, batch 1. Each repetition runs
greedy and contrastive search (``top_k=4, alpha=0.6``) back to back, in alternating order;
the table reports the median milliseconds per generated token and the ratio. Contrastive
search scores its ``k`` candidates in one forward (a depth-1 tree of ``k`` siblings), so
it pays one forward per token, with ``k`` query positions instead of one.

Repetition: four open-ended prompts, 128 new tokens each (float32, batch of 4); for each
strategy ``rep-n = 1 - unique n-grams / n-grams`` of the generated tokens (Su et al., 2022),
averaged over prompts. Lower means less repetition.

    python benchmarks/contrastive.py [--tokens 64] [--repeats 5] [--rep-tokens 128]
        [--out benchmarks/results/contrastive.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from decodekit import Engine

SPEED_PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
OPEN_PROMPTS = [
    "Write a story about a dragon who is afraid of the dark.",
    "Describe your ideal weekend in detail.",
    "Tell me about the history of the city you like most.",
    "Explain why people enjoy music.",
]
CONTRASTIVE = {"top_k": 4, "alpha": 0.6}


def rep_n(tokens: list[int], n: int) -> float:
    """Fraction of repeated n-grams: ``1 - unique / total`` (0 when there are none)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def measure_speed(tokens: int, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per generated token for each strategy, ``repeats`` interleaved runs."""
    engine = Engine(dtype="bfloat16")
    ids = engine.model.encode(SPEED_PROMPT)
    runs = {"greedy": {}, "contrastive": CONTRASTIVE}
    times: dict[str, list[float]] = {name: [] for name in runs}

    def once(name: str) -> float:
        start = time.perf_counter()
        out = engine.generate([ids], strategy=name, max_new_tokens=tokens, **runs[name])[0]
        return 1000 * (time.perf_counter() - start) / len(out.token_ids)

    for name in runs:  # warm up
        once(name)
    for rep in range(repeats):
        order = list(runs) if rep % 2 == 0 else list(reversed(runs))
        for name in order:
            times[name].append(once(name))
            print(f"  {name}: {times[name][-1]:.1f} ms/token", flush=True)
    return times


def measure_repetition(tokens: int) -> tuple[dict[str, dict[int, float]], dict[str, str]]:
    """Mean rep-2/3/4 per strategy over :data:`OPEN_PROMPTS`, and a sample text of each."""
    engine = Engine()
    out: dict[str, dict[int, float]] = {}
    sample: dict[str, str] = {}
    for name, params in (("greedy", {}), ("contrastive", CONTRASTIVE)):
        completions = engine.generate(OPEN_PROMPTS, strategy=name, max_new_tokens=tokens,
                                      **params)
        out[name] = {
            n: statistics.mean(rep_n(c.token_ids, n) for c in completions) for n in (2, 3, 4)
        }
        sample[name] = completions[0].text
        print(f"  {name}: {out[name]}", flush=True)
    return out, sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rep-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 keeps ratios stable on a shared machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/contrastive.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    times = measure_speed(args.tokens, args.repeats)
    greedy = statistics.median(times["greedy"])
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, CPU, bfloat16. Batch 1, {args.tokens} new "
        f"tokens, median of {args.repeats} interleaved runs; contrastive `top_k=4, alpha=0.6`.",
        "",
        "| strategy | ms/token (median) | min | max | ratio to greedy |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.1f} | {min(values):.1f} | {max(values):.1f} | "
                     f"{median / greedy:.2f}x |")
    reps, sample = measure_repetition(args.rep_tokens)
    lines += [
        "",
        f"Repetition on {len(OPEN_PROMPTS)} open-ended prompts, {args.rep_tokens} new tokens, "
        "float32 (mean over prompts; lower is less repetitive):",
        "",
        "| strategy | rep-2 | rep-3 | rep-4 |",
        "| --- | --- | --- | --- |",
    ]
    for name, values in reps.items():
        lines.append(f"| {name} | {values[2]:.3f} | {values[3]:.3f} | {values[4]:.3f} |")
    lines += ["", f"Prompt: *{OPEN_PROMPTS[0]}*", ""]
    for name, text in sample.items():
        flat = " ".join(text.split())
        lines += [f"- **{name}**: {flat}", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines).rstrip() + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
