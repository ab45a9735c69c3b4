"""The ``decodekit`` command.

Commands: ``run`` (generate text), ``bench`` (strategies side by side), ``strategies`` and
``plugins`` (listings),
``config-schema`` (JSON Schema of configs) and ``model prepare`` (convert and cache the
embedded model). Errors a user can cause print one clear message and exit with status 2.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from decodekit.errors import ConfigError, DecodekitError, PromptError
from decodekit.textio import STDIN, read_text_file, require_utf8

if TYPE_CHECKING:
    from decodekit.bench import StrategySpec
    from decodekit.config import ModelSettings
    from decodekit.generation import GenerationResult

app = typer.Typer(
    name="decodekit",
    help="Pluggable decoding strategies for language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="Manage the embedded default model.", no_args_is_help=True)
app.add_typer(model_app, name="model")

err = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


def handle_errors(func: Callable[..., None]) -> Callable[..., None]:
    """Print a :class:`DecodekitError` as one line on stderr and exit with status 2.

    A reader that goes away (``decodekit strategies | head -1``) ends the command quietly
    with status 1; another I/O error is one line and status 1.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except DecodekitError as exc:
            _print_error(exc)
            raise typer.Exit(2) from None
        except BrokenPipeError:
            _release_stdout()
            raise typer.Exit(1) from None
        except OSError as exc:
            _release_stdout()
            _print_error(exc)
            raise typer.Exit(1) from None

    return wrapper


def _print_error(exc: BaseException) -> None:
    # soft_wrap: the message stays one line however narrow the terminal is
    err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)


