"""Kernel benchmarks: decodekit's kernels side by side with straightforward torch code.

Usage::

    python benchmarks/kernels.py [--repeats N] [--threads N] [--quick]

On the CPU (always):

* ``sample`` with temperature 0.8 and top-p 0.9, and plain temperature sampling: the
  vectorized torch path (``backend="torch"``) against a naive sort-based top-p followed by
  ``torch.multinomial`` (written below), at rows 1 and 64, V = 49152 and 128256.
* ``apply_token_bitmask``: the vectorized path against a naive unpack (gather each
  token's word, shift, test the bit).

On a GPU (when ``torch.cuda.is_available()``): the Triton kernels against the torch path
on the same inputs, with the fraction of peak memory bandwidth each reaches. Bytes moved
are the minimum an op must touch (read the logits once; for the bitmask also read the
packed words); the peak is a device-to-device copy measured in the same run.

Inputs are ``randn * 3`` logits (nearly flat over the vocabulary: the worst case for the
vectorized path, whose top-p search looks at the 1024 largest logits first) and random
bitmasks. Each timing is the median of ``--repeats`` runs after a warm-up. The markdown
table is printed and written to ``benchmarks/results/kernels.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import decodekit_kernels as kernels
import torch

RESULTS = Path(__file__).parent / "results" / "kernels.md"


# ------------------------------------------------------------------ naive baselines


def naive_sample(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Sort-based top-p then ``torch.multinomial``: what most code bases do.

    Parameters
    ----------
    logits : FloatTensor ``[rows, V]``
    temperature, top_p : float

    Returns
    -------
    LongTensor ``[rows]``
    """
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1).squeeze(1)


