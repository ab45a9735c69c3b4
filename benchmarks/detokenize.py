"""The cost of a row's text per decode step: full decodes against incremental text.

Each step the loop looks for stop strings in every row, a stream shows each row's new
text, and beam search asks, for every candidate, whether it would end its row. Decoding
whole rows makes that cost grow with the row; decodekit's loop decodes a window
(``decodekit.detokenize.IncrementalText``). This replays SmolLM2 token streams of real
text (the project's docs) through both, batch 8, and reports milliseconds per step
around a given row length: "full" decodes the whole row once for the stop check and
once for the stream (the previous loop), "incremental" is the loop's ``StopChecker``
and ``Stream`` path; "beam" is the stopping test for 4 beams of 8 candidates each.

    python benchmarks/detokenize.py [--lengths 128 1024 2048] [--out benchmarks/results/detokenize.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from decodekit.detokenize import IncrementalText
from decodekit.embedded import prepare_embedded_model
from decodekit.loop import StopChecker

BATCH, BEAMS, CANDIDATES, WINDOW = 8, 4, 8, 32
STOPS = ["\n\n\n\n", "<|im_end|>"]  # stop strings the docs never contain


class Decoder:
    """The part of a LanguageModel that StopChecker uses."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))


def token_streams(tokenizer, length: int) -> list[list[int]]:
    text = "\n".join(p.read_text() for p in sorted(Path("docs").rglob("*.md")))
    ids = tokenizer.encode(text, add_special_tokens=False)
    step = max((len(ids) - length) // BATCH, 1)
    return [ids[i * step : i * step + length] for i in range(BATCH)]


def per_step_ms(rows: list[list[int]], length: int, decoder: Decoder) -> dict[str, float]:
    """Mean milliseconds per step over the WINDOW steps before ``length``."""
    checker = StopChecker(decoder, STOPS)
    texts = [IncrementalText(decoder.decode) for _ in rows]
    start = length - WINDOW
    grown = [row[:start] for row in rows]  # the rows after `start` steps
    for text, row in zip(texts, grown, strict=True):
        text.update(row[:-1])  # twice: the next window starts at the last token
        text.update(row)
    full = incremental = beam_full = beam_incremental = 0.0
    candidates = list(range(100, 100 + CANDIDATES))
    for k in range(start, length):
        for row, source in zip(grown, rows, strict=True):
            row.append(source[k])
        began = time.perf_counter()
        for row in grown:
            checker.find(row)
            decoder.decode(row)
        full += time.perf_counter() - began
        began = time.perf_counter()
        for text, row in zip(texts, grown, strict=True):
            checker.find_new(text, row)
            text.update(row)
        incremental += time.perf_counter() - began
        began = time.perf_counter()
        for row in grown[:BEAMS]:
            for c in candidates:
                checker.find([*row, c])
        beam_full += time.perf_counter() - began
        began = time.perf_counter()
        for text, row in zip(texts[:BEAMS], grown[:BEAMS], strict=True):
            for c in candidates:
                checker.find_after(text, row, [c])
        beam_incremental += time.perf_counter() - began
    scale = 1e3 / WINDOW
    return {"full": full * scale, "incremental": incremental * scale,
            "beam full": beam_full * scale, "beam incremental": beam_incremental * scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 1024, 2048])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/detokenize.md"))
    args = parser.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(prepare_embedded_model())
    decoder = Decoder(tokenizer)
    lines = [
        "| row length | stop check + stream, full decodes (ms/step) | incremental (ms/step) "
        "| beam stopping test, full (ms/step) | incremental (ms/step) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for length in args.lengths:
        ms = per_step_ms(token_streams(tokenizer, length), length, decoder)
        lines.append(f"| {length} | {ms['full']:.2f} | {ms['incremental']:.2f} "
                     f"| {ms['beam full']:.2f} | {ms['beam incremental']:.2f} |")
        print(lines[-1], flush=True)
    load = os.getloadavg()[0]
    header = (f"Batch {BATCH} (beam: {BEAMS} beams x {CANDIDATES} candidates), SmolLM2 "
              f"tokenizer, {platform.processor() or platform.machine()}, load average "
              f"{load:.2f} at the end.\n\n")
    args.out.write_text(header + "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