def _release_stdout() -> None:
    """Flush stdout; if that fails, point it at /dev/null so the exit stays quiet.

    Without this, Python's final flush of the dead pipe prints "Exception ignored".
    """
    try:
        sys.stdout.flush()
    except OSError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # no real file descriptor (e.g. under a test runner)
            pass


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse ``--set KEY=VALUE`` items; a value is JSON when it parses, else a string.

    A dotted key sets a nested option: ``drafter_options.layers=4`` gives
    ``{"drafter_options": {"layers": 4}}``, merged with other items for the same table.
    A later item for the same key wins.
    """
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = require_utf8(item, "--set").partition("=")
        path = [part.strip() for part in key.split(".")]
        if not sep or not all(path):
            raise ConfigError(f"--set expects KEY=VALUE or TABLE.KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        _assign(params, path, parsed, item)
    return params


def _assign(params: dict[str, Any], path: list[str], value: Any, item: str) -> None:
    """Set ``params[path[0]][path[1]]... = value``, creating and merging tables."""
    from decodekit.config import merge_params

    table = params
    for depth, part in enumerate(path[:-1]):
        inner = table.setdefault(part, {})
        if not isinstance(inner, dict):
            where = ".".join(path[: depth + 1])
            raise ConfigError(f"--set {item!r}: {where} is already set to {inner!r}, not a table")
        table = inner
    last = path[-1]
    old = table.get(last)
    both_tables = isinstance(old, dict) and isinstance(value, dict)
    table[last] = merge_params(old, value) if both_tables else value


def constraint_option(
    schema: Path | None, regex: str | None, grammar: Path | None
) -> dict[str, Any] | None:
    """The constraint spec of ``--schema``, ``--regex`` or ``--grammar`` (at most one)."""
    given = [name for name, v in (("--schema", schema), ("--regex", regex),
                                  ("--grammar", grammar)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"give at most one of --schema, --regex, --grammar (got {given})")
    if regex is not None:
        return {"type": "regex", "pattern": require_utf8(regex, "--regex")}
    path = schema or grammar
    if path is None:
        return None
    text = read_text_file(path, given[0])
    if schema is not None:
        try:
            return {"type": "json_schema", "schema": json.loads(text)}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: JSON syntax error: {exc.msg}") from None
    return {"type": "grammar", "grammar": text}


def _read_prompts(prompt: str | None, prompts_file: Path | None) -> list[str]:
    """The PROMPT argument and the non-blank lines of ``--prompts-file`` (``-``: stdin)."""
    prompts: list[str] = []
    if prompt is not None:
        prompts.append(require_utf8(prompt, "the PROMPT argument", PromptError))
    if prompts_file is not None:
        text = read_text_file(prompts_file, "prompts", allow_stdin=True)
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            where = "standard input" if str(prompts_file) == STDIN else str(prompts_file)
            raise PromptError(f"--prompts-file {where} holds no prompts (every line is blank)")
        prompts.extend(lines)
    if not prompts:
        raise ConfigError("Give a PROMPT argument or --prompts-file FILE")
    return prompts


@app.command()
@handle_errors
def run(
    prompt: Annotated[str | None, typer.Argument(help="The prompt.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Strategy name.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Strategy parameter KEY=VALUE, JSON values parsed (repeatable); a dotted "
            "key sets a nested option: --set drafter_options.layers=4.",
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Config file (TOML, YAML, JSON).")] = None,
    model: Annotated[Path | None, typer.Option(help="Local Hugging Face model dir.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Most new tokens.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 or bfloat16.")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Skip the chat template.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per output.")] = False,
    prompts_file: Annotated[
        Path | None, typer.Option(help="File with one prompt per line; - reads stdin.")
    ] = None,
    schema: Annotated[
        Path | None, typer.Option(help="Constrain output to a JSON Schema file.")
    ] = None,
    regex: Annotated[str | None, typer.Option(help="Constrain output to a regex.")] = None,
    grammar: Annotated[
        Path | None, typer.Option(help="Constrain output to a Lark grammar file.")
    ] = None,
) -> None:
    """Generate text with a strategy.

    Flags override the config file. With --strategy naming another strategy than the
    file's, the file's parameters that strategy also takes carry over; any other is an
    error.
    """
    from decodekit.engine import Engine
    from decodekit.settings import merge_config

    prompts = _read_prompts(prompt, prompts_file)
    base, model_settings = _load_config(config)
    settings = _flag_settings(strategy, set_, max_new_tokens, seed, stop)
    constraint = constraint_option(schema, regex, grammar)
    if constraint is not None:
        settings["constraint"] = constraint
    model_dtype = _dtype_option(dtype) or model_settings.dtype
    # validate before loading: a bad flag must not wait for a model load
    cfg = merge_config(base, settings, source=f"config file {config}")
    engine = Engine(str(model) if model else model_settings.path, dtype=model_dtype)
    request = engine.request(prompts, cfg, raw=raw or model_settings.raw)
    result = engine.run(request)
    _print_result(result, len(prompts), strategy=cfg.strategy, json_=json_)


def _load_config(config: Path | None) -> tuple[dict[str, Any] | None, ModelSettings]:
    """The generation fields a config file gives, and its ``[model]`` table."""
    from decodekit.config import ModelSettings
    from decodekit.settings import load_config_file

    if config is None:
        return None, ModelSettings()
    loaded = load_config_file(config)
    # only what the file sets: defaults are not parameters it asked for
    return loaded.generation.model_dump(exclude_unset=True), loaded.model


def _flag_settings(
    strategy: str | None,
    set_: list[str] | None,
    max_new_tokens: int | None,
    seed: int | None,
    stop: list[str] | None,
) -> dict[str, Any]:
    """The generation settings that flags give (those not given are left out)."""
    given = {"strategy": strategy, "max_new_tokens": max_new_tokens, "seed": seed}
    settings = {key: value for key, value in given.items() if value is not None}
    if set_:
        settings["params"] = parse_set(set_)
    if stop:
        settings["stop"] = [_stop_string(text) for text in stop]
    return settings


def _stop_string(text: str) -> str:
    if not text:
        raise ConfigError("--stop: a stop string must not be empty (it would match at once)")
    return require_utf8(text, "--stop")


def _dtype_option(dtype: str | None) -> str | None:
    if dtype is not None and dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"--dtype must be float32 or bfloat16, got {dtype!r}")
    return dtype


def _print_result(
    result: GenerationResult, prompts: int, *, strategy: str, json_: bool
) -> None:
    """Completions on stdout (text, or one JSON object each); statistics on stderr."""
    several = len(result.completions) != prompts  # e.g. beam num_return_sequences
    for completion in result.completions:
        if json_:
            record = completion.as_dict()
            if several:
                record["prompt_index"] = completion.prompt_index
            out.print(json.dumps(record, ensure_ascii=False), markup=False)
        else:
            out.print(completion.text, markup=False)
    if not json_:
        stats = result.stats
        err.print(
            f"[dim]{strategy}: {stats.new_tokens} tokens in "
            f"{stats.seconds:.2f}s ({stats.tokens_per_second:.1f} tok/s, "
            f"{stats.forward_passes} forwards)[/dim]"
        )


def print_listing(
    rows: list[dict[str, Any]],
    *,
    json_: bool,
    title: str,
    columns: tuple[str, ...],
    cells: Callable[[dict[str, Any]], list[str]],
) -> None:
    """Print ``rows`` as indented JSON, or as a table of ``columns`` filled by ``cells``."""
    if json_:
        out.print(json.dumps(rows, indent=2), markup=False)
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*cells(row))
    out.print(table)


@app.command()
@handle_errors
def strategies(
    json_: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List installed strategies: name, plugin, guarantee, parameters."""
    from decodekit.plugins import get_registry

    rows = []
    for name, entry in sorted(get_registry().strategies.items()):
        strategy = entry.strategy
        rows.append(
            {
                "name": name,
                "plugin": entry.plugin,
                "guarantee": strategy.guarantee.value,
                "summary": strategy.summary,
                "components": [f"{family}:{comp}" for family, comp in strategy.components],
                "parameters": strategy.params.model_json_schema().get("properties", {}),
            }
        )
    print_listing(
        rows, json_=json_, title="decodekit strategies",
        columns=("name", "plugin", "guarantee", "parameters", "summary"),
        cells=lambda row: [row["name"], row["plugin"], row["guarantee"],
                           ", ".join(row["parameters"]) or "-", row["summary"]],
    )


