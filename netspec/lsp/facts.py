"""What each statement of a document produced, in words: the inlay hints' labels.

A statement of a network body produced one tensor; a statement of a block body produced one
per instance of the block, so it shows each distinct shape. A statement holding block calls
also shows their totals (blocks, parameters, MACs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from netspec import tree as ast
from netspec.errors import Span
from netspec.lsp.analysis import Document, Instance
from netspec.ops.base import Shape


def shape_text(shape: Shape | None) -> str:
    return "failed" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def count(n: int) -> str:
    return f"{n:,}"


def human(n: float) -> str:
    """1234567 -> 1.23M: short enough for the end of a line."""
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.3g}{suffix}" if suffix else f"{n:g}"
        n /= 1000
    return f"{n:.3g}P"


@dataclass(frozen=True)
class Totals:
    instances: int
    blocks: int
    params: int
    state: int
    macs: int

    @classmethod
    def of(cls, instances: Iterable[Instance], blocks: set[str]) -> Totals:
        got = list(instances)
        return cls(
            instances=len(got),
            blocks=sum(i.trace.call.name in blocks for i in got),
            params=sum(i.params for i in got),
            state=sum(i.state for i in got),
            macs=sum(i.macs for i in got),
        )

    def text(self) -> str:
        parts = [f"{self.blocks} block{'s' if self.blocks != 1 else ''}"] if self.blocks else []
        parts.append(f"{human(self.params)} params")
        parts.append(f"{human(self.macs)} MACs")
        return " · ".join(parts)


@dataclass(frozen=True)
class StatementFact:
    """The hint of one statement: shown at the end of its last line."""

    stmt: ast.Stmt
    shapes: tuple[Shape, ...]  # distinct output shapes, in order of first appearance
    totals: Totals | None  # when the statement calls blocks

    @property
    def label(self) -> str:
        shapes = self.shapes
        if len(shapes) <= 2:
            text = "-> " + " | ".join(shape_text(s) for s in shapes)
        else:
            text = f"-> {shape_text(shapes[0])} … {shape_text(shapes[-1])} ({len(shapes)} shapes)"
        return text if self.totals is None else f"{text} · {self.totals.text()}"


def statement_facts(doc: Document) -> Iterator[StatementFact]:
    """One fact per statement of the document's networks and blocks that produced a shape."""
    if doc.module is None or doc.program is None:
        return
    blocks = set(doc.program.blocks)
    for item in doc.module.items:
        if not isinstance(item, ast.NetworkDef | ast.BlockDef):
            continue
        for stmt in item.body:
            chain = stmt.chain if isinstance(stmt, ast.Assign) else stmt
            if not isinstance(chain, ast.Chain) or not chain.calls:
                continue
            last = doc.instances_of(chain.calls[-1])
            if isinstance(item, ast.NetworkDef):
                last = last[-1:]  # the repetitions end in the statement's output
            shapes = _distinct(i.output_shape for i in last)
            if not shapes:
                continue
            totals = None
            if any(c.name in blocks for c in chain.calls):
                totals = Totals.of((i for c in chain.calls for i in doc.instances_of(c)), blocks)
            yield StatementFact(stmt, shapes, totals)


def _distinct(shapes: Iterable[Shape | None]) -> tuple[Shape, ...]:
    out: list[Shape] = []
    for s in shapes:
        if s is not None and s not in out:
            out.append(s)
    return tuple(out)


def line_end(span: Span) -> int:
    """The last line of a span (1-based)."""
    return span.end_line or span.line
