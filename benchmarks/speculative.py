"""Speculative decoding on SmolLM2-135M-Instruct (CPU): every drafter side by side.

For each dtype (float32 and bfloat16) and each task (an input-grounded one: repeat a
piece of code with one edit; an open-ended one: a short story), batch 1, greedy, the same
number of new tokens, the contenders run back to back:

- decodekit ``greedy`` (the baseline of the ratios);
- decodekit ``speculative`` with each drafter: ``draft_model`` (the embedded SmolLM2 in
  bfloat16 as the draft: the only model sharing the tokenizer that ships offline),
  ``layer_skip``, and the lookup plugin's ``prompt_lookup`` / ``token_recycling`` when
  ``decodekit-lookup`` is installed; ``draft_model`` and ``prompt_lookup`` also with
  ``adaptive`` draft length;
- transformers ``generate``: plain greedy, prompt lookup (``prompt_lookup_num_tokens``)
  and assisted generation with the same bfloat16 draft model.

Every speculative contender is checked to produce exactly the greedy tokens. The table
reports tokens/s (median of ``--repeats`` runs), the ratio to decodekit greedy, and the
mean tokens committed per target forward (decodekit's statistics; transformers does not
report it).

    python benchmarks/speculative.py [--tokens 64] [--repeats 1] [--out benchmarks/results/speculative.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from decodekit import Engine, get_registry

TASKS = {
    "input-grounded (edit code)": (
        "Rewrite this Python code, renaming the function `area` to `rectangle_area`. "
        "Output only the code.\n\n"
        "def area(width, height):\n"
        "    \"\"\"Return the area of a rectangle.\"\"\"\n"
        "    if width < 0 or height < 0:\n"
        "        raise ValueError(\"width and height must be non-negative\")\n"
        "    return width * height\n\n\n"
        "def total_area(rectangles):\n"
        "    \"\"\"Sum the areas of (width, height) pairs.\"\"\"\n"
        "    return sum(area(w, h) for w, h in rectangles)\n"
    ),
    "open-ended (story)": "Write a short story about a lighthouse keeper.",
}

DRAFTERS = {
    "draft_model": {"dtype": "bfloat16"},
    "layer_skip": {"layers": 8, "confidence_threshold": 0.3},
    "prompt_lookup": {},
    "token_recycling": {},
}

ADAPTIVE = ("draft_model", "prompt_lookup")  # also run with adaptive draft length


def contenders(engine: Engine, ids: list[int], tokens: int, assistant) -> dict:
    """name -> callable returning (new token ids, mean tokens per forward or None)."""
    hf = engine.model.hf

    def dk(**settings):
        def run():
            out = engine.generate([ids], max_new_tokens=tokens, **settings)[0]
            return out.token_ids, out.stats.mean_accepted_per_forward
        return run

    def hf_generate(**kwargs):
        def run():
            with torch.inference_mode():
                out = hf.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(
                    1, len(ids), dtype=torch.long), max_new_tokens=tokens, do_sample=False,
                    pad_token_id=engine.model.tokenizer.eos_token_id, **kwargs)
            return out[0, len(ids):].tolist(), None
        return run

    runs = {"decodekit greedy": dk(strategy="greedy")}
    installed = get_registry().drafters
    for name, options in DRAFTERS.items():
        if name not in installed:
            continue
        for adaptive in (False, True) if name in ADAPTIVE else (False,):
            label = f"speculative {name}" + (" adaptive" if adaptive else "")
            runs[label] = dk(strategy="speculative", drafter=name, drafter_options=options,
                             temperature=0.0, draft_length=6 if adaptive else 4,
                             adaptive=adaptive, draft_cost=0.05 if "lookup" in name else 0.3)
    runs["transformers generate"] = hf_generate()
    runs["transformers prompt lookup"] = hf_generate(prompt_lookup_num_tokens=10)
    runs["transformers assisted (bf16 draft)"] = hf_generate(assistant_model=assistant)
    return runs


def measure(dtype: str, tokens: int, repeats: int, assistant) -> list[tuple[str, str, float, float | None, bool]]:
    engine = Engine(dtype=dtype)
    engine.generate("Hi", strategy="greedy", max_new_tokens=4)  # warm up
    rows = []
    for task, prompt in TASKS.items():
        ids = engine.model.encode(prompt)
        runs = contenders(engine, ids, tokens, assistant)
        rates: dict[str, list[float]] = {name: [] for name in runs}
        accepted: dict[str, float | None] = {}
        same: dict[str, bool] = {}
        reference = None
        for rep in range(repeats):
            names = list(runs)
            names = names[rep % len(names):] + names[: rep % len(names)]
            for name in names:
                start = time.perf_counter()
                produced, per_forward = runs[name]()
                rates[name].append(len(produced) / (time.perf_counter() - start))
                accepted[name] = per_forward
                if name == "decodekit greedy":
                    reference = produced
                same.setdefault(name, True)
                if reference is not None and produced != reference:
                    same[name] = False
        base = statistics.median(rates["decodekit greedy"])
        for name in runs:
            median = statistics.median(rates[name])
            rows.append((task, name, median, median / base, accepted[name], same[name]))
            print(dtype, rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speculative.md"))
    args = parser.parse_args()
    from decodekit.model import load_model

    assistant = load_model(None, dtype="bfloat16").hf
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, CPU, load average {os.getloadavg()[0]:.1f} at "
        "the start. Batch 1, "
        f"greedy, {args.tokens} new tokens, median of {args.repeats} run(s) per contender, "
        "contenders interleaved. *per forward*: tokens committed per target forward. "
        "*same tokens*: output identical to decodekit greedy.",
        "",
        "| dtype | task | contender | tokens/s | ratio to greedy | per forward | same tokens |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for dtype in args.dtypes:
        for task, name, rate, ratio, per_forward, same in measure(dtype, args.tokens,
                                                                  args.repeats, assistant):
            shown = "—" if per_forward is None else f"{per_forward:.2f}"
            lines.append(f"| {dtype} | {task} | {name} | {rate:.1f} | {ratio:.2f}x | {shown} | "
                         f"{'yes' if same else 'no'} |")
        args.out.write_text("\n".join(lines) + "\n")  # after each dtype
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
