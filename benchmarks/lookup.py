"""Model-free drafters (prompt lookup, token recycling) against greedy, side by side in one run.

Same model (embedded SmolLM2-135M-Instruct, CPU), batch 1, greedy settings, for each
dtype and each task:

- ``decodekit greedy``: the plain one-token-per-forward baseline;
- ``transformers prompt lookup``
  (``model.generate(prompt_lookup_num_tokens=10, do_sample=False)``);
- ``prompt_lookup`` and ``token_recycling`` through decodekit's ``speculative`` strategy
  (``temperature=0``: exact-match verification), or through the test strategy
  ``draft_greedy`` of :mod:`decodekit_lookup.testing` when ``speculative`` is not
  installed; token recycling starts from an empty table every call (``cold``) and, with
  ``persistent=True``, from the table the previous calls left (``warm``).

Tasks: an input-grounded one (rewrite a given ~130-token piece of code with one rename)
and an open-ended one (a story). Each repetition runs every contender back to back in
rotating order; the table reports the median tokens/s, the ratio to decodekit greedy,
the mean tokens committed per target forward, and whether the tokens equal greedy's. A
second table measures what one forward costs as a function of the tokens it scores.

    python benchmarks/lookup.py [--tokens 128] [--repeats 3] [--out benchmarks/results/lookup.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import torch
from decodekit_lookup.testing import DraftGreedyPlugin
from transformers import DynamicCache

import decodekit
from decodekit import Engine
from decodekit.testing import registered_plugin

CODE = '''def moving_average(values, window):
    """Return the moving averages of values over a sliding window."""
    if window <= 0:
        raise ValueError("window must be positive")
    averages = []
    total = 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        if index >= window - 1:
            averages.append(total / window)
    return averages
'''

TASKS = {
    "input-grounded (code edit)": "Rewrite this Python function, renaming the parameter "
    "`values` to `samples` everywhere. Output only the complete code.\n\n" + CODE,
    "open-ended (story)": "Write a long, detailed story about a lighthouse keeper who "
    "finds a message in a bottle.",
}

Runner = Callable[[list[int]], tuple[list[int], int]]  # ids -> (tokens, forwards)


def contenders(engine: Engine, tokens: int, strategy: str) -> dict[str, Runner]:
    """Every contender as ``ids -> (new tokens, target forwards)``."""
    model = engine.model

    def dk(**settings: object) -> Runner:
        def run(ids: list[int]) -> tuple[list[int], int]:
            out = engine.generate([ids], max_new_tokens=tokens, **settings)[0]
            return out.token_ids, out.stats.forward_passes
        return run

    def hf(**kwargs: object) -> Runner:
        def run(ids: list[int]) -> tuple[list[int], int]:
            out = model.hf.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(
                1, len(ids), dtype=torch.long), max_new_tokens=tokens, do_sample=False,
                pad_token_id=model.hf.config.eos_token_id, **kwargs)
            return out[0, len(ids):].tolist(), 0
        return run

    greedy_extra = {"temperature": 0.0} if strategy == "speculative" else {}
    return {
        "decodekit greedy": dk(strategy="greedy"),
        "transformers prompt lookup (10)": hf(prompt_lookup_num_tokens=10),
        "prompt_lookup (10)": dk(strategy=strategy, drafter="prompt_lookup", draft_length=10,
                                 **greedy_extra),
        "token_recycling cold (40 nodes)": dk(strategy=strategy, drafter="token_recycling",
                                              draft_length=6, max_nodes=40, **greedy_extra),
        "token_recycling warm (40 nodes)": dk(
            strategy=strategy, drafter="token_recycling", draft_length=6, max_nodes=40,
            drafter_options={"persistent": True}, **greedy_extra),
    }


def forward_costs(engine: Engine, context: int, widths: list[int], repeats: int) -> list[str]:
    """Median seconds of one forward scoring ``w`` new tokens after ``context`` cached ones."""
    hf = engine.model.hf
    rows = []
    with torch.inference_mode():
        ids = torch.randint(100, 1000, (1, context))
        cache = DynamicCache(config=hf.config)
        hf(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        for width in widths:
            times = []
            for _ in range(repeats):
                new = torch.randint(100, 1000, (1, width))
                start = time.perf_counter()
                hf(input_ids=new, cache=cache, use_cache=True, logits_to_keep=width)
                times.append(time.perf_counter() - start)
                cache.crop(-width)
            rows.append((width, statistics.median(times)))
    base = rows[0][1]
    return [f"| {w} | {t * 1000:.1f} | {t / base:.2f}x |" for w, t in rows]


def measure(
    dtype: str, tokens: int, repeats: int, strategy: str
) -> tuple[list[str], Engine]:
    """Rows of the main table for one dtype, and the engine (for the forward costs)."""
    engine = Engine(dtype=dtype)
    runners = contenders(engine, tokens, strategy)
    lines = []
    warm_up = contenders(engine, 8, strategy)
    for run in warm_up.values():  # first-call costs (the warm table starts learning here)
        run(engine.model.encode(TASKS["open-ended (story)"]))
    for task, prompt in TASKS.items():
        ids = engine.model.encode(prompt)
        rates: dict[str, list[float]] = {name: [] for name in runners}
        per_forward: dict[str, float] = {}
        outputs: dict[str, list[list[int]]] = {name: [] for name in runners}
        for rep in range(repeats):
            names = list(runners)
            shift = rep % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                produced, forwards = runners[name](ids)
                rates[name].append(len(produced) / (time.perf_counter() - start))
                per_forward[name] = len(produced) / forwards if forwards else float("nan")
                outputs[name].append(produced)
        reference = outputs["decodekit greedy"][0]
        same = {name: all(o == reference for o in runs) for name, runs in outputs.items()}
        base = statistics.median(rates["decodekit greedy"])
        for name, values in rates.items():
            median = statistics.median(values)
            accepted = "" if per_forward[name] != per_forward[name] else f"{per_forward[name]:.2f}"
            lines.append(
                f"| {dtype} | {task} | {name} | {median:.1f} | {median / base:.2f}x | "
                f"{accepted} | {'yes' if same[name] else 'NO'} |"
            )
            print(lines[-1], flush=True)
    return lines, engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/lookup.md"))
    args = parser.parse_args()
    with ExitStack() as stack:
        strategy = "speculative"
        if strategy not in decodekit.get_registry().strategies:
            stack.enter_context(registered_plugin(DraftGreedyPlugin()))
            strategy = "draft_greedy"
        lines = [
            f"Machine: {platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at "
            f"start, torch {torch.__version__}, CPU. Batch 1, "
            f"{args.tokens} new tokens, greedy, median of {args.repeats} interleaved runs; "
            f"drafters through `{strategy}`. tokens/forward: tokens committed per target "
            "forward.",
            "",
            "| dtype | task | contender | tokens/s | vs decodekit greedy | tokens/forward "
            "| = greedy |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        cost_lines = [
            "",
            "Cost of one forward scoring `w` new tokens after 200 cached tokens (median of 5):",
            "",
            "| dtype | w | ms | vs w = 1 |",
            "| --- | --- | --- | --- |",
        ]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for dtype in args.dtypes:
            rows, engine = measure(dtype, args.tokens, args.repeats, strategy)
            lines += rows
            for row in forward_costs(engine, 200, [1, 11, 32, 41, 64], 5):
                cost_lines.append(f"| {dtype} {row}")
                print(cost_lines[-1], flush=True)
            args.out.write_text("\n".join(lines + cost_lines) + "\n")  # after each dtype
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
