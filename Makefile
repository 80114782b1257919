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
	@echo "== check a classic network"
	$(BIN)/netspec check specs/lenet5.net
	@echo "== train a CNN on the bundled 8x8 digits"
	$(BIN)/netspec train examples/digits_cnn.net --out build/digits_cnn
	$(BIN)/netspec eval examples/digits_cnn.net --weights build/digits_cnn/weights.npz
	@echo "== export it to ONNX and run it with onnxruntime"
	$(BIN)/netspec export examples/digits_cnn.net --weights build/digits_cnn/weights.npz \
		-o build/digits_cnn.onnx
	$(BIN)/python examples/digits_sample.py build/digits_sample.npy
	$(BIN)/netspec predict build/digits_cnn.onnx --input build/digits_sample.npy --top 3

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
