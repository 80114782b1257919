"""Spans, diagnostics and the one error type every stage raises.

This module imports nothing from netspec so that every stage, and the CLI, can use it.
A diagnostic is rendered the way compilers do::

    lenet.net:7:3: error: conv2d 'conv2d_2': kernel 5 is larger than its padded input 4 ...
        conv2d(16, kernel=5) tanh
        ^~~~~~~~~~~~~~~~~~~~
      hint: ...
"""

from __future__ import annotations

import difflib
import stat
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class Span(BaseModel):
    """A region of a source file: 1-based line and column, end exclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    """One finding: where, how bad, what, and what to do about it."""

    severity: Severity
    message: str
    span: Span | None = None
    hint: str | None = None
    layer: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "severity": str(self.severity),
            "message": self.message,
            "hint": self.hint,
            "layer": self.layer,
            "location": None if self.span is None else self.span.model_dump(),
        }


@dataclass
class NetspecError(Exception):
    """The project's error: one or more diagnostics. Everything a user can get wrong raises it."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    exit_code: int = 1

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics[0].message if self.diagnostics else "netspec error")

    @classmethod
    def at(
        cls,
        message: str,
        span: Span | None = None,
        hint: str | None = None,
        *,
        layer: str | None = None,
        exit_code: int = 1,
    ) -> NetspecError:
        return cls([Diagnostic(Severity.ERROR, message, span, hint, layer)], exit_code)

    def __str__(self) -> str:
        return "\n".join(d.message for d in self.diagnostics)


class ShapeError(ValueError):
    """Raised by an op's shape rule; span-less: the graph stage adds the layer's name and span."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


# Exit codes, documented in the README.
EXIT_OK = 0
EXIT_SPEC = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3


def suggest(name: str, known: Iterable[str]) -> str | None:
    """'did you mean ...' for a misspelt name, or None when nothing is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


MAX_SOURCE_BYTES = 16 * 2**20  # the largest source file read to show a line (specs' own limit)


def _lines(text: str) -> list[str]:
    """Source lines as the parser counts them: split on "\n" only.

    `str.splitlines` also splits on U+2028, form feeds and lone carriage returns, which would
    shift every later line against Lark's line numbers. A CRLF file's "\r" is dropped.
    """
    return [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]


class SourceCache:
    """Reads source lines for rendering; sources registered in memory win over the disk."""

    def __init__(self) -> None:
        self._texts: dict[str, list[str]] = {}

    def add(self, file: str, text: str) -> None:
        self._texts[file] = _lines(text)

    def forbid(self, file: str) -> None:
        """Never read `file` for a source line (a span from IR JSON naming a file elsewhere)."""
        self._texts[file] = []

    def line(self, file: str, line: int) -> str | None:
        if file not in self._texts:
            text = _read_source(Path(file))
            self._texts[file] = _lines(text) if text else []
        lines = self._texts[file]
        return lines[line - 1] if 0 < line <= len(lines) else None


def _read_source(path: Path) -> str:
    """A source file's text for rendering, or "": only a regular file of bounded size is read
    (a span naming a FIFO would block, /dev/zero would fill the memory)."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SOURCE_BYTES:
            return ""
        with path.open("rb") as f:
            return f.read(MAX_SOURCE_BYTES + 1).decode("utf-8", errors="replace")
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return ""


SOURCES = SourceCache()

TAB = 4


def _shown(ch: str, at: int) -> str:
    """How one source character is printed when the display has `at` columns so far.

    Tabs expand to the next tab stop; control and other invisible characters are escaped, so a
    binary file given as a spec cannot drive the terminal (ESC) or hide what was written.
    """
    if ch == "\t":
        return " " * (TAB - at % TAB)
    if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
        return ascii(ch)[1:-1]
    return ch


def printable(text: str) -> str:
    """`text` from a file (a label, a name, a key), safe to print: control and invisible
    characters escaped, so an ONNX model or a data file cannot drive the terminal."""
    if text.isprintable():  # nothing to escape (it rejects every category _shown escapes)
        return text
    return "".join(_shown(ch, 0) if ch != "\t" else "\\t" for ch in text)


def _display(text: str, column: int, end_column: int) -> tuple[str, int, int]:
    """The printable line and the 0-based display columns of [column, end_column)."""
    out: list[str] = []
    at = 0
    start = end = None
    for i, ch in enumerate(text):
        if i == column - 1:
            start = at
        if i == end_column - 1:
            end = at
        piece = _shown(ch, at)
        out.append(piece)
        at += len(piece)
    # Past the end of the line (an error at the end of the file): one column per position.
    start = at + column - 1 - len(text) if start is None else start
    end = at + end_column - 1 - len(text) if end is None else end
    return "".join(out), start, end


def _lines_printable(text: str) -> str:
    """A message may quote names read from files; its own line breaks are kept."""
    return "\n".join(printable(line) for line in text.split("\n"))


def render(diagnostic: Diagnostic, sources: SourceCache = SOURCES) -> str:
    """``file:line:col: severity: message``, the source line, a caret under the culprit, a hint."""
    span = diagnostic.span
    head = f"{span}: " if span is not None else ""
    out = [f"{_lines_printable(head)}{diagnostic.severity}: {_lines_printable(diagnostic.message)}"]
    if span is not None:
        text = sources.line(span.file, span.line)
        if text is not None:
            end_column = span.column + 1
            if span.end_line == span.line and span.end_column is not None:
                end_column = max(end_column, span.end_column)
            # Neither past the line's end (a span from IR JSON may say column 300000000).
            column = min(max(span.column, 1), len(text) + 1)
            end_column = min(max(end_column, column + 1), max(column + 1, len(text) + 1))
            shown, start, end = _display(text, column, end_column)
            width = max(1, end - start)
            out.append(f"    {shown}")
            out.append("    " + " " * start + "^" + "~" * (width - 1))
    if diagnostic.hint:
        out.append(f"  hint: {_lines_printable(diagnostic.hint)}")
    return "\n".join(out)


def render_all(diagnostics: Sequence[Diagnostic], sources: SourceCache = SOURCES) -> str:
    return "\n".join(render(d, sources) for d in diagnostics)