@app.command()
@handle_errors
def plugins(
    json_: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List plugins: name, version, hooks, and the error of any that failed to load."""
    from decodekit.errors import PluginConflictError
    from decodekit.plugins import get_plugins, get_registry

    try:
        get_registry()  # runs the register_* hooks, so that failing ones are listed too
    except PluginConflictError as exc:  # the listing is how users find the two plugins
        err.print(f"[bold yellow]warning:[/bold yellow] {escape(str(exc))}", highlight=False)
    infos = get_plugins(include_failed=True)
    if json_:
        data = [
            {"name": i.name, "version": i.version, "hooks": list(i.hooks), "builtin": i.builtin,
             "loaded": i.loaded, "errors": [{"stage": e.stage, "error": e.error} for e in i.errors]}
            for i in infos
        ]
        out.print(json.dumps(data, indent=2), markup=False)
        return
    table = Table(title="decodekit plugins")
    for column in ("name", "version", "hooks", "error"):
        table.add_column(column)
    for info in infos:
        errors = "; ".join(f"{e.stage}: {e.error}" for e in info.errors) or "-"
        table.add_row(info.name, info.version or "-", ", ".join(info.hooks) or "-", escape(errors))
    out.print(table)


@app.command()
@handle_errors
def components(
    family: Annotated[
        str | None, typer.Option(help="Only this family: drafters, verifiers, samplers, ...")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List components users can select: family, name, plugin, options, summary."""
    from dataclasses import asdict

    from decodekit.plugins import list_components

    rows = [asdict(info) for info in list_components(family)]
    print_listing(
        rows, json_=json_, title="decodekit components",
        columns=("family", "name", "plugin", "options", "summary"),
        cells=lambda row: [row["family"], row["name"], row["plugin"],
                           ", ".join(row["options"]) or "-", escape(row["summary"])],
    )


@app.command("config-schema")
@handle_errors
def config_schema(
    strategy: Annotated[str | None, typer.Argument(help="Only this strategy.")] = None,
) -> None:
    """Print the JSON Schema of config files: a generation config and an optional model table."""
    from decodekit.settings import generation_config_schema

    schema = generation_config_schema(strategy, file=True)
    out.print(json.dumps(schema, indent=2), markup=False)


@app.command()
@handle_errors
def bench(
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            "-s",
            help="NAME or NAME:key=value,... (repeatable); the first is the baseline.",
        ),
    ] = None,
    prompts_file: Annotated[
        Path | None,
        typer.Option(help="Prompts, one per line; - reads stdin (default: a built-in set)."),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="New tokens per prompt.")] = 64,
    repeats: Annotated[int, typer.Option(help="Runs per strategy and prompt.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    model: Annotated[str | None, typer.Option(help="Local HF model directory.")] = None,
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16.")] = "float32",
    raw: Annotated[bool, typer.Option(help="Skip the chat template.")] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Writes OUT.md (table) and OUT.png (chart); default: a new temporary folder.",
        ),
    ] = None,
    suite: Annotated[
        str | None,
        typer.Option(help="Run a whole comparison matrix against transformers: quick or full."),
    ] = None,
    max_load: Annotated[
        float | None,
        typer.Option(help="With --suite: refuse above this load average (default: cores / 2)."),
    ] = None,
    allow_load: Annotated[
        bool, typer.Option(help="With --suite: run under load; the tables say so.")
    ] = False,
    only: Annotated[
        str | None,
        typer.Option(help="With --suite: only the workloads whose name contains this text."),
    ] = None,
) -> None:
    """Run strategies side by side on the same prompts; print and save a table and chart.

    With ``--suite``, run a named comparison matrix instead (decodekit strategies against
    transformers ``generate``, interleaved in one process) and write its tables and charts.
    """
    from rich.progress import Progress

    if suite is not None:
        if strategy or prompts_file:
            raise ConfigError("--suite runs its own strategies and prompts; drop --strategy "
                              "and --prompts-file")
        _bench_suite(suite, model=model, dtype=dtype, repeats=repeats, seed=seed,
                     output=output, max_load=max_load, allow_load=allow_load, only=only)
        return

    from decodekit.bench import (
        DEFAULT_PROMPTS,
        chart_available,
        markdown_table,
        parse_spec,
        run_bench,
        write_chart,
    )
    from decodekit.engine import Engine

    specs = [parse_spec(s) for s in (strategy or ["greedy", "sample:temperature=0.7"])]
    _dtype_option(dtype)
    if max_new_tokens < 1 or repeats < 1:
        raise ConfigError("--max-new-tokens and --repeats must be >= 1")
    for spec in specs:  # bad names and values fail before the model loads
        _check_spec(spec, max_new_tokens=max_new_tokens, seed=seed)
    prompts = _read_prompts(None, prompts_file) if prompts_file else list(DEFAULT_PROMPTS)
    if output is not None:
        _make_parent(output)
    engine = Engine(model, dtype=dtype)  # type: ignore[arg-type]
    total = len(specs) * len(prompts) * repeats
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("benchmarking", total=total)
        results = run_bench(
            engine, specs, prompts, max_new_tokens=max_new_tokens, seed=seed,
            repeats=repeats, raw=raw,
            progress=lambda label: progress.update(task, advance=1, description=label),
        )
    title = (
        f"{getattr(engine.model, 'name', 'model')}, {dtype}, {len(prompts)} prompts x "
        f"{max_new_tokens} new tokens x {repeats}"
    )
    table = Table(title=title)
    for column in ("strategy", "tokens/s", "forwards/token", "accepted/forward", "ratio"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    base = results[0].tokens_per_second
    for r in results:
        table.add_row(
            r.spec.label, f"{r.tokens_per_second:.1f}", f"{r.forwards_per_token:.2f}",
            f"{r.accepted_per_forward:.2f}", f"{r.tokens_per_second / base:.2f}x" if base else "-",
        )
    out.print(table)
    markdown = markdown_table(results, title=f"**{title}**")
    # never into the repository's tracked benchmarks/results/ unless asked with --out
    target = output or Path(tempfile.mkdtemp(prefix="decodekit-bench-")) / "bench"
    chart = chart_available()
    try:
        target.with_suffix(".md").write_text(markdown, encoding="utf-8")
        if chart:
            write_chart(results, target.with_suffix(".png"), title=title)
    except OSError as exc:  # the table is printed above, so nothing measured is lost
        raise ConfigError(f"--out {target}: cannot write: {exc.strerror or exc}") from None
    wrote = f"wrote {target.with_suffix('.md')}"
    wrote += (f" and {target.with_suffix('.png')}" if chart
              else " (no chart: it needs matplotlib, pip install 'decodekit[bench]')")
    err.print(wrote, markup=False, highlight=False, soft_wrap=True)  # paths stay whole


def _bench_suite(
    name: str, *, model: str | None, dtype: str, repeats: int, seed: int,
    output: Path | None, max_load: float | None, allow_load: bool, only: str | None,
) -> None:
    """``decodekit bench --suite NAME``: the matrix, a table per workload, charts."""
    from rich.progress import Progress

    from decodekit.bench import chart_available
    from decodekit.engine import Engine
    from decodekit.suite import (
        SUITES,
        check_load,
        machine_summary,
        run_suite,
        select_workloads,
        suite_markdown,
        write_suite_charts,
    )

    if name not in SUITES:
        raise ConfigError(f"unknown suite {name!r}; the suites are: {', '.join(SUITES)}")
    workloads = select_workloads(SUITES[name], only)
    _dtype_option(dtype)
    if repeats < 1:
        raise ConfigError("--repeats must be >= 1")
    limit = max_load if max_load is not None else (os.cpu_count() or 2) / 2
    if limit <= 0:
        raise ConfigError(f"--max-load must be > 0, got {limit:g}")
    load_before = check_load(limit, allow=allow_load)  # before the model loads
    if output is not None:
        _make_parent(output)
    engine = Engine(model, dtype=dtype)  # type: ignore[arg-type]
    runs = repeats * sum(len(w.contenders) for w in workloads)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("benchmarking", total=runs)

        def advance(label: str) -> None:
            skipped = label.startswith("skipped")
            progress.update(task, advance=0 if skipped else 1, description=label)
            if skipped:
                err.print(label, markup=False, highlight=False)

        results = run_suite(engine, workloads, repeats=repeats, seed=seed, progress=advance)
    header = machine_summary(engine.model, dtype)
    markdown = suite_markdown(
        results, header=header, load_before=load_before, load_after=os.getloadavg()[0],
        under_load=load_before > limit, repeats=repeats,
    )
    table = Table(title=f"suite {name}: {header}")
    for column in ("workload", "contender", "tokens/s", "tokens/forward", "ratio"):
        table.add_column(column, justify="left" if column in ("workload", "contender")
                         else "right")
    for r in results:
        base = next(x for x in results if x.workload is r.workload).median
        table.add_row(r.workload.name, r.contender.label, f"{r.median:.1f}",
                      f"{r.tokens_per_forward:.2f}" if r.tokens_per_forward else "-",
                      f"{r.median / base:.2f}x" if base else "-")
    out.print(table)
    target = output or Path(tempfile.mkdtemp(prefix="decodekit-suite-")) / "suite"
    try:
        target.with_suffix(".md").write_text(markdown, encoding="utf-8")
        charts = (write_suite_charts(results, target, title=f"suite {name}: {header}")
                  if chart_available() else [])
    except OSError as exc:  # the table is printed above, so nothing measured is lost
        raise ConfigError(f"--out {target}: cannot write: {exc.strerror or exc}") from None
    wrote = f"wrote {target.with_suffix('.md')}"
    wrote += (" and " + ", ".join(str(c) for c in charts) if charts
              else " (no charts: they need matplotlib, pip install 'decodekit[bench]')")
    err.print(wrote, markup=False, highlight=False, soft_wrap=True)


#: ``run_bench`` passes these itself; a spec giving one too would clash.
_BENCH_OWNED = ("strategy", "max_new_tokens", "seed", "raw")


def _check_spec(spec: StrategySpec, *, max_new_tokens: int, seed: int) -> None:
    """Validate one ``--strategy`` of ``bench`` as ``run_bench`` will pass it."""
    from decodekit.settings import merge_config

    owned = [key for key in spec.params if key in _BENCH_OWNED]
    if owned:
        raise ConfigError(
            f"--strategy {spec.label}: {', '.join(owned)} is a bench option, not a strategy "
            "parameter"
        )
    settings = {**spec.params, "strategy": spec.name, "max_new_tokens": max_new_tokens,
                "seed": seed}
    try:
        merge_config(None, settings)
    except ConfigError as exc:
        raise ConfigError(f"--strategy {spec.label}: {exc}") from None


def _make_parent(output: Path) -> None:
    """Create the folder of ``--out`` now, so a bad path fails before the benchmark runs."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"--out {output}: cannot create {output.parent}: {exc.strerror or exc}"
        ) from None


@model_app.command("prepare")
@handle_errors
def model_prepare(
    force: Annotated[bool, typer.Option(help="Convert again.")] = False,
) -> None:
    """Convert the embedded SmolLM2 GGUF once and cache it; print the directory."""
    from decodekit.embedded import prepare_embedded_model

    out.print(str(prepare_embedded_model(force=force)), markup=False)


def main() -> None:
    """Entry point of the ``decodekit`` command."""
    if sys.stdout is None:  # started with stdout closed (>&-): every result would vanish
        err.print("[bold red]error:[/bold red] standard output is closed", highlight=False)
        raise SystemExit(1)
    app()


if __name__ == "__main__":
    main()
