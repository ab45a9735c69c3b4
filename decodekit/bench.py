"""Side-by-side strategy benchmarks: what ``decodekit bench`` runs.

Every strategy runs over the same prompts on the same loaded model, in one process and
one after the other per prompt (so background load hits them alike); each is warmed up
once first. The results are a table with tokens per second, forwards per token, mean
accepted draft tokens per forward and the ratio to the first strategy (the baseline,
usually ``greedy``), written as markdown and as a PNG bar chart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decodekit.errors import ConfigError

#: Prompts ``decodekit bench`` uses when no ``--prompts-file`` is given.
DEFAULT_PROMPTS = (
    "Write a short story about a lighthouse keeper.",
    "Explain how a refrigerator works.",
    "Repeat this Python function exactly, then add a docstring:\n"
    "def mean(values):\n    total = 0\n    for v in values:\n        total += v\n"
    "    return total / len(values)",
)

__all__ = [
    "DEFAULT_PROMPTS",
    "BenchResult",
    "StrategySpec",
    "chart_available",
    "markdown_table",
    "parse_spec",
    "run_bench",
    "write_chart",
]


@dataclass(frozen=True)
class StrategySpec:
    """A strategy and its parameters, as given on the command line.

    ``"speculative:drafter=prompt_lookup,draft_length=8"`` is the strategy
    ``speculative`` with two parameters (values parsed as JSON when they parse).
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """A short name for tables and charts."""
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}({inner})"


def parse_spec(text: str) -> StrategySpec:
    """Parse ``NAME`` or ``NAME:key=value,key=value``."""
    name, _, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise ConfigError(f"--strategy expects NAME or NAME:key=value,..., got {text!r}")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--strategy {text!r}: expected key=value, got {item!r}")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return StrategySpec(name, params)


@dataclass
class BenchResult:
    """Totals for one strategy over every prompt.

    Attributes
    ----------
    spec : StrategySpec
    new_tokens, forward_passes, accepted_draft_tokens : int
    seconds : float
        Decoding time, summed over prompts (model load excluded).
    """

    spec: StrategySpec
    new_tokens: int = 0
    forward_passes: int = 0
    accepted_draft_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """New tokens per second of decoding."""
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def forwards_per_token(self) -> float:
        """Target forwards per new token (1.0 for one token per forward)."""
        return self.forward_passes / self.new_tokens if self.new_tokens else 0.0

    @property
    def accepted_per_forward(self) -> float:
        """Accepted draft tokens per target forward."""
        return self.accepted_draft_tokens / self.forward_passes if self.forward_passes else 0.0


def run_bench(
    engine: Any,
    specs: Sequence[StrategySpec],
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    seed: int = 0,
    repeats: int = 1,
    raw: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Run every strategy over every prompt, interleaved, and total the statistics.

    Parameters
    ----------
    engine : Engine
        Holds the model.
    specs : sequence of StrategySpec
        The first is the baseline of the ratios.
    prompts : sequence of str
    max_new_tokens, seed, raw
        As for :meth:`decodekit.Engine.generate`.
    repeats : int
        Runs per (strategy, prompt); the totals add them up.
    progress : callable, optional
        Called with a description after each generation.
    """
    if not specs:
        raise ConfigError("give at least one --strategy")
    results = [BenchResult(spec) for spec in specs]
    for spec in specs:  # warm-up: first-call costs (allocation, compilation) stay out
        engine.generate(prompts[0], strategy=spec.name, max_new_tokens=4, seed=seed, raw=raw,
                        **spec.params)
    for _ in range(repeats):
        for prompt in prompts:
            for result in results:
                began = time.perf_counter()
                out = engine.generate(prompt, strategy=result.spec.name, raw=raw, seed=seed,
                                      max_new_tokens=max_new_tokens, **result.spec.params)
                elapsed = time.perf_counter() - began
                completions = out if isinstance(out, list) else [out]
                result.seconds += elapsed
                result.new_tokens += sum(c.stats.new_tokens for c in completions[:1])
                result.forward_passes += completions[0].stats.forward_passes
                result.accepted_draft_tokens += completions[0].stats.accepted_draft_tokens
                if progress is not None:
                    progress(result.spec.label)
    return results


def markdown_table(results: Sequence[BenchResult], *, title: str = "") -> str:
    """The results as a markdown table, ratios against the first row."""
    base = results[0].tokens_per_second if results else 0.0
    lines = [f"{title}\n" if title else ""]
    lines.append(
        "| strategy | new tokens | seconds | tokens/s | forwards/token | accepted/forward "
        f"| ratio to {results[0].spec.label if results else '-'} |"
    )
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        ratio = r.tokens_per_second / base if base else 0.0
        lines.append(
            f"| {r.spec.label} | {r.new_tokens} | {r.seconds:.2f} | {r.tokens_per_second:.1f} "
            f"| {r.forwards_per_token:.2f} | {r.accepted_per_forward:.2f} | {ratio:.2f}x |"
        )
    return "\n".join(line for line in lines if line != "") + "\n"


def chart_available() -> bool:
    """Whether charts can be drawn: matplotlib comes with the ``decodekit[bench]`` extra."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def write_chart(results: Sequence[BenchResult], path: Path, *, title: str = "") -> None:
    """A horizontal bar chart of tokens per second, one bar per strategy (PNG).

    Needs matplotlib (``pip install 'decodekit[bench]'``); see :func:`chart_available`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r.spec.label for r in results]
    values = [r.tokens_per_second for r in results]
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(results) + 1.5))
    bars = ax.barh(labels, values, color="#4c72b0")
    ax.invert_yaxis()
    ax.set_xlabel("tokens per second (higher is better)")
    if title:
        ax.set_title(title, fontsize=10)
    base = values[0] if values else 0.0
    for bar, value in zip(bars, values, strict=True):
        ratio = f" ({value / base:.2f}x)" if base else ""
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.1f}{ratio}",
                va="center")
    ax.set_xlim(0, max(values, default=1.0) * 1.3 or 1.0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")  # long labels stay inside
    plt.close(fig)
