"""`netspec fmt`: one canonical layout for `.net` text, comments kept, nothing reordered.

The layout, gofmt's way: the line breaks a spec's author chose stay (a statement ends at a line
break, and wrapped argument lists keep their wraps); everything else is decided here:

- two spaces per level of `{ }`; a line wrapped inside `( )` or `[ ]` one level deeper than the
  line that opened the bracket, its closing bracket back at that line's level;
- one space between words, around `=`, `->`, `*` and binary arithmetic, after `,` and `:`;
  none inside brackets, before `,`, after a unary minus, between a call's name and its `(`,
  or around the `=` of `key=value` (a block parameter with a type keeps them: `n: int = 2`);
- `{` ends its line and `}` stands on its own; one blank line at most, none at the start of a
  body or before its `}`, one between top-level definitions (above their comments);
- comments unchanged but for trailing blanks; the trailing comments of consecutive lines at
  one indentation aligned two spaces past the longest of those lines' code;
- LF line ends, one at the end of the file.

`format_text` refuses text that does not parse (the located syntax error) and checks that the
result parses to the same program, so a formatting bug can never change what a spec means.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from netspec import syntax
from netspec.errors import NetspecError
from netspec.tree import Lexeme

INDENT = "  "
COMMENT_GAP = 2
_BINARY = frozenset({"+", "-", "*", "/", "//", "%"})
_DEFINITIONS = frozenset({"network", "block", "train"})
_SPANS = frozenset({"span", "name_span", "key_span", "target_span"})
_CHECK_FILE = "<netspec fmt>"  # the name the result is re-parsed under


def format_text(text: str, file: str = "<string>") -> str:
    """`text` in the canonical layout. Raises NetspecError (located) when it does not parse."""
    before = syntax.parse(text, file)
    out = _Printer().run(syntax.lex(text, file))
    try:
        after = syntax.parse(out, _CHECK_FILE)
    except NetspecError:
        after = None
    if after is None or _meaning(after.items) != _meaning(before.items):
        raise AssertionError(f"netspec fmt would change what {file} means; this is a bug")
    return out


def _meaning(value: Any) -> Any:
    """An AST without its spans: what the text says, not where."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return (
            type(value).__name__,
            *(_meaning(getattr(value, f.name)) for f in fields if f.name not in _SPANS),
        )
    if isinstance(value, tuple):
        return tuple(_meaning(v) for v in value)
    return value


@dataclass
class _Line:
    indent: int
    code: str = ""
    comment: str | None = None
    top: bool = False  # starts outside every bracket and brace
    blank: bool = False


@dataclass
class _Open:
    """An open `(` or `[`: the indentation of the line that opened it."""

    indent: int
    typed: bool = False  # a `name: type` was written since its last comma


def _word(text: str | None) -> bool:
    return text is not None and (text[0].isalpha() or text[0] == "_")


def _operand_end(text: str | None) -> bool:
    """True after a value: what makes a following `-` a subtraction, not a negation."""
    return text is not None and (
        _word(text) or text[0].isdigit() or text[0] in '."' or text in (")", "]")
    )


