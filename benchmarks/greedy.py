"""decodekit greedy vs transformers ``generate`` greedy, side by side in one run.

Same model (embedded SmolLM2-135M-Instruct), same prompt, same dtype, batch 1. Each
repetition runs the contenders back to back in rotating order; the table reports the
median tokens/s of each and the ratio to transformers. A bare forward loop (the model's
forward with a DynamicCache and argmax, nothing else) is the floor of loop overhead.

    python benchmarks/greedy.py [--tokens 128] [--repeats 5] [--out benchmarks/results/greedy.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import DynamicCache

from decodekit import Engine

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


def bare_loop(model, ids, tokens):
    hf = model.hf
    with torch.inference_mode():
        cache = DynamicCache(config=hf.config)
        out = hf(input_ids=torch.tensor([ids]), cache=cache, use_cache=True, logits_to_keep=1)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        produced = [int(token)]
        for _ in range(tokens - 1):
            out = hf(input_ids=token, cache=cache, use_cache=True, logits_to_keep=1)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            produced.append(int(token))
    return produced


def measure(dtype: str, tokens: int, repeats: int) -> dict[str, list[float]]:
    engine = Engine(dtype=dtype)
    model = engine.model
    ids = model.encode(PROMPT)
    rates: dict[str, list[float]] = {"transformers generate": [], "decodekit greedy": [], "bare forward loop": []}

    def run_hf():
        start = time.perf_counter()
        out = model.hf.generate(input_ids=torch.tensor([ids]), max_new_tokens=tokens, do_sample=False)
        n = out.shape[1] - len(ids)
        return n / (time.perf_counter() - start), out[0, len(ids):].tolist()

    def run_dk():
        start = time.perf_counter()
        out = engine.generate([ids], strategy="greedy", max_new_tokens=tokens)[0]
        return len(out.token_ids) / (time.perf_counter() - start), out.token_ids

    def run_bare():
        start = time.perf_counter()
        out = bare_loop(model, ids, tokens)
        return len(out) / (time.perf_counter() - start), out

    runners = {"transformers generate": run_hf, "decodekit greedy": run_dk, "bare forward loop": run_bare}
    run_hf(), run_dk()  # warm up
    reference = None
    for rep in range(repeats):
        names = list(runners)
        names = names[rep % 3:] + names[: rep % 3]
        for name in names:
            rate, produced = runners[name]()
            rates[name].append(rate)
            if name != "bare forward loop":
                reference = reference or produced
                assert produced == reference, f"{name} produced different tokens"
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/greedy.md"))
    args = parser.parse_args()
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, CPU. Batch 1, {args.tokens} new tokens, median of "
        f"{args.repeats} interleaved runs.",
        "",
        "| dtype | contender | tokens/s (median) | min | max | ratio to transformers |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for dtype in args.dtypes:
        rates = measure(dtype, args.tokens, args.repeats)
        base = statistics.median(rates["transformers generate"])
        for name, values in rates.items():
            median = statistics.median(values)
            lines.append(
                f"| {dtype} | {name} | {median:.1f} | {min(values):.1f} | {max(values):.1f} | "
                f"{median / base:.2f}x |"
            )
            print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
