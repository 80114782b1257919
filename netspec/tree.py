"""The AST: plain frozen dataclasses, each carrying the `Span` it came from, so later stages
can point at the exact culprit. syntax.py builds it; nothing here knows the parser."""

from __future__ import annotations

from dataclasses import dataclass

from netspec.errors import Span

# The largest integer a spec may hold, written or computed: no real network needs more, and
# beyond it sizes overflow the float32/int64 arithmetic of the back ends.
MAX_INT = 10**12


@dataclass(frozen=True)
class Num:
    value: int | float
    span: Span


@dataclass(frozen=True)
class Str:
    value: str
    span: Span


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class ListExpr:
    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / // %
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: Expr
    span: Span


@dataclass(frozen=True)
class Arg:
    key: str | None  # None for a positional argument
    value: Expr
    span: Span  # the whole `key=value`, or the value alone


@dataclass(frozen=True)
class FunCall:
    """`name(args)` used as a value: `adam(lr=1e-3)`, `bidirectional(lstm(64))`."""

    name: str
    args: tuple[Arg, ...]
    span: Span
    name_span: Span


Expr = Num | Str | Bool | Name | ListExpr | BinOp | Neg | FunCall


@dataclass(frozen=True)
class Call:
    """One link of a chain: an op or a block, maybe repeated (`Basic(64) * 2`)."""

    name: str
    args: tuple[Arg, ...]
    repeat: Expr | None
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Chain:
    """`[source ->] call call ...`: each call consumes the previous one's output."""

    source: Name | None
    calls: tuple[Call, ...]
    span: Span


@dataclass(frozen=True)
class Assign:
    target: str
    chain: Chain
    span: Span
    target_span: Span


@dataclass(frozen=True)
class InputStmt:
    name: str
    shape: ListExpr
    dtype: Name | None
    span: Span


@dataclass(frozen=True)
class OutputStmt:
    names: tuple[Name, ...]
    span: Span


Stmt = InputStmt | OutputStmt | Assign | Chain


@dataclass(frozen=True)
class Param:
    name: str
    type: Name | None
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class NetworkDef:
    name: str
    body: tuple[Stmt, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class BlockDef:
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Setting:
    key: str
    value: Expr
    span: Span
    key_span: Span


@dataclass(frozen=True)
class TrainDef:
    network: str
    settings: tuple[Setting, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class ConstDef:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Import:
    path: str
    span: Span


Item = Import | ConstDef | NetworkDef | BlockDef | TrainDef


@dataclass(frozen=True)
class Module:
    file: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Lexeme:
    """One token of the source, or a comment, or one line break; offsets into the text.

    `kind` is the grammar's terminal name (NAME, INT, LPAR, ...), COMMENT, or NEWLINE (one per
    line break, those inside brackets included, which the parser itself never sees).
    """

    kind: str
    text: str
    start: int
    end: int