class _Printer:
    def __init__(self) -> None:
        self.lines: list[_Line] = []
        self.cur: _Line | None = None
        self.braces = 0
        self.stack: list[_Open] = []
        self.prev: str | None = None
        self.prev2: str | None = None
        self.unary = False  # the previous token is a unary minus
        self.arrow = False  # the previous token is `->` (its chain may go on on the next line)
        self.newlines = 0  # line breaks since the last token or comment
        self.force_break = False  # after `{` and `}`

    def run(self, lexemes: list[Lexeme]) -> str:
        for lx in lexemes:
            if lx.kind == "NEWLINE":
                self.newlines += 1
            elif lx.kind == "COMMENT":
                self.comment(lx.text)
            else:
                self.token(lx.text)
        self.end_line()
        return _render(_separate(self.lines))

    # lines ------------------------------------------------------------------------------------
    def end_line(self) -> None:
        if self.cur is not None:
            self.lines.append(self.cur)
            self.cur = None

    def new_line(self, first: str | None) -> _Line:
        """Start a line whose first token is `first` (None: a comment)."""
        if self.newlines >= 2 and self.lines and not self.stack:
            self.lines.append(_Line(0, blank=True))
        if first in (")", "]") and self.stack:
            indent = self.stack[-1].indent
        elif first == "}":
            indent = max(self.braces - 1, 0)
        elif self.stack:
            indent = self.stack[-1].indent + 1
        else:
            indent = self.braces + (1 if self.arrow else 0)
        return _Line(indent, top=not self.stack and (self.braces == 0 or first == "}"))

    def comment(self, text: str) -> None:
        if self.cur is not None and self.newlines == 0:
            self.cur.comment = text
            return
        self.end_line()
        line = self.new_line(None)
        line.comment = text
        self.lines.append(line)
        self.newlines = 0

    def token(self, t: str) -> None:
        if self.cur is not None and (self.newlines or self.force_break or t == "}"):
            self.end_line()
        if self.cur is None:
            self.cur = self.new_line(t)
            self.cur.code = t
        else:
            self.cur.code += self.space(t) + t
        self.newlines = 0
        self.force_break = t in ("{", "}")
        if t in ("(", "["):
            self.stack.append(_Open(self.cur.indent))
        elif t in (")", "]") and self.stack:
            self.stack.pop()
        elif t == "{":
            self.braces += 1
        elif t == "}":
            self.braces = max(self.braces - 1, 0)
        elif t == "," and self.stack:
            self.stack[-1].typed = False
        elif t == ":" and self.stack:
            self.stack[-1].typed = True
        self.unary = t == "-" and not _operand_end(self.prev)
        self.arrow = t == "->"
        self.prev2, self.prev = self.prev, t

    def space(self, t: str) -> str:
        """What goes between the previous token and `t` on one line."""
        p = self.prev
        if t in (")", "]", ",", ":") or p in ("(", "[") or self.unary:
            return ""
        if "=" in (t, p) and self.stack and not self.stack[-1].typed:
            return ""  # key=value
        if t == "(":
            return "" if _word(p) else " "  # a call's name and its arguments
        if t == "[":
            return "" if _word(p) and self.prev2 == ":" else " "  # `input x: int64[8]`
        return " "


def _separate(lines: list[_Line]) -> list[_Line]:
    """Blank lines: none first, last, after `{` or before `}`; one around definitions."""
    out: list[_Line] = []
    for i, line in enumerate(lines):
        if line.blank:
            nxt = lines[i + 1] if i + 1 < len(lines) else None
            if not out or out[-1].blank or out[-1].code.endswith("{"):
                continue
            if nxt is None or nxt.code.startswith("}"):
                continue
        out.append(line)
    i = 0
    while i < len(out):
        line = out[i]
        after_close = i > 0 and out[i - 1].top and out[i - 1].code == "}"
        starts_def = line.top and line.code.split(" ", 1)[0] in _DEFINITIONS
        if not line.blank and (after_close or starts_def):
            j = i
            while starts_def and j > 0 and out[j - 1].top and not out[j - 1].code:
                if out[j - 1].blank or out[j - 1].comment is None:
                    break
                j -= 1  # the comments right above a definition belong to it
            if j > 0 and not out[j - 1].blank:
                out.insert(j, _Line(0, blank=True))
                i += 1
        i += 1
    return out


def _render(lines: list[_Line]) -> str:
    widths = [len(INDENT * ln.indent + ln.code) for ln in lines]
    column = [0] * len(lines)
    i = 0
    while i < len(lines):  # runs of consecutive lines, one indentation, with trailing comments
        j = i
        while (
            j < len(lines)
            and lines[j].code
            and lines[j].comment is not None
            and lines[j].indent == lines[i].indent
        ):
            j += 1
        if j > i:
            at = max(widths[i:j]) + COMMENT_GAP
            column[i:j] = [at] * (j - i)
            i = j
        else:
            i += 1
    out = []
    for ln, width, at in zip(lines, widths, column, strict=True):
        if ln.blank:
            out.append("")
        elif not ln.code:
            out.append(INDENT * ln.indent + (ln.comment or ""))
        elif ln.comment is None:
            out.append(INDENT * ln.indent + ln.code)
        else:
            out.append(INDENT * ln.indent + ln.code + " " * (at - width) + ln.comment)
    return "\n".join(out).rstrip("\n") + "\n" if out else ""
