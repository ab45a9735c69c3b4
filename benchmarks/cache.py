"""The KV cache's cost in greedy decoding: in-place slot layers against transformers' cache.

decodekit's ``HFCache`` writes each step's keys and values in place into a buffer that
grows geometrically (``decodekit.slot_buffer.SlotLayer``); transformers' ``DynamicCache``
grows by ``torch.cat``, copying every layer each step, which costs more the longer the
sequence and the larger the batch. Contenders, interleaved in one process on the same
loaded model (embedded SmolLM2-135M-Instruct): transformers ``generate`` (greedy, left
padding), decodekit ``greedy`` with slot layers (the default), and decodekit ``greedy``
with a ``DynamicCache`` (the previous default). Batches of 1 and of 8 prompts of mixed
lengths; tokens/s counts the tokens generated (up to EOS) per second of wall time.

    python benchmarks/cache.py [--dtype bfloat16] [--tokens 128 1024] [--batches 1 8]
                               [--repeats 2] [--out benchmarks/results/cache.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import decodekit.slot_buffer
from decodekit import Engine
from decodekit.suite import MIXED

PROMPTS = list(MIXED)  # the suite's batch of eight prompts of mixed lengths


def dynamic_cache_only(enabled: bool) -> None:
    """Make ``HFCache`` fall back to transformers' ``DynamicCache`` (or stop doing so)."""
    original = getattr(dynamic_cache_only, "original", decodekit.slot_buffer.supports_slot_layers)
    dynamic_cache_only.original = original  # type: ignore[attr-defined]
    decodekit.slot_buffer.supports_slot_layers = (lambda config: False) if enabled else original


def contenders(engine: Engine, prompts: list[list[int]], tokens: int) -> dict[str, Callable]:
    model = engine.model
    eos = sorted(model.eos_token_ids)

    def hf() -> int:
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[eos[0]] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        out = model.hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=tokens,
                                do_sample=False, pad_token_id=eos[0], eos_token_id=eos)
        count = 0
        for row in out[:, width:].tolist():
            end = next((i for i, t in enumerate(row) if t in model.eos_token_ids), None)
            count += len(row) if end is None else end + 1
        return count

    def decodekit(dynamic: bool) -> Callable[[], int]:
        def run() -> int:
            dynamic_cache_only(dynamic)
            try:
                out = engine.generate(prompts, strategy="greedy", max_new_tokens=tokens)
            finally:
                dynamic_cache_only(False)
            return sum(len(c.token_ids) for c in out)

        return run

    return {
        "transformers generate": hf,
        "decodekit greedy, slot layers": decodekit(False),
        "decodekit greedy, DynamicCache": decodekit(True),
    }


def measure(engine: Engine, batch: int, tokens: int, repeats: int) -> dict[str, list[float]]:
    prompts = [engine.model.encode(p) for p in PROMPTS[:batch]]
    runners = contenders(engine, prompts, tokens)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for rep in range(repeats):
        names = list(runners)
        names = names[rep % len(names):] + names[: rep % len(names)]
        for name in names:
            start = time.perf_counter()
            count = runners[name]()
            rates[name].append(count / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cache.md"))
    args = parser.parse_args()
    engine = Engine(dtype=args.dtype)
    engine.generate(PROMPTS[:2], strategy="greedy", max_new_tokens=8)  # warm up
    load = os.getloadavg()[0]
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, CPU, {args.dtype}. Greedy; median of "
        f"{args.repeats} interleaved runs; load average {load:.1f} at the start.",
        "",
        "| batch | new tokens | contender | tokens/s (median) | min | max | ratio to transformers |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for batch in args.batches:
        for tokens in args.tokens:
            rates = measure(engine, batch, tokens, args.repeats)
            base = statistics.median(rates["transformers generate"])
            for name, values in rates.items():
                median = statistics.median(values)
                lines.append(
                    f"| {batch} | {tokens} | {name} | {median:.1f} | {min(values):.1f} | "
                    f"{max(values):.1f} | {median / base:.2f}x |"
                )
                print(lines[-1], flush=True)
    lines.append("")
    lines.append(f"Load average at the end: {os.getloadavg()[0]:.1f}.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