def naive_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """Per token: gather its word, shift, test the bit; mask in place.

    Parameters
    ----------
    logits : FloatTensor ``[rows, V]``
    bitmask : IntTensor ``[rows, W]``
    """
    tokens = torch.arange(logits.shape[1], device=logits.device)
    words = bitmask.long()[:, tokens // 32]
    allowed = ((words >> (tokens % 32)) & 1).bool()
    return logits.masked_fill_(~allowed, float("-inf"))


# ------------------------------------------------------------------------- timing


def cpu_time(fn: Callable[[], object], repeats: int) -> float:
    """Median CPU time of ``fn`` in milliseconds (after one warm-up call).

    Process CPU time rather than wall time: the benchmark machines are shared, and with
    one torch thread the two agree on an idle machine.
    """
    fn()
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        samples.append(time.process_time() - start)
    return statistics.median(samples) * 1e3


def gpu_time(fn: Callable[[], object], repeats: int) -> float:
    """Median CUDA-event time of ``fn`` in milliseconds (after warm-up)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


def peak_bandwidth(repeats: int) -> float:
    """Bytes per second of a device-to-device copy of 1 GiB (read + write)."""
    src = torch.empty(2**28, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = gpu_time(lambda: dst.copy_(src), repeats)
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


# ------------------------------------------------------------------------- inputs


def make_inputs(rows: int, vocab: int, device: str, dtype: torch.dtype = torch.float32):
    """Logits ``randn * 3``, seeds and a random bitmask (about half the tokens allowed)."""
    gen = torch.Generator().manual_seed(rows * 7 + vocab)
    logits = (torch.randn(rows, vocab, generator=gen) * 3).to(dtype).to(device)
    seeds = torch.randint(0, 2**62, (rows,), generator=gen).to(device)
    words = (vocab + 31) // 32
    bitmask = torch.randint(-(2**31), 2**31, (rows, words), generator=gen, dtype=torch.int64)
    return logits, seeds, bitmask.to(torch.int32).to(device)


# --------------------------------------------------------------------------- runs

SHAPES = [(1, 49152), (64, 49152), (1, 128256), (64, 128256)]
SETTINGS = {"top-p 0.9, T 0.8": {"temperature": 0.8, "top_p": 0.9}, "plain, T 1": {}}


def cpu_shape(rows: int, vocab: int, repeats: int) -> list[str]:
    """Markdown rows for one shape: op, setting, shape, naive ms, decodekit ms, speed-up."""
    logits, seeds, bitmask = make_inputs(rows, vocab, "cpu")
    out = []
    for name, params in SETTINGS.items():
        t, p = params.get("temperature", 1.0), params.get("top_p", 1.0)
        naive = cpu_time(lambda t=t, p=p: naive_sample(logits, t, p), repeats)
        fast = cpu_time(
            lambda params=params: kernels.sample(logits, seeds, backend="torch", **params),
            repeats,
        )
        out.append(
            f"| sample | {name} | {rows} × {vocab} | {naive:.2f} | {fast:.2f} | "
            f"{naive / fast:.2f}× |"
        )
    scratch = logits.clone()
    naive = cpu_time(lambda: naive_bitmask(scratch, bitmask), repeats)
    fast = cpu_time(
        lambda: kernels.apply_token_bitmask(scratch, bitmask, check_nonempty=False, backend="torch"),
        repeats,
    )
    out.append(
        f"| apply_token_bitmask | ~50% allowed | {rows} × {vocab} | {naive:.2f} | {fast:.2f} | "
        f"{naive / fast:.2f}× |"
    )
    return out


def gpu_shape(rows: int, vocab: int, repeats: int, peak: float) -> list[str]:
    """Markdown rows for one shape: op, shape, torch ms, Triton ms, speed-up, bandwidth."""
    logits, seeds, bitmask = make_inputs(rows, vocab, "cuda", torch.bfloat16)
    logit_bytes = logits.numel() * logits.element_size()
    scratch = logits.clone()  # masked in place again and again: the same stores each time
    cases: dict[str, tuple[Callable[[str], object], int]] = {
        "sample (top-p 0.9, T 0.8)": (
            lambda b: kernels.sample(logits, seeds, temperature=0.8, top_p=0.9, backend=b),
            logit_bytes,
        ),
        "sample (plain)": (lambda b: kernels.sample(logits, seeds, backend=b), logit_bytes),
        "apply_token_bitmask": (
            lambda b: kernels.apply_token_bitmask(scratch, bitmask, check_nonempty=False, backend=b),
            logit_bytes + bitmask.numel() * 4,
        ),
    }
    naive = gpu_time(lambda: naive_sample(logits, 0.8, 0.9), repeats)
    out = [f"| sort + multinomial (top-p 0.9, T 0.8) | {rows} × {vocab} | {naive:.3f} | – | – | – |"]
    for name, (run, nbytes) in cases.items():
        slow = gpu_time(lambda run=run: run("torch"), repeats)
        fast = gpu_time(lambda run=run: run("triton"), repeats)
        frac = nbytes / (fast * 1e-3) / peak
        out.append(
            f"| {name} | {rows} × {vocab} | {slow:.3f} | {fast:.3f} | {slow / fast:.2f}× | "
            f"{frac:.0%} |"
        )
    return out


def cpu_name() -> str:
    """The CPU's model name, for the results table."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    """Run the benchmarks, print the tables and write ``benchmarks/results/kernels.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="only rows=1 and 64 at V=49152")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shapes = SHAPES[:2] if args.quick else SHAPES
    lines = [
        f"CPU: {cpu_name()}, {args.threads} torch thread(s), {os.cpu_count()} logical cores; "
        f"torch {torch.__version__}; median CPU time of {args.repeats} runs, milliseconds.",
        "",
        "| op | setting | rows × V | naive torch (ms) | decodekit torch path (ms) | speed-up |",
        "| --- | --- | --- | --- | --- | --- |",
        *[line for r, v in shapes for line in cpu_shape(r, v, args.repeats)],
        "",
    ]
    if torch.cuda.is_available():
        peak = peak_bandwidth(args.repeats)
        rows = [line for r, v in shapes for line in gpu_shape(r, v, args.repeats, peak)]
        lines += [
            f"GPU: {torch.cuda.get_device_name()}, bfloat16 logits; peak (device-to-device "
            f"copy) {peak / 1e9:.0f} GB/s.",
            "",
            "| op | rows × V | torch path (ms) | Triton (ms) | speed-up | of peak bandwidth |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    else:
        lines += ["GPU: none available in this run; the Triton kernels were not timed.", ""]
    table = "\n".join(lines)
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(table)


if __name__ == "__main__":
    main()
