# The two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint editor-test docs tables fuzz bench clean

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

# The runtime plus matplotlib (curves.png, PNG diagrams): what `make demo` and `make docs` use.
$(VENV)/.plot: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[plot]'
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.plot
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
	@echo "== pictures: the network (no Graphviz needed) and the training curves"
	$(BIN)/netspec graph examples/digits_cnn.net -o build/digits_cnn.html
	@echo "open build/digits_cnn.html and build/digits_cnn/curves.png"

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy netspec

# Tests run on every core; a heavy fixture's tests stay on one worker (xdist_group).
test: lint
	$(BIN)/pytest -q -n auto --dist loadgroup
	@if command -v node >/dev/null 2>&1; then $(MAKE) --no-print-directory editor-test; \
	else echo "node is not installed: skipping editor-test (the VS Code grammar's tests)"; fi

# The VS Code grammar's golden scope files, run by a real TextMate tokenizer (vscode-textmate,
# through vscode-tmgrammar-test). Needs node and npm; the lock file pins every package.
VSCODE := editors/vscode
$(VSCODE)/node_modules/.installed: $(VSCODE)/package.json $(VSCODE)/package-lock.json
	cd $(VSCODE) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

editor-test: $(VSCODE)/node_modules/.installed
	cd $(VSCODE) && npx --no-install vscode-tmgrammar-test "tests/*.test.net"

# The README's generated parts: the op table and the pictures in docs/.
docs: $(VENV)/.plot
	$(BIN)/python -m netspec.docs
	$(BIN)/netspec graph specs/lenet5.net -o docs/lenet5.svg
	$(BIN)/netspec graph specs/resnet50.net -o docs/resnet50.svg
	$(BIN)/netspec graph examples/digits_cnn.net -o docs/digits_cnn.html
	$(BIN)/netspec train examples/digits_cnn.net --out build/docs_digits_cnn
	$(BIN)/netspec plot build/docs_digits_cnn -o docs/digits_cnn_curves.png

# The parser's LALR tables, stored so that no start rebuilds them; redo after editing the
# grammar (a test fails until then). A fixed hash seed keeps the file's diff minimal.
tables: $(VENV)/.runtime
	PYTHONHASHSEED=0 $(BIN)/python -c "from netspec.syntax import write_tables; write_tables()"

# The fuzz suite's long mode: NETSPEC_FUZZ_SECONDS (default 300) of random and mutated specs.
fuzz: $(VENV)/.dev
	$(BIN)/python -m tests.fuzz_long --seconds $${NETSPEC_FUZZ_SECONDS:-300}

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/run.py --quick

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache $(VSCODE)/node_modules
