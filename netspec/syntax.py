"""Text -> AST with spans. The only module that imports lark.

The AST is plain frozen dataclasses; every node carries the `Span` it came from so later
stages can point at the exact culprit.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import lark
from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError
from lark.grammar import Rule
from lark.lark import PostLex
from lark.lexer import TerminalDef
from lark.tree import Meta

from netspec.errors import SOURCES, NetspecError, Span

# grammar/ at the top of the repository; netspec/grammar links to it so wheels carry it.
GRAMMAR = Path(__file__).resolve().parent / "grammar" / "netspec.lark"
TABLES = Path(__file__).resolve().parent / "_parser_tables.py"
# The largest integer a spec may hold, written or computed: no real network needs more, and
# beyond it sizes overflow the float32/int64 arithmetic of the back ends.
MAX_INT = 10**12


def _abridged(digits: str) -> str:
    """A long numeral, shortened for a message."""
    if len(digits) <= 30:
        return digits
    return f"{digits[:12]}...{digits[-4:]} ({len(digits):,} characters)"


# ---------------------------------------------------------------------------------------------
# AST


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


# ---------------------------------------------------------------------------------------------
# Parsing


class _Newlines(PostLex):
    """Drop newlines inside (...) and [...], where they only wrap long argument lists."""

    always_accept = ("_NL",)
    _OPEN = frozenset({"LPAR", "LSQB"})
    _CLOSE = frozenset({"RPAR", "RSQB"})

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        for tok in stream:
            if tok.type in self._OPEN:
                depth += 1
            elif tok.type in self._CLOSE:
                depth = max(0, depth - 1)
            elif tok.type == "_NL" and depth > 0:
                continue
            yield tok


def _build_parser(grammar: str) -> Lark:
    return Lark(
        grammar,
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_Newlines(),
    )


def _grammar_hash(grammar: str) -> str:
    return hashlib.sha256(grammar.encode()).hexdigest()


def _serialize(parser: Lark) -> dict[str, Any]:
    """The LALR tables as plain data (Lark's own serialisation, less the post-lexer object)."""
    data, memo = parser.memo_serialize([TerminalDef, Rule])
    data["options"] = {k: v for k, v in data["options"].items() if k != "postlex"}
    return {"data": data, "memo": memo}


@cache
def _parser() -> Lark:
    """The parser, from the tables stored with the package when they match the grammar.

    Building the LALR tables costs about 70 ms of every `netspec check`. Tables built from
    another grammar text or by another Lark version are ignored, not trusted: the grammar is
    compiled instead (a test catches the first case; a newer Lark only costs the time).
    """
    grammar = GRAMMAR.read_text(encoding="utf-8")
    from netspec import _parser_tables as stored

    if (_grammar_hash(grammar), lark.__version__) != (stored.GRAMMAR_SHA256, stored.LARK):
        return _build_parser(grammar)
    tables = stored.TABLES
    # The loader Lark's own standalone generator calls; unlike Lark.load it takes the post-lexer.
    loaded: Lark = Lark._load_from_dict(  # type: ignore[no-untyped-call]
        tables["data"], tables["memo"], postlex=_Newlines()
    )
    return loaded


def write_tables(path: Path = TABLES) -> None:
    """Regenerate the stored parser tables (`make tables`) after editing the grammar."""
    grammar = GRAMMAR.read_text(encoding="utf-8")
    tables = _serialize(_build_parser(grammar))
    path.write_text(
        '"""LALR tables for grammar/netspec.lark. Generated by `make tables`; do not edit."""\n'
        "from typing import Any\n\n"
        f"GRAMMAR_SHA256 = {_grammar_hash(grammar)!r}\n"
        f"LARK = {lark.__version__!r}\n"
        f"TABLES: dict[str, Any] = {tables!r}\n",
        encoding="utf-8",
    )


class _ToAst(Transformer[Token, Any]):
    """Parse tree -> AST. A rule without a method raises: a raw tree must never leak."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    # spans -----------------------------------------------------------------------------------
    def _span(self, meta: Meta | Token) -> Span:
        return Span(
            file=self.file,
            line=meta.line or 1,
            column=meta.column or 1,
            end_line=meta.end_line,
            end_column=meta.end_column,
        )

    def __default__(self, data: Any, children: Any, meta: Any) -> Any:
        raise NotImplementedError(f"grammar rule {data!r} has no AST builder")

    # literals --------------------------------------------------------------------------------
    def int_(self, tok: list[Token]) -> Num:
        digits = tok[0].replace("_", "").lstrip("0") or "0"
        # Compare digits before converting: Python refuses to convert over 4,300 of them.
        if len(digits) > len(str(MAX_INT)) or int(digits) > MAX_INT:
            raise NetspecError.at(
                f"the integer {_abridged(str(tok[0]))} is too large; "
                f"netspec allows at most {MAX_INT:,}",
                self._span(tok[0]),
            )
        return Num(int(digits), self._span(tok[0]))

    def float_(self, tok: list[Token]) -> Num:
        return Num(float(tok[0].replace("_", "")), self._span(tok[0]))

    def string(self, tok: list[Token]) -> Str:
        raw = str(tok[0])[1:-1]
        return Str(raw.encode("utf-8").decode("unicode_escape"), self._span(tok[0]))

    @lark.v_args(meta=True)
    def true(self, meta: Meta, _: list[Any]) -> Bool:
        return Bool(True, self._span(meta))

    @lark.v_args(meta=True)
    def false(self, meta: Meta, _: list[Any]) -> Bool:
        return Bool(False, self._span(meta))

    def name(self, tok: list[Token]) -> Name:
        return Name(str(tok[0]), self._span(tok[0]))

    @lark.v_args(meta=True)
    def array(self, meta: Meta, items: list[Any]) -> ListExpr:
        return ListExpr(tuple(i for i in items if i is not None), self._span(meta))

    @lark.v_args(meta=True)
    def add(self, meta: Meta, kids: list[Any]) -> BinOp:
        return BinOp("+", kids[0], kids[1], self._span(meta))

    @lark.v_args(meta=True)
    def sub(self, meta: Meta, kids: list[Any]) -> BinOp:
        return BinOp("-", kids[0], kids[1], self._span(meta))

    @lark.v_args(meta=True)
    def mul(self, meta: Meta, kids: list[Any]) -> BinOp:
        return BinOp("*", kids[0], kids[1], self._span(meta))

    @lark.v_args(meta=True)
    def div(self, meta: Meta, kids: list[Any]) -> BinOp:
        return BinOp("/", kids[0], kids[1], self._span(meta))

    @lark.v_args(meta=True)
    def floordiv(self, meta: Meta, kids: list[Any]) -> BinOp:
        return BinOp("//", kids[0], kids[1], self._span(meta))

    @lark.v_args(meta=True)
    def mod(self, meta: Meta, kids: list[Any]) -> BinOp:
        return BinOp("%", kids[0], kids[1], self._span(meta))

    @lark.v_args(meta=True)
    def neg(self, meta: Meta, kids: list[Any]) -> Neg:
        return Neg(kids[0], self._span(meta))

    # calls -----------------------------------------------------------------------------------
    @lark.v_args(meta=True)
    def kwarg(self, meta: Meta, kids: list[Any]) -> Arg:
        return Arg(str(kids[0]), kids[1], self._span(meta))

    def args(self, kids: list[Any]) -> tuple[Arg, ...]:
        out = []
        for k in kids:
            if k is None:
                continue
            out.append(k if isinstance(k, Arg) else Arg(None, k, k.span))
        return tuple(out)

    @lark.v_args(meta=True)
    def funcall(self, meta: Meta, kids: list[Any]) -> FunCall:
        return FunCall(str(kids[0]), kids[1], self._span(meta), self._span(kids[0]))

    @lark.v_args(meta=True)
    def call(self, meta: Meta, kids: list[Any]) -> Call:
        tok, args, repeat = kids
        return Call(str(tok), args or (), repeat, self._span(meta), self._span(tok))

    @lark.v_args(meta=True)
    def chain(self, meta: Meta, kids: list[Any]) -> Chain:
        src, *calls = kids
        source = None if src is None else Name(str(src), self._span(src))
        return Chain(source, tuple(calls), self._span(meta))

    # statements ------------------------------------------------------------------------------
    @lark.v_args(meta=True)
    def assign(self, meta: Meta, kids: list[Any]) -> Assign:
        return Assign(str(kids[0]), kids[1], self._span(meta), self._span(kids[0]))

    @lark.v_args(meta=True)
    def input_stmt(self, meta: Meta, kids: list[Any]) -> InputStmt:
        name, dtype, shape = kids
        dt = None if dtype is None else Name(str(dtype), self._span(dtype))
        return InputStmt(str(name), shape, dt, self._span(meta))

    @lark.v_args(meta=True)
    def output_stmt(self, meta: Meta, kids: list[Any]) -> OutputStmt:
        return OutputStmt(tuple(Name(str(t), self._span(t)) for t in kids), self._span(meta))

    @lark.v_args(meta=True)
    def param(self, meta: Meta, kids: list[Any]) -> Param:
        name, typ, default = kids
        t = None if typ is None else Name(str(typ), self._span(typ))
        return Param(str(name), t, default, self._span(meta))

    @lark.v_args(meta=True)
    def network(self, meta: Meta, kids: list[Any]) -> NetworkDef:
        name, *body = kids
        return NetworkDef(str(name), tuple(body), self._span(meta), self._span(name))

    @lark.v_args(meta=True)
    def block(self, meta: Meta, kids: list[Any]) -> BlockDef:
        name, *rest = kids
        params = tuple(k for k in rest if isinstance(k, Param))
        body = tuple(k for k in rest if k is not None and not isinstance(k, Param))
        return BlockDef(str(name), params, body, self._span(meta), self._span(name))

    @lark.v_args(meta=True)
    def setting(self, meta: Meta, kids: list[Any]) -> Setting:
        return Setting(str(kids[0]), kids[1], self._span(meta), self._span(kids[0]))

    @lark.v_args(meta=True)
    def train(self, meta: Meta, kids: list[Any]) -> TrainDef:
        name, *settings = kids
        return TrainDef(str(name), tuple(settings), self._span(meta), self._span(name))

    @lark.v_args(meta=True)
    def const_(self, meta: Meta, kids: list[Any]) -> ConstDef:
        return ConstDef(str(kids[0]), kids[1], self._span(meta))

    @lark.v_args(meta=True)
    def import_(self, meta: Meta, kids: list[Any]) -> Import:
        return Import(str(kids[0])[1:-1], self._span(meta))

    def start(self, kids: list[Any]) -> tuple[Item, ...]:
        return tuple(kids)


# Human names for terminals, so a message says `)` rather than RPAR.
_WORDS = {
    "NAME": "a name",
    "KEY": "a name followed by '='",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "$END": "the end of the file",
    "_NL": "a new line",
}


def _describe(terminal: str) -> str:
    if terminal in _WORDS:
        return _WORDS[terminal]
    try:
        pattern = _parser().get_terminal(terminal).pattern
    except KeyError:
        return terminal.lower()
    if pattern.type == "str":
        return f"'{pattern.value}'"
    return terminal.lower()


def _rank(word: str) -> tuple[int, str]:
    """Closers and separators first: they are what a user most often forgot."""
    if word in ("')'", "']'", "'}'", "','"):
        return 0, word
    return (1 if word.startswith("a ") else 2), word


def _expected(names: Iterable[str]) -> str:
    words = sorted({_describe(n) for n in names}, key=_rank)
    if len(words) > 8:
        return "one of " + ", ".join(words[:8]) + ", ..."
    return words[0] if len(words) == 1 else "one of " + ", ".join(words)


_TOP_LEVEL = frozenset({"import", "network", "block", "train", "const"})
_PAIRS = {"(": ")", "[": "]", "{": "}"}


def _first_word(file: str, line: int) -> tuple[str, int] | None:
    """The first word of a line and its column (keywords lex as names inside bodies)."""
    text = SOURCES.line(file, line)
    if text is None or not text.strip():
        return None
    stripped = text.lstrip()
    word = stripped.split()[0].split("(")[0]
    return word, len(text) - len(stripped) + 1


def _unclosed(file: str, line: int, column: int) -> tuple[str, int, int] | None:
    """The innermost bracket still open before (line, column), skipping strings and comments."""
    stack: list[tuple[str, int, int]] = []
    for ln in range(1, line + 1):
        text = SOURCES.line(file, ln) or ""
        end = column - 1 if ln == line else len(text)
        i = 0
        while i < end:
            ch = text[i]
            if ch == "#":
                break
            if ch == '"':
                j = text.find('"', i + 1)
                i = len(text) if j < 0 else j + 1
                continue
            if ch in _PAIRS:
                stack.append((ch, ln, i + 1))
            elif ch in _PAIRS.values() and stack and _PAIRS[stack[-1][0]] == ch:
                stack.pop()
            i += 1
    return stack[-1] if stack else None


def _syntax_error(err: UnexpectedInput, file: str) -> NetspecError:
    line, col = max(err.line, 1), max(err.column, 1)
    span = Span(file=file, line=line, column=col, end_line=line, end_column=col + 1)
    hint = None
    if isinstance(err, UnexpectedCharacters):
        msg = f"syntax error: unexpected character {err.char!r}"
        if err.char == "'":
            hint = 'strings use double quotes: "like this"'
    elif isinstance(err, UnexpectedEOF):
        msg = f"syntax error: the file ends early; expected {_expected(err.expected)}"
    elif (first := _first_word(file, line)) and first[0] in _TOP_LEVEL and first[1] < col:
        word, at = first
        msg = f"syntax error: `{word}` belongs at the top level of a file, not inside a body"
        opened = _unclosed(file, line, at)
        hint = (
            f"the '{opened[0]}' opened at line {opened[1]}, column {opened[2]} is never closed"
            if opened
            else "close the enclosing '}' first"
        )
        span = Span(file=file, line=line, column=at, end_line=line, end_column=at + len(word))
    else:
        tok: Token = err.token  # type: ignore[attr-defined]
        expected = err.expected  # type: ignore[attr-defined]
        shown = "the end of the file" if tok.type == "$END" else repr(str(tok))
        msg = f"syntax error: unexpected {shown}; expected {_expected(expected)}"
        if tok.type != "$END":
            span = Span(
                file=file,
                line=tok.line or line,
                column=tok.column or col,
                end_line=tok.end_line,
                end_column=tok.end_column,
            )
        opened = _unclosed(file, span.line, span.column)
        earlier_bracket = opened is not None and opened[1] < span.line and opened[0] != "{"
        if opened is not None and (earlier_bracket or tok.type == "$END"):
            hint = (
                f"the '{opened[0]}' opened at line {opened[1]}, column {opened[2]} is never closed"
            )
    return NetspecError.at(msg, span, hint)


def parse(text: str, file: str = "<string>") -> Module:
    """Parse netspec source. Raises NetspecError with the location of the first syntax error."""
    # Editors on Windows may start UTF-8 files with a byte-order mark; it is not part of the text.
    text = text.removeprefix("\ufeff")
    SOURCES.add(file, text)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, file) from None
    try:
        items = _ToAst(file).transform(tree)
    except VisitError as err:  # unwrap: the original exception is what matters
        raise err.orig_exc from None
    except RecursionError:
        raise NetspecError.at(
            "the file nests expressions too deeply to process",
            Span(file=file, line=1, column=1),
            "split deeply nested expressions into named constants",
        ) from None
    return Module(file, items)


# ---------------------------------------------------------------------------------------------
# Tokens, for tools that keep the text's layout (`netspec fmt`, editors)


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


_GAP = re.compile(r"#[^\n]*|\n")


def lex(text: str, file: str = "<string>") -> list[Lexeme]:
    """Every token of `text`, with its comments and line breaks, in order.

    The text is expected to parse (`parse` first): lexing alone checks no grammar. Offsets
    are into the text without a leading byte-order mark.
    """
    text = text.removeprefix("\ufeff")
    out: list[Lexeme] = []
    at = 0

    def gap(end: int) -> None:
        # Between two tokens lies only what the grammar ignores: blanks, comments and the
        # line breaks the post-lexer drops inside brackets.
        for m in _GAP.finditer(text, at, end):
            kind = "NEWLINE" if m.group() == "\n" else "COMMENT"
            out.append(Lexeme(kind, m.group().rstrip(), m.start(), m.end()))

    try:
        for tok in _parser().lex(text):
            start, end = tok.start_pos or 0, tok.end_pos or 0
            gap(start)
            if tok.type == "_NL":
                at = start
                gap(end)  # an _NL token may hold several line breaks
            else:
                out.append(Lexeme(tok.type, str(tok), start, end))
            at = end
    except UnexpectedInput as err:
        SOURCES.add(file, text)
        raise _syntax_error(err, file) from None
    gap(len(text))
    return out
