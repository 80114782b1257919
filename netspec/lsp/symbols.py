"""The document's outline (networks, blocks, train sections and what they define), folding
ranges, and the name tables definitions are looked up in."""

from __future__ import annotations

from dataclasses import dataclass, field

from netspec import tree as ast
from netspec.errors import Span
from netspec.lsp.analysis import Document


@dataclass(frozen=True)
class Symbol:
    name: str
    kind: str  # network, block, train, const, import, input, tensor, setting
    span: Span
    name_span: Span
    detail: str | None = None
    children: tuple[Symbol, ...] = field(default=())


def tables(
    doc: Document,
) -> tuple[dict[str, ast.BlockDef], dict[str, ast.ConstDef], dict[str, ast.NetworkDef]]:
    """Blocks, constants and networks by name: the program's (imports included) when it
    loaded, else the document's own."""
    if doc.program is not None:
        return doc.program.blocks, doc.program.consts, doc.program.networks
    items = doc.module.items if doc.module is not None else ()
    return (
        {i.name: i for i in items if isinstance(i, ast.BlockDef)},
        {i.name: i for i in items if isinstance(i, ast.ConstDef)},
        {i.name: i for i in items if isinstance(i, ast.NetworkDef)},
    )


def _body(body: tuple[ast.Stmt, ...]) -> tuple[Symbol, ...]:
    out = []
    for stmt in body:
        if isinstance(stmt, ast.InputStmt):
            out.append(Symbol(stmt.name, "input", stmt.span, stmt.span, "input"))
        elif isinstance(stmt, ast.Assign):
            calls = " ".join(c.name for c in stmt.chain.calls)
            out.append(Symbol(stmt.target, "tensor", stmt.span, stmt.target_span, calls))
    return tuple(out)


def outline(module: ast.Module) -> list[Symbol]:
    out = []
    for item in module.items:
        if isinstance(item, ast.NetworkDef):
            out.append(
                Symbol(item.name, "network", item.span, item.name_span, None, _body(item.body))
            )
        elif isinstance(item, ast.BlockDef):
            params = f"({', '.join(p.name for p in item.params)})"
            body = _body(item.body)
            out.append(Symbol(item.name, "block", item.span, item.name_span, params, body))
        elif isinstance(item, ast.TrainDef):
            settings = tuple(Symbol(s.key, "setting", s.span, s.key_span) for s in item.settings)
            out.append(
                Symbol(f"train {item.network}", "train", item.span, item.name_span, None, settings)
            )
        elif isinstance(item, ast.ConstDef):
            out.append(Symbol(item.name, "const", item.span, item.span))
        else:
            out.append(Symbol(item.path, "import", item.span, item.span))
    return out


def folds(module: ast.Module | None) -> list[tuple[int, int]]:
    """0-based (first, last) lines of each multi-line item."""
    if module is None:
        return []
    out = []
    for item in module.items:
        last = (item.span.end_line or item.span.line) - 1
        if last > item.span.line - 1:
            out.append((item.span.line - 1, last))
    return out
