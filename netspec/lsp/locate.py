"""What is at a position of a document's AST, and which definition a name refers to."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from netspec import tree as ast
from netspec.errors import Span

Position = tuple[int, int]  # 1-based line and column, as in Span


def start(span: Span) -> Position:
    return span.line, span.column


def end(span: Span) -> Position:
    return span.end_line or span.line, span.end_column or span.column + 1


def contains(span: Span, at: Position) -> bool:
    """`at` inside the span, its end included (a cursor just after a word is on it)."""
    return start(span) <= at <= end(span)


def _children(node: object) -> Iterator[object]:
    if not dataclasses.is_dataclass(node):
        return
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if dataclasses.is_dataclass(item) and isinstance(getattr(item, "span", None), Span):
                yield item


def path_at(module: ast.Module, at: Position) -> list[object]:
    """The AST nodes whose spans hold `at`, outermost first (an item, ..., a Name)."""
    path: list[object] = []
    nodes: list[object] = list(module.items)
    while True:
        inner = [n for n in nodes if contains(n.span, at)]  # type: ignore[attr-defined]
        if not inner:
            return path
        node = inner[-1]
        path.append(node)
        nodes = list(_children(node))


def enclosing(path: list[object], kind: type[object]) -> object | None:
    for node in reversed(path):
        if isinstance(node, kind):
            return node
    return None


@dataclass(frozen=True)
class Target:
    """A definition: where it is, and what it is."""

    span: Span
    kind: str  # block, const, tensor, parameter, network, file
    name: str


def body_of(path: list[object]) -> tuple[ast.Stmt, ...]:
    item = path[0] if path else None
    if isinstance(item, ast.NetworkDef | ast.BlockDef):
        return item.body
    return ()


def tensors(body: tuple[ast.Stmt, ...], before: Position | None = None) -> dict[str, Span]:
    """The tensor names a body defines (before `before`), with where they are defined."""
    out: dict[str, Span] = {}
    for stmt in body:
        if before is not None and start(stmt.span) >= before:
            break
        if isinstance(stmt, ast.InputStmt):
            out[stmt.name] = stmt.span
        elif isinstance(stmt, ast.Assign):
            out[stmt.target] = stmt.target_span
    return out


def is_tensor_reference(path: list[object], name: ast.Name) -> bool:
    """True where a name stands for a tensor: `x -> ...`, `add(a, b)`, `output y`."""
    parent = path[-2] if len(path) >= 2 else None
    if isinstance(parent, ast.Chain) and parent.source is name:
        return True
    if isinstance(parent, ast.OutputStmt):
        return True
    if isinstance(parent, ast.Arg) and parent.key is None and len(path) >= 3:
        call = path[-3]
        return isinstance(call, ast.Call) and call.name in ("add", "concat")
    return False


def definition(
    module: ast.Module,
    blocks: dict[str, ast.BlockDef],
    consts: dict[str, ast.ConstDef],
    networks: dict[str, ast.NetworkDef],
    at: Position,
) -> Target | None:
    """The definition the thing at `at` refers to, or None (an op, a number, nothing)."""
    path = path_at(module, at)
    if not path:
        return None
    node, item = path[-1], path[0]
    if isinstance(node, ast.Import):
        target = (Path(module.file).resolve().parent / node.path).resolve()
        return Target(Span(file=str(target), line=1, column=1), "file", node.path)
    if isinstance(node, ast.TrainDef) and contains(node.name_span, at):
        net = networks.get(node.network)
        return None if net is None else Target(net.name_span, "network", net.name)
    if isinstance(node, ast.Call) and contains(node.name_span, at):
        block = blocks.get(node.name)
        return None if block is None else Target(block.name_span, "block", block.name)
    if not isinstance(node, ast.Name):
        return None
    if is_tensor_reference(path, node):
        found = tensors(body_of(path), start(node.span)).get(node.id)
        if found is None and node.id == "in" and isinstance(item, ast.BlockDef):
            return Target(item.name_span, "tensor", "in")
        return None if found is None else Target(found, "tensor", node.id)
    if isinstance(item, ast.BlockDef):
        for p in item.params:
            if p.name == node.id:
                return Target(p.span, "parameter", p.name)
    const = consts.get(node.id)
    return None if const is None else Target(const.span, "const", const.name)
