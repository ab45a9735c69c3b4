"""The cost of the penalties processor per step: whole histories against per-row counts.

The processor used to build every node's full history each step (the row's sequence
plus the node's draft ancestors), pad it into a tensor and count it again, so its cost
grew with the rows' length. It now keeps per-row token counts and adds each step's new
tokens (``decodekit.builtin.processors.TokenCounts``), passing only each node's draft
path as history. This times one processor call per step, both ways, on SmolLM2's
vocabulary (49,152), batch 8, float32 logits, around a given row length; with no draft
(sample) and with a chain of 10 draft nodes (speculative).

    python benchmarks/penalties.py [--lengths 128 1024 2048] [--out benchmarks/results/penalties.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import decodekit_kernels as kernels
import torch

from decodekit.builtin.processors import PenaltiesProcessor, pad_histories
from decodekit.contracts import DecodeView, DraftTree
from decodekit.tree import node_histories

BATCH, VOCAB, PROMPT, DRAFT, STEPS = 8, 49_152, 64, 10, 16
OPTIONS = PenaltiesProcessor.Options(repetition_penalty=1.2, presence_penalty=0.3,
                                     frequency_penalty=0.1)


def from_histories(logits: torch.Tensor, view: DecodeView, draft: DraftTree | None):
    """The previous processor: every node's whole history, each step."""
    rows, nodes, vocab = logits.shape
    histories, prompt_lengths = node_histories(view, draft)
    ids, mask = pad_histories(histories)
    return kernels.penalties(
        logits.reshape(rows * nodes, vocab), ids, history_mask=mask,
        prompt_lengths=torch.tensor(prompt_lengths),
        repetition_penalty=OPTIONS.repetition_penalty, presence_penalty=OPTIONS.presence_penalty,
        frequency_penalty=OPTIONS.frequency_penalty,
    ).view(rows, nodes, vocab)


def view_at(sequences: list[list[int]], step: int) -> DecodeView:
    return DecodeView(sequences=sequences, prompt_lengths=[PROMPT] * BATCH, generators=[],
                      model=None, step=step, row_ids=list(range(BATCH)))


def per_step_ms(length: int, draft_nodes: int) -> tuple[float, float]:
    """Mean ms per call over STEPS steps ending at ``length`` tokens: (histories, counts)."""
    gen = torch.Generator().manual_seed(length)
    full = torch.randint(0, VOCAB, (BATCH, length + 1), generator=gen).tolist()
    draft = None
    if draft_nodes:
        tokens = torch.randint(0, VOCAB, (BATCH, draft_nodes), generator=gen)
        parents = torch.arange(-1, draft_nodes - 1).expand(BATCH, -1).contiguous()
        draft = DraftTree(tokens=tokens, parents=parents)
    logits = torch.randn(BATCH, 1 + draft_nodes, VOCAB, generator=gen)
    processor = PenaltiesProcessor(OPTIONS)
    start = length - STEPS
    processor(logits, view_at([row[:start] for row in full], 0), draft)  # counts the start
    old = new = 0.0
    for k in range(start + 1, length + 1):
        view = view_at([row[:k] for row in full], k)
        began = time.perf_counter()
        want = from_histories(logits, view, draft)
        old += time.perf_counter() - began
        began = time.perf_counter()
        got = processor(logits, view, draft)
        new += time.perf_counter() - began
        assert torch.equal(got, want)
    return old * 1e3 / STEPS, new * 1e3 / STEPS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 1024, 2048])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/penalties.md"))
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    lines = [
        "| row length | draft nodes | whole histories (ms/step) | per-row counts (ms/step) "
        "| ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for length in args.lengths:
        for nodes in (0, DRAFT):
            old, new = per_step_ms(length, nodes)
            lines.append(f"| {length} | {nodes} | {old:.2f} | {new:.2f} | {old / new:.1f}× |")
            print(lines[-1], flush=True)
    header = (f"Batch {BATCH}, vocabulary {VOCAB}, float32 logits, "
              f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} "
              f"threads, load average {os.getloadavg()[0]:.2f} at the end.\n\n")
    args.out.write_text(header + "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
