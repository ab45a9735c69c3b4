"""The comparison matrix ``decodekit bench --suite`` runs: workloads, contenders, tables.

A :class:`Workload` is a batch of prompts and a token budget with the ways to decode it
that are compared (:class:`Contender`): decodekit strategies and transformers
``generate`` with the matching arguments. :func:`run_suite` runs every contender of
every workload on one loaded model, in one process, interleaved (each repetition
rotates the order, so background load hits all alike), after one warm-up each; it
reports the median tokens per second, the spread, tokens per target forward and the
ratio to each workload's first contender. :func:`suite_markdown` writes the tables with
the machine, versions and load average; :func:`check_load` refuses a loaded machine.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from decodekit.bench import StrategySpec
from decodekit.errors import ConfigError

__all__ = [
    "SUITES",
    "Contender",
    "ContenderResult",
    "Workload",
    "check_load",
    "machine_summary",
    "run_suite",
    "select_workloads",
    "suite_markdown",
    "write_suite_charts",
]


@dataclass(frozen=True)
class Contender:
    """One way to decode a workload.

    Attributes
    ----------
    label : str
    strategy : StrategySpec or None
        A decodekit strategy and its parameters.
    transformers : dict or None
        Keyword arguments of transformers' ``generate`` (``do_sample``, ``num_beams``,
        ``prompt_lookup_num_tokens``, ...) for the model decodekit has loaded.
    """

    label: str
    strategy: StrategySpec | None = None
    transformers: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.strategy is None) == (self.transformers is None):
            raise ValueError(f"contender {self.label!r}: give a strategy or transformers kwargs")


@dataclass(frozen=True)
class Workload:
    """A batch of prompts, a token budget and the contenders compared on it.

    Attributes
    ----------
    name : str
    prompts : tuple of (str or tuple of int)
        Text (encoded with the model's chat template) or token ids.
    max_new_tokens : int
    contenders : tuple of Contender
        The first is the baseline of the ratios.
    goal : str
        What the ratios should reach, shown beside them ("" for none).
    """

    name: str
    prompts: tuple[str | tuple[int, ...], ...]
    max_new_tokens: int
    contenders: tuple[Contender, ...]
    goal: str = ""


@dataclass
class ContenderResult:
    """One contender's runs on one workload.

    Attributes
    ----------
    workload : Workload
    contender : Contender
    rates : list of float
        Tokens per second of each repetition (tokens generated, EOS included, over wall time).
    new_tokens, forward_passes : int
        Over all repetitions; forwards are counted for decodekit contenders only.
    """

    workload: Workload
    contender: Contender
    rates: list[float] = field(default_factory=list)
    new_tokens: int = 0
    forward_passes: int = 0

    @property
    def median(self) -> float:
        """Median tokens per second."""
        return statistics.median(self.rates) if self.rates else 0.0

    @property
    def tokens_per_forward(self) -> float | None:
        """Generated tokens per target forward (None where forwards are not counted)."""
        return self.new_tokens / self.forward_passes if self.forward_passes else None


#: Eight prompts of mixed lengths (a batch with left padding for transformers).
MIXED: tuple[str, ...] = (
    "Write a long story about a lighthouse keeper.",
    "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle "
    "washed up on the rocks after a storm.",
    "Tell me everything you know about the history of the printing press.",
    "Write a long essay on why people keep gardens.",
    "Describe, in as much detail as you can, how a steam engine works, from the boiler to "
    "the wheels, and why it changed the world.",
    "Write a long letter from a sailor to his family.",
    "Explain how bread is made, step by step, at length.",
    "Write a long story about a city where it never stops raining and the people who "
    "build boats on their rooftops.",
)

#: An input-grounded task: most of the answer is in the prompt.
CODE_EDIT = (
    "Rewrite this Python function, renaming the parameter `values` to `samples` "
    "everywhere. Output only the complete code.\n\n"
    "def moving_average(values, window):\n"
    '    """Return the moving averages of values over a sliding window."""\n'
    "    if window <= 0:\n"
    '        raise ValueError("window must be positive")\n'
    "    averages = []\n    total = 0.0\n"
    "    for index, value in enumerate(values):\n"
    "        total += value\n"
    "        if index >= window:\n            total -= values[index - window]\n"
    "        if index >= window - 1:\n            averages.append(total / window)\n"
    "    return averages\n"
)


#: A schema and a prompt for constrained decoding (the answer follows the schema).
USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "email": {"type": "string"},
        "hobbies": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "email", "hobbies"],
    "additionalProperties": False,
}
JSON_PROMPT = (
    "Reply with only a JSON value that follows this JSON Schema:\n"
    + json.dumps(USER_SCHEMA)
    + "\nDescribe a user called Ada Lovelace who likes mathematics and poetry."
)


def _dk(label: str, name: str, **params: Any) -> Contender:
    return Contender(label, strategy=StrategySpec(name, params))


def _hf(label: str, **kwargs: Any) -> Contender:
    return Contender(label, transformers=kwargs)


def _suite(tokens: int, long: int) -> tuple[Workload, ...]:
    """The matrix at a given length (``long`` for the length-flatness workloads)."""
    greedy = (_hf("transformers greedy", do_sample=False), _dk("decodekit greedy", "greedy"))
    sample = (
        _hf("transformers sample", do_sample=True, temperature=0.8, top_p=0.9, top_k=0),
        _dk("decodekit sample", "sample", temperature=0.8, top_p=0.9),
    )
    lookup = dict(drafter="prompt_lookup", draft_length=10, temperature=0.0)
    json_constraint = {"type": "json_schema", "schema": USER_SCHEMA, "whitespace": "compact"}
    return (
        Workload(f"greedy, batch 1, {tokens} tokens", MIXED[:1], tokens, greedy,
                 "≥ 1.05× transformers"),
        Workload(f"greedy, batch 8 mixed, {tokens} tokens", MIXED, tokens, greedy,
                 "≥ 1.05× transformers"),
        Workload(f"sample, batch 8 mixed, {tokens} tokens", MIXED, tokens, sample,
                 "≥ 1.05× transformers"),
        Workload(f"greedy, batch 1, {long} tokens", MIXED[:1], long, greedy,
                 "≥ 1.05× transformers; ≥ 0.9× the short row's tokens/s"),
        Workload(f"beam 4, batch 1, {tokens // 2} tokens", MIXED[:1], tokens // 2, (
            _hf("transformers beam 4", do_sample=False, num_beams=4),
            _dk("decodekit beam 4", "beam", num_beams=4),
        ), "≥ 1.2× transformers"),
        Workload(f"prompt lookup, code edit, {2 * tokens} tokens", (CODE_EDIT,), 2 * tokens, (
            _hf("transformers prompt lookup (10)", do_sample=False, prompt_lookup_num_tokens=10),
            _dk("decodekit greedy", "greedy"),
            _dk("decodekit prompt lookup (10)", "speculative", **lookup),
        ), "≥ 1.3× transformers prompt lookup; ≥ 3× greedy"),
        Workload(f"token recycling, open-ended, {tokens} tokens", MIXED[:1], tokens, (
            _dk("decodekit greedy", "greedy"),
            _dk("decodekit token recycling", "speculative", drafter="token_recycling",
                temperature=0.0),
        ), "≥ 1.5× greedy, ≥ 2 tokens per forward"),
        Workload(f"contrastive, batch 1, {tokens // 2} tokens", MIXED[:1], tokens // 2, (
            _dk("decodekit greedy", "greedy"),  # transformers' own moved to the Hub
            _dk("decodekit contrastive (k 4, alpha 0.6)", "contrastive", top_k=4, alpha=0.6),
        ), "time per token ≤ 1.15× greedy's"),
        Workload(f"superposed k 3, batch 1, {tokens // 2} tokens", MIXED[:1], tokens // 2, (
            _dk("decodekit greedy", "greedy"),
            _dk("decodekit superposed (k 3)", "superposed", k=3),
        ), "≥ 0.9× one greedy generation's tokens/s"),
        Workload(f"constrained (JSON schema), batch 1, {tokens} tokens", (JSON_PROMPT,), tokens, (
            _dk("decodekit prompt lookup", "speculative", **lookup),
            _dk("decodekit prompt lookup, constrained", "speculative", **lookup,
                constraint=json_constraint),
            _dk("decodekit greedy, constrained", "greedy", constraint=json_constraint),
        ), "constrained prompt lookup ≥ 0.95× unconstrained"),
    )


#: The named suites: ``quick`` (minutes on a CPU) and ``full`` (the matrix the docs report).
SUITES: dict[str, tuple[Workload, ...]] = {"quick": _suite(64, 256), "full": _suite(128, 1024)}


def check_load(max_load: float, *, allow: bool) -> float:
    """The one-minute load average; a clear error above ``max_load`` unless ``allow``."""
    load = os.getloadavg()[0]
    if load > max_load and not allow:
        raise ConfigError(
            f"the load average is {load:.2f}, above --max-load {max_load:g}: other work "
            "would distort the timings; wait for a quiet machine or pass --allow-load "
            "(the tables are then marked as measured under load)"
        )
    return load


def machine_summary(model: Any, dtype: str) -> str:
    """Machine, versions, model and dtype, in one line for a table's header."""
    import torch
    import transformers

    from decodekit import __version__

    device = "CPU"
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    return (
        f"{platform.machine()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch "
        f"threads), {device}; Python {platform.python_version()}, decodekit {__version__}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}; "
        f"{getattr(model, 'name', '') or type(model).__name__}, {dtype}"
    )


def _prompt_ids(engine: Any, workload: Workload) -> list[list[int]]:
    return [list(p) if isinstance(p, tuple) else engine.model.encode(p)
            for p in workload.prompts]


def _runner(engine: Any, contender: Contender, prompts: list[list[int]], tokens: int,
            seed: int) -> Callable[[], tuple[int, int]]:
    """A function that generates once: ``() -> (new tokens, target forwards)``."""
    if contender.strategy is not None:
        spec = contender.strategy
        params = {**spec.params, "seed": seed}  # --seed reaches every contender
        engine.request(prompts, strategy=spec.name, max_new_tokens=tokens, **params)  # validates

        def decodekit_run() -> tuple[int, int]:
            out = engine.generate(prompts, strategy=spec.name, max_new_tokens=tokens, **params)
            best: dict[int, Any] = {}
            for completion in out:  # beam strategies may return several per prompt
                best.setdefault(completion.prompt_index, completion)
            return (sum(len(c.token_ids) for c in best.values()),
                    sum(c.stats.forward_passes for c in best.values()))

        return decodekit_run
    import torch

    model = engine.model
    kwargs = dict(contender.transformers or {})
    eos = sorted(model.eos_token_ids)
    width = max(len(p) for p in prompts)
    pad = eos[0] if eos else 0
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts],
                        device=model.device)

    def transformers_run() -> tuple[int, int]:
        torch.manual_seed(seed)
        out = model.hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=tokens,
                                pad_token_id=pad, eos_token_id=eos or None, **kwargs)
        count = 0
        for row in out[:, width:].tolist():
            end = next((i for i, t in enumerate(row) if t in model.eos_token_ids), None)
            count += len(row) if end is None else end + 1
        return count, 0

    return transformers_run


