# The two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint docs fuzz bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamps record what was installed; they are redone when pyproject.toml changes.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/netspec check specs/lenet5.net
	$(BIN)/netspec check specs/resnet50.net | tail -n 4
	$(BIN)/netspec compile specs/lenet5.net -o build/lenet5.json

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy netspec

test: lint
	$(BIN)/pytest -q

docs: $(VENV)/.runtime
	$(BIN)/python -m netspec.docs

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/run.py --quick

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
