"""Data flows one way. These import rules keep the stages and back ends apart."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "netspec"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def modules(where: str = "") -> list[Path]:
    return sorted((PACKAGE / where).rglob("*.py"))


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("lark", ("syntax.py",)),
        ("networkx", ("graph.py",)),
        ("torch", ("torch/",)),  # the torch back end; ops are handed the module instead
    ],
)
def test_third_party_libraries_stay_in_their_module(library: str, allowed: tuple[str, ...]) -> None:
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in modules()
        if any(i == library or i.startswith(library + ".") for i in imports_of(p))
        and not str(p.relative_to(PACKAGE)).startswith(allowed)
    ]
    assert offenders == []


def test_the_torch_back_end_sees_only_the_ir_and_the_ops() -> None:
    banned = ("netspec.syntax", "netspec.expand", "netspec.graph", "netspec.engine")
    banned += ("netspec.onnx", "netspec.api", "netspec.cli", "lark", "networkx", "onnx")
    for path in modules("torch"):
        bad = [i for i in imports_of(path) if i.startswith(banned)]
        assert bad == [], f"{path.relative_to(PACKAGE)} imports {bad}"


def test_ops_and_the_engine_never_import_onnx_the_parser_or_the_graph() -> None:
    banned = ("onnx", "onnxruntime", "netspec.syntax", "netspec.expand", "netspec.graph", "lark")
    for part in ("ops", "engine"):
        for path in modules(part):
            bad = [i for i in imports_of(path) if i.startswith(banned)]
            assert bad == [], f"{path.relative_to(PACKAGE)} imports {bad}"


def test_the_onnx_back_end_does_not_reach_into_the_front_end_or_the_engine_loop() -> None:
    banned = ("netspec.syntax", "netspec.expand", "netspec.graph", "lark", "networkx")
    for path in modules("onnx"):
        bad = [i for i in imports_of(path) if i.startswith(banned)]
        assert bad == [], f"{path.relative_to(PACKAGE)} imports {bad}"


def test_errors_imports_nothing_from_netspec() -> None:
    assert not [i for i in imports_of(PACKAGE / "errors.py") if i.startswith("netspec")]


def test_check_and_compile_do_not_import_onnx_onnxruntime_or_torch() -> None:
    code = (
        "import sys, netspec.cli as c;"
        "c.main(['check', 'specs/lenet5.net']); c.main(['compile', 'specs/lenet5.net']);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx','onnxruntime','torch')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
        timeout=60,
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