def run_suite(
    engine: Any,
    workloads: Sequence[Workload],
    *,
    repeats: int = 3,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[ContenderResult]:
    """Run every contender of every workload, interleaved; return one result per pair.

    Contenders whose strategy or constraint type is not installed are left out
    (``progress`` says so). Every decodekit contender's configuration is validated
    before anything runs.

    Parameters
    ----------
    engine : Engine
    workloads : sequence of Workload
    repeats : int
        Timed runs per contender; each repetition rotates the contenders' order.
    seed : int
    progress : callable, optional
        Called with a description after each run.
    """
    if repeats < 1:
        raise ConfigError("--repeats must be >= 1")
    plan: list[tuple[ContenderResult, Callable[[], tuple[int, int]]]] = []
    for workload in workloads:
        prompts = _prompt_ids(engine, workload)
        for contender in workload.contenders:
            missing = _not_installed(engine, contender)
            if missing is not None:
                if progress is not None:
                    progress(f"skipped {contender.label}: {missing} not installed")
                continue
            runner = _runner(engine, contender, prompts, workload.max_new_tokens, seed)
            plan.append((ContenderResult(workload, contender), runner))
    for result, _ in plan:  # warm-up: first-call costs stay out of the timings
        _warm_up(engine, result, seed)
    for rep in range(repeats):
        for workload in workloads:
            entries = [(r, run) for r, run in plan if r.workload is workload]
            shift = rep % max(len(entries), 1)
            for result, run in entries[shift:] + entries[:shift]:
                began = time.perf_counter()
                tokens, forwards = run()
                result.rates.append(tokens / (time.perf_counter() - began))
                result.new_tokens += tokens
                result.forward_passes += forwards
                if progress is not None:
                    progress(f"{workload.name}: {result.contender.label}")
    return [result for result, _ in plan]


def _not_installed(engine: Any, contender: Contender) -> str | None:
    """The strategy or constraint type a contender needs that no plugin provides, or None."""
    if contender.strategy is None:
        return None
    registry = engine.registry
    if contender.strategy.name not in registry.strategies:
        return contender.strategy.name
    constraint = contender.strategy.params.get("constraint")
    kind = constraint.get("type") if isinstance(constraint, dict) else None
    if kind is not None and kind not in registry.constraints:
        return f"constraint type {kind}"
    return None


def select_workloads(workloads: Sequence[Workload], only: str | None) -> tuple[Workload, ...]:
    """The workloads whose name contains ``only`` (all for None); an error names them all."""
    if only is None:
        return tuple(workloads)
    chosen = tuple(w for w in workloads if only.lower() in w.name.lower())
    if not chosen:
        names = "; ".join(w.name for w in workloads)
        raise ConfigError(f"--only {only!r} matches no workload; the workloads are: {names}")
    return chosen


def _warm_up(engine: Any, result: ContenderResult, seed: int) -> None:
    prompts = _prompt_ids(engine, result.workload)[:1]
    _runner(engine, result.contender, prompts, 4, seed)()


def suite_markdown(
    results: Sequence[ContenderResult], *, header: str, load_before: float, load_after: float,
    under_load: bool, repeats: int,
) -> str:
    """One table per workload: median tokens/s, spread, tokens per forward, ratios."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"{header}. Measured {when}; median of {repeats} interleaved runs each; load "
             f"average {load_before:.2f} before, {load_after:.2f} after (the suite itself "
             "keeps the cores busy)."]
    if under_load:
        lines.append("")
        lines.append(f"**Measured under load** (load average {load_before:.2f} at the start): "
                     "the ratios are noisier than on a quiet machine.")
    workloads: list[Workload] = []
    for result in results:
        if result.workload not in workloads:
            workloads.append(result.workload)
    for workload in workloads:
        rows = [r for r in results if r.workload is workload]
        base = rows[0].median
        lines += ["", f"**{workload.name}**" + (f" (goal: {workload.goal})" if workload.goal
                                                 else ""), "",
                  f"| contender | tokens/s | min–max | tokens/forward | ratio to "
                  f"{rows[0].contender.label} |", "| --- | ---: | ---: | ---: | ---: |"]
        for r in rows:
            per_forward = f"{r.tokens_per_forward:.2f}" if r.tokens_per_forward else "–"
            ratio = r.median / base if base else 0.0
            lines.append(f"| {r.contender.label} | {r.median:.1f} | {min(r.rates):.1f}–"
                         f"{max(r.rates):.1f} | {per_forward} | {ratio:.2f}× |")
    return "\n".join(lines) + "\n"


def write_suite_charts(results: Sequence[ContenderResult], prefix: Any, *, title: str) -> list[Any]:
    """PNG charts: tokens/s per workload and contender, and tokens per target forward.

    Needs matplotlib (:func:`decodekit.bench.chart_available`). Returns the paths written:
    ``PREFIX.png`` and ``PREFIX-forwards.png``.
    """
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefix = Path(prefix)
    labels = [f"{r.workload.name} | {r.contender.label}" for r in results]
    colors = ["#dd8452" if r.contender.transformers is not None else "#4c72b0" for r in results]
    written = []
    for suffix, values, axis in (
        ("", [r.median for r in results], "tokens per second (higher is better)"),
        ("-forwards", [r.tokens_per_forward or 0.0 for r in results],
         "tokens per target forward (decodekit contenders; transformers' are not counted)"),
    ):
        fig, ax = plt.subplots(figsize=(11, 0.32 * len(results) + 1.5))
        bars = ax.barh(labels, values, color=colors)
        ax.invert_yaxis()
        ax.set_xlabel(axis)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        for bar, value in zip(bars, values, strict=True):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.2f}",
                    va="center", fontsize=7)
        ax.set_xlim(0, max(values, default=1.0) * 1.2 or 1.0)
        fig.tight_layout()
        path = prefix.with_name(prefix.name + suffix + ".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
