"""Modules of a few hundred lines, functions that fit on a screen: the limits docs/ARCHITECTURE.md
states, kept true here. A module may pass the line limit only with a reason written below."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "netspec"
MODULE_LINES = 400
FUNCTION_LINES = 60
# Where a function must stay short: the command line and everything that trains.
SHORT_FUNCTIONS = ("cli", "engine", "training")

# Modules whose one responsibility needs more, and why.
LONG_MODULES = {
    "syntax.py": "the transformer of every grammar rule and the syntax-error messages, both "
    "written against Lark's types, which no other module may import",
    "expand.py": "expansion of statements, calls, merges and blocks: one recursive walk",
    "ops/activation.py": "the activations, a few lines each (function, derivative, ONNX, torch)",
    "ops/recurrent.py": "rnn, lstm, gru and bidirectional with the LSTM's hand-written scan",
    "ops/pool.py": "the max and average pools, 1-D and 2-D, and ONNX's ceil_mode spelling",
    "_parser_tables.py": "generated LALR tables",
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_longer_than_its_responsibility_needs() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MODULE_LINES
    }
    unexplained = {name: n for name, n in long.items() if name not in LONG_MODULES}
    assert unexplained == {}, f"split these, or say in LONG_MODULES why they are one: {long}"


def test_the_reasons_for_long_modules_are_still_needed() -> None:
    for name in LONG_MODULES:
        path = PACKAGE / name
        assert path.is_file(), f"{name} is gone: drop it from LONG_MODULES"


def test_functions_of_the_command_line_and_the_trainers_fit_on_a_screen() -> None:
    long = []
    for part in SHORT_FUNCTIONS:
        for path in sorted((PACKAGE / part).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    n = (node.end_lineno or node.lineno) - node.lineno + 1
                    if n > FUNCTION_LINES:
                        long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({n} lines)")
    assert long == []
