"""Constrained decoding (decodekit-json): correctness on MaskBench, validity and speed.

Three sections, each optional:

``--maskbench``
    Every MaskBench dev schema (571 schemas, 2,107 instances) on SmolLM2's tokenizer, per
    backend: how many compile, how many valid instances are accepted token by token (each
    token inside the mask computed before it) and how many invalid ones are rejected; mask
    time per token p50/p99 through the plugin's matcher and through raw llguidance.
``--generate N``
    N small dev schemas x strategies (greedy, sample, beam, speculative with prompt
    lookup, those installed): how many outputs finish, and whether every finished output
    parses and validates with ``jsonschema``.
``--speed N``
    tokens/s of each strategy constrained vs unconstrained on N schemas' prompts
    (fast-forwarded tokens count as produced), repetitions in rotating order, medians;
    mask time per decode step vs raw llguidance's mask time per token on the same tokens.

    python benchmarks/constrained.py --maskbench --generate 50 --speed 4 \
        [--backend llguidance xgrammar] [--out benchmarks/results/constrained.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from decodekit_json import compile_constraint, maskbench

from decodekit import Engine
from decodekit.errors import ConstraintError

# the shared data folder lies beside the repository; DECODEKIT_DATA points elsewhere
DATA = (
    Path(os.environ.get("DECODEKIT_DATA") or Path(__file__).resolve().parents[1].parent
         / "shared" / "data") / "maskbench" / "dev.jsonl"
)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def raw_llguidance_mask_times(tokenizer: Any, schema: Any, tokens: list[int]) -> list[float]:
    """Seconds of ``LLMatcher.unsafe_compute_mask_ptr`` before each token, raw llguidance."""
    import llguidance
    from decodekit_json.backends import llguidance_tokenizer

    engine = llguidance_tokenizer(tokenizer)  # cached per tokenizer
    matcher = llguidance.LLMatcher(
        engine, llguidance.LLMatcher.grammar_from_json_schema(schema), log_level=0
    )
    words = (engine.vocab_size + 31) // 32
    mask = torch.zeros(words, dtype=torch.int32)
    times = []
    for token in tokens:
        began = time.perf_counter()
        matcher.unsafe_compute_mask_ptr(mask.data_ptr(), words * 4)
        times.append(time.perf_counter() - began)
        if not matcher.consume_token(token):
            break
    return times


def section_maskbench(entries: list[dict[str, Any]], tokenizer: Any,
                      backends: list[str]) -> list[str]:
    lines = ["## MaskBench (dev split, SmolLM2 tokenizer)", "",
             "| backend | schemas | compiled | valid accepted | invalid rejected | "
             "mask p50 (µs) | mask p99 (µs) | time (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    notes: list[str] = []
    raw_times: list[float] = []
    for backend in backends:
        began = time.perf_counter()
        results = list(maskbench.run(entries, tokenizer, backend=backend))
        seconds = time.perf_counter() - began
        s = maskbench.summary(results)
        masks = [t for r in results for t in r.mask_seconds]
        lines.append(
            f"| {backend} | {s['schemas']} | {s['compiled']} "
            f"({100 * s['compiled'] / s['schemas']:.1f}%) | {s['valid_accepted']}/{s['valid']} | "
            f"{s['invalid_rejected']}/{s['invalid']} | {1e6 * pct(masks, 50):.0f} | "
            f"{1e6 * pct(masks, 99):.0f} | {seconds:.0f} |"
        )
        print(lines[-1], flush=True)
        for label, wrong in (("valid instances rejected", True), ("invalid accepted", False)):
            ids = sorted({r.id for r in results for i in r.instances
                          if not i.correct and i.valid == wrong})
            if ids:
                shown = ", ".join(f"`{i}`" for i in ids[:8])
                notes.append(f"- {backend}, {label}, in {len(ids)} schemas: {shown}"
                             + (", ..." if len(ids) > 8 else ""))
        failures: dict[str, int] = {}
        for r in results:
            if not r.compiled:
                reason = r.error.split("compile it: ", 1)[-1].split("\n")[0][:90]
                failures[reason] = failures.get(reason, 0) + 1
        top = sorted(failures.items(), key=lambda kv: -kv[1])[:8]
        notes.append(f"- {backend}, most frequent compile errors: "
                     + "; ".join(f"{n}x `{why}`" for why, n in top))
        if backend == "llguidance":
            for entry, r in zip(entries, results, strict=True):
                if r.compiled:
                    for test in entry["tests"]:
                        if test["valid"]:
                            text = json.dumps(test["data"], ensure_ascii=False)
                            raw_times += raw_llguidance_mask_times(
                                tokenizer, entry["schema"],
                                tokenizer.encode(text, add_special_tokens=False))
    if raw_times:
        lines.append(f"| raw llguidance (valid instances) | | | | | {1e6 * pct(raw_times, 50):.0f}"
                     f" | {1e6 * pct(raw_times, 99):.0f} | |")
    return [*lines, "", *notes, ""]


def _validate(text: str, schema: Any) -> bool:
    import jsonschema

    try:
        jsonschema.validate(json.loads(text), schema)
    except (json.JSONDecodeError, jsonschema.ValidationError, jsonschema.SchemaError):
        return False
    return True


STRATEGIES: dict[str, dict[str, Any]] = {
    "greedy": {},
    "sample": {"temperature": 0.7, "seed": 0},
    "beam": {"num_beams": 2},
    "speculative": {"drafter": "prompt_lookup", "temperature": 0.0},
}


#: Strategies to run (``--strategies``); all of STRATEGIES by default.
SELECTED: list[str] = list(STRATEGIES)


def installed_strategies(engine: Engine) -> dict[str, dict[str, Any]]:
    registry = engine.registry
    chosen = {name: kw for name, kw in STRATEGIES.items()
              if name in registry.strategies and name in SELECTED}
    if "speculative" in chosen and "prompt_lookup" not in registry.drafters:
        del chosen["speculative"]
    return chosen


def section_generate(engine: Engine, entries: list[dict[str, Any]], count: int,
                     tokens: int, backend: str) -> list[str]:
    schemas = maskbench.generation_schemas(entries, count * 2)
    lines = [f"## Generation on {count} dev schemas ({backend}, max {tokens} new tokens, "
             "compact whitespace)", "",
             "| strategy | schemas | finished (stop) | finished and valid | cut by the limit "
             "(parsed None) | tokens/s |", "| --- | --- | --- | --- | --- | --- |"]
    usable = []
    for entry in schemas:
        try:
            compile_constraint({"type": "json_schema", "schema": entry["schema"],
                                "backend": backend}, engine.model.tokenizer)
        except ConstraintError:
            continue
        usable.append(entry)
        if len(usable) == count:
            break
    for name, kw in installed_strategies(engine).items():
        finished = valid = cut = produced = 0
        seconds = 0.0
        for entry in usable:
            began = time.perf_counter()
            out = engine.generate(
                maskbench.prompt_for(entry["schema"]), strategy=name, max_new_tokens=tokens,
                constraint={"type": "json_schema", "schema": entry["schema"],
                            "whitespace": "compact", "backend": backend}, **kw)
            seconds += time.perf_counter() - began
            produced += len(out.token_ids)
            if out.finish_reason == "stop":
                finished += 1
                valid += _validate(out.text, entry["schema"])
            else:
                cut += 1
        lines.append(f"| {name} | {len(usable)} | {finished} | {valid}/{finished} | {cut} | "
                     f"{produced / seconds:.1f} |")
        print(lines[-1], flush=True)
    return [*lines, ""]


def section_speed(engine: Engine, entries: list[dict[str, Any]], count: int, tokens: int,
                  repeats: int) -> list[str]:
    schemas = maskbench.generation_schemas(entries, count * 3)
    usable = []
    for entry in schemas:
        try:
            compile_constraint({"type": "json_schema", "schema": entry["schema"]},
                               engine.model.tokenizer)
        except ConstraintError:
            continue
        usable.append(entry)
        if len(usable) == count:
            break
    lines = [f"## Speed: constrained vs unconstrained ({len(usable)} schemas, "
             f"{tokens} new tokens, {repeats} repetitions)", "",
             "| strategy | unconstrained tok/s | constrained tok/s | ratio | fast-forwarded "
             "| mask/step p50 (µs) | mask/step p99 (µs) | raw llguidance p50 (µs) | "
             "raw p99 (µs) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    tok = engine.model.tokenizer
    for name, kw in installed_strategies(engine).items():
        rates: dict[str, list[float]] = {"free": [], "json": []}
        step_masks: list[float] = []
        raw: list[float] = []
        forced = produced = 0
        for rep in range(repeats):
            order = ["free", "json"] if rep % 2 == 0 else ["json", "free"]
            for entry in usable:
                for mode in order:
                    spec = {"type": "json_schema", "schema": entry["schema"],
                            "whitespace": "compact"}
                    request = engine.request(
                        maskbench.prompt_for(entry["schema"]), strategy=name,
                        max_new_tokens=tokens, constraint=spec if mode == "json" else None, **kw)
                    from decodekit.execute import execute

                    began = time.perf_counter()
                    result = execute(request)
                    seconds = time.perf_counter() - began
                    out = result.completions[0]
                    rates[mode].append(len(out.token_ids) / seconds)
                    if mode == "json" and rep == 0:
                        step_masks += request.constraint.mask_seconds
                        produced += len(out.token_ids)
                        forced += len(out.token_ids) - result.stats.forward_passes
                        raw += raw_llguidance_mask_times(tok, entry["schema"], out.token_ids)
        free, json_rate = statistics.median(rates["free"]), statistics.median(rates["json"])
        lines.append(
            f"| {name} | {free:.1f} | {json_rate:.1f} | {json_rate / free:.2f}x | "
            f"{max(forced, 0)}/{produced} | {1e6 * pct(step_masks, 50):.0f} | "
            f"{1e6 * pct(step_masks, 99):.0f} | {1e6 * pct(raw, 50):.0f} | "
            f"{1e6 * pct(raw, 99):.0f} |"
        )
        print(lines[-1], flush=True)
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--maskbench", action="store_true")
    parser.add_argument("--generate", type=int, default=0, metavar="N")
    parser.add_argument("--speed", type=int, default=0, metavar="N")
    parser.add_argument("--backend", nargs="+", default=["llguidance", "xgrammar"])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES),
                        choices=list(STRATEGIES))
    parser.add_argument("--limit", type=int, default=0, help="Only the first N MaskBench schemas.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/constrained.md"))
    args = parser.parse_args()
    SELECTED[:] = args.strategies
    entries = maskbench.load(DATA)
    if args.limit:
        entries = entries[: args.limit]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    engine = Engine()
    lines = ["# Constrained decoding (decodekit-json)", "",
             f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, SmolLM2-135M-Instruct float32, batch 1.", ""]
    if args.maskbench:
        lines += section_maskbench(entries, engine.model.tokenizer, args.backend)
    if args.generate:
        lines += section_generate(engine, entries, args.generate, args.tokens, args.backend[0])
    if args.speed:
        lines += section_speed(engine, entries, args.speed, args.tokens, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
