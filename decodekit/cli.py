"""The ``decodekit`` command.

Commands: ``run`` (generate text), ``bench`` (strategies side by side), ``strategies`` and
``plugins`` (listings),
``config-schema`` (JSON Schema of configs) and ``model prepare`` (convert and cache the
embedded model). Errors a user can cause print one clear message and exit with status 2.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from decodekit.errors import ConfigError, DecodekitError

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
    """Print a :class:`DecodekitError` as one line on stderr and exit with status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except DecodekitError as exc:
            err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse ``--set KEY=VALUE`` items; a value is JSON when it parses, else a string."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


def constraint_option(
    schema: Path | None, regex: str | None, grammar: Path | None
) -> dict[str, Any] | None:
    """The constraint spec of ``--schema``, ``--regex`` or ``--grammar`` (at most one)."""
    given = [name for name, v in (("--schema", schema), ("--regex", regex),
                                  ("--grammar", grammar)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"give at most one of --schema, --regex, --grammar (got {given})")
    if regex is not None:
        return {"type": "regex", "pattern": regex}
    path = schema or grammar
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{given[0]} file not found: {path}") from None
    if schema is not None:
        try:
            return {"type": "json_schema", "schema": json.loads(text)}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: JSON syntax error: {exc.msg}") from None
    return {"type": "grammar", "grammar": text}


def _read_prompts(prompt: str | None, prompts_file: Path | None) -> list[str]:
    prompts: list[str] = []
    if prompt is not None:
        prompts.append(prompt)
    if prompts_file is not None:
        try:
            lines = prompts_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ConfigError(f"Prompts file not found: {prompts_file}") from None
        prompts.extend(line for line in lines if line.strip())
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
        typer.Option("--set", help="Strategy parameter KEY=VALUE (JSON values parsed)."),
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
        Path | None, typer.Option(help="File with one prompt per line.")
    ] = None,
    schema: Annotated[
        Path | None, typer.Option(help="Constrain output to a JSON Schema file.")
    ] = None,
    regex: Annotated[str | None, typer.Option(help="Constrain output to a regex.")] = None,
    grammar: Annotated[
        Path | None, typer.Option(help="Constrain output to a Lark grammar file.")
    ] = None,
) -> None:
    """Generate text with a strategy."""
    from decodekit.config import load_config_file
    from decodekit.engine import Engine

    prompts = _read_prompts(prompt, prompts_file)
    settings: dict[str, Any] = {}
    model_path: str | None = None
    model_dtype = "float32"
    use_raw = raw
    base: dict[str, Any] | None = None
    if config is not None:
        file_config = load_config_file(config)
        base = file_config.generation.model_dump()
        model_path = file_config.model.path
        model_dtype = file_config.model.dtype
        use_raw = raw or file_config.model.raw
    if strategy is not None:
        settings["strategy"] = strategy
    if set_:
        settings["params"] = parse_set(set_)
    if max_new_tokens is not None:
        settings["max_new_tokens"] = max_new_tokens
    if seed is not None:
        settings["seed"] = seed
    if stop:
        settings["stop"] = stop
    constraint = constraint_option(schema, regex, grammar)
    if constraint is not None:
        settings["constraint"] = constraint
    if model is not None:
        model_path = str(model)
    if dtype is not None:
        if dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"--dtype must be float32 or bfloat16, got {dtype!r}")
        model_dtype = dtype
    engine = Engine(model_path, dtype=model_dtype)  # type: ignore[arg-type]
    request = engine.request(prompts, base, raw=use_raw, **settings)
    result = engine.run(request)
    several = len(result.completions) != len(prompts)  # e.g. beam num_return_sequences
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
            f"[dim]{request.config.strategy}: {stats.new_tokens} tokens in "
            f"{stats.seconds:.2f}s ({stats.tokens_per_second:.1f} tok/s, "
            f"{stats.forward_passes} forwards)[/dim]"
        )


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
    if json_:
        out.print(json.dumps(rows, indent=2), markup=False)
        return
    table = Table(title="decodekit strategies")
    for column in ("name", "plugin", "guarantee", "parameters", "summary"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"], row["plugin"], row["guarantee"], ", ".join(row["parameters"]) or "-",
            row["summary"],
        )
    out.print(table)


@app.command()
@handle_errors
def plugins(
    json_: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List loaded plugins: name, version, hooks."""
    from decodekit.plugins import get_plugins

    infos = get_plugins()
    if json_:
        data = [
            {"name": i.name, "version": i.version, "hooks": list(i.hooks), "builtin": i.builtin}
            for i in infos
        ]
        out.print(json.dumps(data, indent=2), markup=False)
        return
    table = Table(title="decodekit plugins")
    for column in ("name", "version", "hooks"):
        table.add_column(column)
    for info in infos:
        table.add_row(info.name, info.version or "-", ", ".join(info.hooks))
    out.print(table)


@app.command("config-schema")
@handle_errors
def config_schema(
    strategy: Annotated[str | None, typer.Argument(help="Only this strategy.")] = None,
) -> None:
    """Print the JSON Schema of generation configs."""
    from decodekit.config import generation_config_schema

    out.print(json.dumps(generation_config_schema(strategy), indent=2), markup=False)


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
        Path | None, typer.Option(help="Prompts, one per line (default: a built-in set).")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="New tokens per prompt.")] = 64,
    repeats: Annotated[int, typer.Option(help="Runs per strategy and prompt.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    model: Annotated[str | None, typer.Option(help="Local HF model directory.")] = None,
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16.")] = "float32",
    raw: Annotated[bool, typer.Option(help="Skip the chat template.")] = False,
    output: Annotated[
        Path, typer.Option("--out", help="Writes OUT.md (table) and OUT.png (chart).")
    ] = Path("benchmarks/results/bench"),
) -> None:
    """Run strategies side by side on the same prompts; print and save a table and chart."""
    from rich.progress import Progress

    from decodekit.bench import (
        DEFAULT_PROMPTS,
        markdown_table,
        parse_spec,
        run_bench,
        write_chart,
    )
    from decodekit.engine import Engine
    from decodekit.plugins import get_strategy

    specs = [parse_spec(s) for s in (strategy or ["greedy", "sample:temperature=0.7"])]
    for spec in specs:
        get_strategy(spec.name)  # unknown names fail before the model loads
    if dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"--dtype must be float32 or bfloat16, got {dtype!r}")
    if max_new_tokens < 1 or repeats < 1:
        raise ConfigError("--max-new-tokens and --repeats must be >= 1")
    prompts = _read_prompts(None, prompts_file) if prompts_file else list(DEFAULT_PROMPTS)
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
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text(markdown, encoding="utf-8")
    write_chart(results, output.with_suffix(".png"), title=title)
    err.print(f"[dim]wrote {output.with_suffix('.md')} and {output.with_suffix('.png')}[/dim]")


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
    app()


if __name__ == "__main__":
    main()
