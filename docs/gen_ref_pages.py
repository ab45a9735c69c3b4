"""Generate one API reference page per public module (run by mkdocs-gen-files)."""

import mkdocs_gen_files

#: The public API: what plugins and applications import (enforced by `lint-imports`).
MODULES = {
    "decodekit": "Top-level API",
    "decodekit.contracts": "Contracts: step data types, model and component contracts",
    "decodekit.config": "Configuration models",
    "decodekit.errors": "Errors",
    "decodekit.hookspecs": "Hook specifications",
    "decodekit.model": "Model adapter",
    "decodekit.tree": "Step input and tree attention",
    "decodekit.sampling": "Warping and sampling",
    "decodekit.substate": "Sub-states: drafters that run a model",
    "decodekit.drafting": "The drafter protocol",
    "decodekit.verifying": "The verifier protocol",
    "decodekit.embedded": "Embedded model",
    "decodekit.hf": "transformers integration",
    "decodekit.testing": "Test kit",
    # the core's own modules: documented for readers of the core, not imported by plugins
    "decodekit.engine": "Core: Engine",
    "decodekit.generation": "Core: requests and results",
    "decodekit.settings": "Core: settings resolved into a config",
    "decodekit.prompts": "Core: prompts as token ids",
    "decodekit.execute": "Core: running a request",
    "decodekit.strategy": "Core: strategies, pipelines and the registry",
    "decodekit.plugins": "Core: plugin manager",
    "decodekit.loop": "Core: decode loop",
    "decodekit.detokenize": "Core: incremental detokenization",
    "decodekit.transformers_processor": "Core: transformers logits processors",
    "decodekit.bench": "Core: benchmark runner",
    "decodekit.suite": "Core: the comparison matrix (bench --suite)",
    "decodekit.builtin.greedy": "Built-in: greedy",
    "decodekit.builtin.sample": "Built-in: sample",
    "decodekit.builtin.processors": "Built-in: penalties",
    "decodekit.builtin.caches": "Built-in: cache policies",
    "decodekit_kernels": "Kernels",
    "decodekit_beam": "Plugin: beam search (beam, diverse_beam, stochastic_beam)",
    "decodekit_lookup": "Plugin: model-free drafters (prompt lookup, token recycling)",
    "decodekit_speculative": "Plugin: speculative decoding",
    "decodekit_speculative.verifiers": "Plugin: speculative decoding, verifiers",
    "decodekit_speculative.drafters": "Plugin: speculative decoding, model drafters",
    "decodekit_speculative.adaptive": "Plugin: speculative decoding, adaptive draft length",
    "decodekit_speculative.testing": "Plugin: speculative decoding, toy drafters",
    "decodekit_contrastive": "Plugin: contrastive search",
    "decodekit_superposed": "Plugin: superposed decoding",
    "decodekit_superposed.ngram": "Plugin: superposed decoding n-gram model",
    "decodekit_json": "Plugin: constrained decoding (JSON Schema, regex, grammar, choice)",
    "decodekit_json.specs": "Plugin: constrained decoding, constraint fields",
    "decodekit_json.backends": "Plugin: constrained decoding, llguidance and xgrammar matchers",
    "decodekit_json.constraint": "Plugin: constrained decoding, per-row matcher state",
    "decodekit_json.maskbench": "Plugin: constrained decoding, MaskBench checks",
}

lines = ["# API reference", "", "Generated from the docstrings.", ""]
for module, title in MODULES.items():
    page = f"reference/{module}.md"
    with mkdocs_gen_files.open(page, "w") as handle:
        handle.write(f"# {title}\n\n::: {module}\n")
    lines.append(f"- [{title} (`{module}`)]({module}.md)")
with mkdocs_gen_files.open("reference/index.md", "w") as handle:
    handle.write("\n".join(lines) + "\n")


# ------------------------------------------------------------------ config reference
def _field_rows(model):
    rows = ["| field | type | default | constraints | description |", "| --- | --- | --- | --- | --- |"]
    schema = model.model_json_schema()
    for name, info in model.model_fields.items():
        prop = schema.get("properties", {}).get(name, {})
        kind = prop.get("type") or " or ".join(
            str(option.get("type", option.get("$ref", "?")).split("/")[-1])
            for option in prop.get("anyOf", [])
        ) or "object"
        default = "required" if info.is_required() else (
            "(factory)" if info.default_factory is not None else repr(info.default)
        )
        bounds = ", ".join(
            f"{key} {prop[key]}"
            for key in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
            if key in prop
        )
        description = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | `{default}` | {bounds} | {description} |")
    return "\n".join(rows)


def _config_page():
    from decodekit import get_registry
    from decodekit.config import GenerationConfig, ModelSettings

    parts = [
        "# Configuration",
        "",
        "A generation config names a strategy, carries that strategy's parameters and the",
        "settings every strategy shares. It validates in one step (`decodekit.validate_config`)",
        "and loads from TOML, YAML or JSON (`decodekit.load_config_file`); an invalid value is",
        "reported with its field path, a syntax error with its file and line.",
        "",
        "```toml",
        "--8<-- \"examples/sample.toml\"",
        "```",
        "",
        "`decodekit config-schema [STRATEGY]` prints the JSON Schema of a config file (the",
        "`[model]` table included). This page is generated",
        "from the pydantic models of the installed strategies when the docs are built.",
        "",
        "## Generation config",
        "",
        _field_rows(GenerationConfig),
        "",
        "## `[model]` table (config files only)",
        "",
        _field_rows(ModelSettings),
        "",
    ]
    for name, entry in sorted(get_registry().strategies.items()):
        strategy = entry.strategy
        parts += [
            f"## `{name}` parameters",
            "",
            f"{strategy.summary} Guarantee: **{strategy.guarantee.value}**; "
            f"plugin `{entry.plugin}`; model `{strategy.params.__name__}`.",
            "",
            _field_rows(strategy.params) if strategy.params.model_fields else "No parameters.",
            "",
        ]
    return "\n".join(parts)


with mkdocs_gen_files.open("config.md", "w") as handle:
    handle.write(_config_page())
