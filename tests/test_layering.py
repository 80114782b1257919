"""Data flows one way. These import rules keep the stages and back ends apart, and are the
executable half of docs/ARCHITECTURE.md: every import of the package, including the ones inside
functions, is read here."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "netspec"

# Layers, bottom up. A module may import its own layer and the ones below, never above; the
# back ends and the edges may not import each other either (see SIBLINGS).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("errors", ("netspec.errors",)),
    (
        "shared",
        (
            "netspec",
            "netspec._parser_tables",
            "netspec.callform",
            "netspec.synonyms",
            "netspec.ops",
            "netspec.losses",
            "netspec.recipe",
            "netspec.ir",
            "netspec.files",
            "netspec.arrays",
            "netspec.memory",
            "netspec.threads",
            "netspec.meta_checks",
            "netspec.runs",
            "netspec.feeds",
            "netspec.initializers",
            "netspec.freezing",
            "netspec.training",
        ),
    ),
    (
        "stages",
        (
            "netspec.syntax",
            "netspec.tree",
            "netspec.values",
            "netspec.program",
            "netspec.validation",
            "netspec.recipes",
            "netspec.expand",
            "netspec.graph",
            "netspec.survey",
            "netspec.recipe_checks",
            "netspec.engine",
            "netspec.onnx",
            "netspec.importer",
            "netspec.torch",
            "netspec.viz",
        ),
    ),
    ("api", ("netspec.api", "netspec.importing")),
    ("edges", ("netspec.cli", "netspec.lsp", "netspec.fmt", "netspec.docs", "netspec.__main__")),
)
FRONT_END = (
    "netspec.syntax",
    "netspec.tree",
    "netspec.values",
    "netspec.program",
    "netspec.validation",
    "netspec.recipes",
    "netspec.expand",
    "netspec.graph",
    "netspec.survey",
    "netspec.recipe_checks",
)
BACK_ENDS = ("netspec.engine", "netspec.onnx", "netspec.torch", "netspec.viz")
# The importer is a front end of another kind: it reads ONNX and writes `.net` text, so it
# imports neither the parser nor a back end (api checks what it writes).
IMPORTER = "netspec.importer"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or (prefix != "netspec" and name.startswith(prefix + "."))


def group_of(name: str) -> str:
    """The longest listed prefix that holds a module."""
    best = max(
        (p for _, prefixes in LAYERS for p in prefixes if _within(name, p)),
        key=len,
        default=None,
    )
    assert best is not None, f"{name} belongs to no layer: add it to LAYERS"
    return best


def layer_of(name: str) -> int:
    group = group_of(name)
    return next(i for i, (_, prefixes) in enumerate(LAYERS) if group in prefixes)


@cache
def imports_of(path: Path) -> frozenset[str]:
    """Every module a file imports, anywhere in it (`from netspec import api` -> netspec.api)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return frozenset(names)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def netspec_imports(path: Path) -> set[str]:
    """The package's own modules a file imports (names that are modules, not attributes)."""
    known = modules()
    return {i for i in imports_of(path) if i in known} - {module_name(path)}


def test_every_module_belongs_to_a_layer() -> None:
    for name in modules():
        group_of(name)


def test_no_module_imports_a_higher_layer() -> None:
    bad = [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})"
        for name, path in modules().items()
        for dep in netspec_imports(path)
        if layer_of(dep) > layer_of(name)
    ]
    assert bad == []


def test_back_ends_import_no_other_back_end_and_no_front_end() -> None:
    bad = []
    for name, path in modules().items():
        mine = group_of(name)
        if mine not in BACK_ENDS:
            continue
        for dep in netspec_imports(path):
            theirs = group_of(dep)
            if theirs in FRONT_END or (theirs in BACK_ENDS and theirs != mine):
                bad.append(f"{name} imports {dep}")
    assert bad == []


def test_the_importer_imports_no_other_stage() -> None:
    bad = [
        f"{name} imports {dep}"
        for name, path in modules().items()
        if group_of(name) == IMPORTER
        for dep in netspec_imports(path)
        if layer_of(dep) == layer_of(IMPORTER) and group_of(dep) != IMPORTER
    ]
    assert bad == []


def test_the_front_end_imports_no_back_end() -> None:
    bad = [
        f"{name} imports {dep}"
        for name, path in modules().items()
        if group_of(name) in FRONT_END
        for dep in netspec_imports(path)
        if group_of(dep) in BACK_ENDS
    ]
    assert bad == []


def test_the_command_line_reaches_the_pipeline_through_api_only() -> None:
    bad = [
        f"{name} imports {dep}"
        for name, path in modules().items()
        if group_of(name) == "netspec.cli"
        for dep in netspec_imports(path)
        if layer_of(dep) == layer_of("netspec.expand")  # a stage or a back end
    ]
    assert bad == []


def test_the_package_has_no_import_cycle() -> None:
    """A module is imported only after everything it imports (at module level or not)."""
    graph = {name: netspec_imports(path) for name, path in modules().items()}
    # A package's __init__ importing its own submodules is how a package is built, not a
    # cycle: edges from a package to its members are left out.
    graph = {n: {d for d in deps if not d.startswith(n + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(graph.get(name, ())):
            if state.get(dep) == 1:
                raise AssertionError(
                    "import cycle: " + " -> ".join([*stack[stack.index(dep) :], dep])
                )
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("lark", {"netspec.syntax"}),
        ("networkx", {"netspec.graph"}),
        ("torch", {"netspec.torch"}),
        ("onnx", {"netspec.onnx", "netspec.importer"}),
        ("onnxruntime", {"netspec.onnx"}),
        ("matplotlib", {"netspec.viz"}),
        ("rich", {"netspec.cli"}),
        ("argparse", {"netspec.cli"}),
        ("pygls", {"netspec.lsp"}),
        ("threadpoolctl", {"netspec.threads"}),
    ],
)
def test_third_party_libraries_stay_in_their_module(library: str, allowed: set[str]) -> None:
    offenders = [
        name
        for name, path in modules().items()
        if any(i == library or i.startswith(library + ".") for i in imports_of(path))
        and not any(_within(name, a) for a in allowed)
    ]
    assert offenders == []


def test_errors_imports_nothing_from_netspec() -> None:
    assert not netspec_imports(PACKAGE / "errors.py")


def test_check_and_compile_do_not_import_onnx_onnxruntime_torch_or_the_engine() -> None:
    code = (
        "import sys, netspec.cli as c;"
        "c.main(['check', 'specs/lenet5.net']); c.main(['compile', 'specs/lenet5.net']);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx','onnxruntime','torch')"
        " or m.startswith(('netspec.engine', 'netspec.training', 'netspec.onnx'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
        timeout=60,
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
