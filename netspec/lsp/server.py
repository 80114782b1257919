"""The language server: pygls glue between the editor and the pure features.

Everything runs on pygls's event loop, one message at a time: a document's analysis is
cached by its version, so diagnostics (debounced after typing), inlay hints, hover and the
rest of one version share one analysis. Positions are converted here, once: netspec counts
1-based lines and code points; the protocol counts 0-based lines and UTF-16 units (or what
the client negotiated).

A handler that raises answers its request with an error and the server keeps serving (pygls
does that for every request); `NETSPEC_LSP_FAULT=<method>` makes a method fail on purpose,
for the tests that check it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.uris import from_fs_path, to_fs_path
from pygls.workspace import PositionCodec, TextDocument

from netspec import __version__, fmt
from netspec.errors import SOURCES, NetspecError, Severity, Span
from netspec.lsp import complete, hover, locate, symbols
from netspec.lsp.analysis import Document, Finding, analyse_document
from netspec.lsp.facts import statement_facts

log = logging.getLogger(__name__)
FAULT_ENV = "NETSPEC_LSP_FAULT"
TRIGGERS = ["(", ",", "=", ">", "[", " ", '"']

_KINDS = {
    "op": lsp.CompletionItemKind.Function,
    "block": lsp.CompletionItemKind.Class,
    "attribute": lsp.CompletionItemKind.Field,
    "parameter": lsp.CompletionItemKind.Variable,
    "constant": lsp.CompletionItemKind.Constant,
    "tensor": lsp.CompletionItemKind.Variable,
    "setting": lsp.CompletionItemKind.Property,
    "value": lsp.CompletionItemKind.EnumMember,
    "keyword": lsp.CompletionItemKind.Keyword,
    "file": lsp.CompletionItemKind.File,
    "network": lsp.CompletionItemKind.Module,
}

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Settings:
    """`netspec.*` in the editor's settings, or the client's initializationOptions."""

    inlay_hints: bool = True
    allow_outside_imports: bool = False
    debounce_ms: int = 150

    def update(self, raw: Any) -> None:
        if isinstance(raw, dict) and isinstance(raw.get("netspec"), dict):
            raw = raw["netspec"]
        if not isinstance(raw, dict):
            return
        if isinstance(raw.get("inlayHints"), bool):
            self.inlay_hints = raw["inlayHints"]
        if isinstance(raw.get("allowOutsideImports"), bool):
            self.allow_outside_imports = raw["allowOutsideImports"]
        ms = raw.get("debounceMs")
        if isinstance(ms, int) and not isinstance(ms, bool) and 0 <= ms <= 10_000:
            self.debounce_ms = ms


@dataclass
class _State:
    version: int | None
    doc: Document


@dataclass
class Session:
    """What the server knows about the open documents."""

    server: LanguageServer
    settings: Settings = field(default_factory=Settings)
    states: dict[str, _State] = field(default_factory=dict)  # by URI
    good: dict[str, Document] = field(default_factory=dict)  # last analysis that parsed
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)

    # documents --------------------------------------------------------------------------------
    def text_document(self, uri: str) -> TextDocument:
        return self.server.workspace.get_text_document(uri)

    def open_texts(self) -> dict[Path, str]:
        out = {}
        for uri, doc in self.server.workspace.text_documents.items():
            path = _path(uri)
            if path is not None:
                out[path.resolve()] = doc.source
        return out

    def state(self, uri: str) -> Document:
        """The analysis of the document's current text (computed at most once per version)."""
        td = self.text_document(uri)
        cached = self.states.get(uri)
        if cached is not None and cached.version == td.version and td.version is not None:
            return cached.doc
        path = _path(uri) or Path.cwd() / (td.filename or "untitled.net")
        doc = analyse_document(
            path,
            td.source,
            self.open_texts(),
            allow_outside_imports=self.settings.allow_outside_imports,
        )
        self.states[uri] = _State(td.version, doc)
        if doc.module is not None:
            self.good[uri] = doc
        return doc

    def publish(self, uri: str) -> None:
        self.timers.pop(uri, None)
        if uri not in self.server.workspace.text_documents:
            return  # closed meanwhile
        doc = self.state(uri)
        td = self.text_document(uri)
        lines = doc.text.split("\n")
        diagnostics = [self.diagnostic(f, lines) for f in doc.findings]
        self.server.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=td.version)
        )

    def schedule(self, uri: str, delay_ms: int | None = None) -> None:
        """Publish the document's diagnostics after a pause in typing."""
        delay = self.settings.debounce_ms if delay_ms is None else delay_ms
        if (old := self.timers.pop(uri, None)) is not None:
            old.cancel()
        if delay <= 0:
            self.publish(uri)
            return
        loop = asyncio.get_running_loop()
        self.timers[uri] = loop.call_later(delay / 1000, self.publish, uri)

    def changed(self, uri: str, now: bool) -> None:
        """The text of `uri` changed: it, and the open documents importing it, are stale."""
        if now:
            self.publish(uri)
        else:
            self.schedule(uri)
        path = _path(uri)
        if path is None:
            return
        for other, state in list(self.states.items()):
            program = state.doc.program
            if other == uri or program is None:
                continue
            if any(f.resolve() == path.resolve() for f in program.files[1:]):
                self.states.pop(other, None)  # its imports' text changed, not its version
                self.schedule(other)

    def closed(self, uri: str) -> None:
        if (timer := self.timers.pop(uri, None)) is not None:
            timer.cancel()
        self.states.pop(uri, None)
        self.good.pop(uri, None)
        path = _path(uri)
        if path is not None:
            # The process-wide source cache (used to render messages) must not keep an
            # unsaved buffer for a file that is now the disk's again.
            with contextlib.suppress(OSError):
                SOURCES.add(str(path), path.read_text(encoding="utf-8", errors="replace"))
        self.server.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[])
        )

    def reanalyse_all(self) -> None:
        self.states.clear()
        for uri in list(self.server.workspace.text_documents):
            self.schedule(uri, 0)

    def diagnostic(self, f: Finding, lines: list[str]) -> lsp.Diagnostic:
        """A finding as the protocol's diagnostic; the hint on a line of its own."""
        related = None
        if f.origin is not None:
            where = lsp.DiagnosticRelatedInformation(
                location=self.location(f.origin), message="the problem is here"
            )
            related = [where]
        error = f.severity is Severity.ERROR
        return lsp.Diagnostic(
            range=self.range(lines, f.span),
            message=f.message + (f"\nhint: {f.hint}" if f.hint else ""),
            severity=lsp.DiagnosticSeverity.Error if error else lsp.DiagnosticSeverity.Warning,
            source="netspec",
            related_information=related,
        )

    # positions --------------------------------------------------------------------------------
    @property
    def codec(self) -> PositionCodec:
        """The position encoding negotiated with the client (UTF-16 before initialization)."""
        try:
            return self.server.workspace.position_codec
        except RuntimeError:
            return PositionCodec()

    def to_client(self, lines: list[str], line: int, column: int) -> lsp.Position:
        """1-based (line, code point column) -> the protocol's position."""
        line = min(max(line, 1), max(len(lines), 1))
        text = lines[line - 1] if lines else ""
        units = self.codec.client_num_units(text[: max(column - 1, 0)])
        return lsp.Position(line=line - 1, character=units)

    def from_client(self, lines: list[str], pos: lsp.Position) -> tuple[int, int]:
        """The protocol's position -> 1-based (line, code point column)."""
        if pos.line >= len(lines):
            return len(lines), len(lines[-1]) + 1 if lines else 1
        text, units, col = lines[pos.line], 0, 0
        codec = self.codec
        while col < len(text) and units < pos.character:
            units += codec.client_num_units(text[col])
            col += 1
        return pos.line + 1, col + 1

    def range(self, lines: list[str], span: Span) -> lsp.Range:
        """A span's range; a span with no end covers one character."""
        end_line, end_col = locate.end(span)
        if (end_line, end_col) <= (span.line, span.column):
            end_line, end_col = span.line, span.column + 1
        return lsp.Range(
            start=self.to_client(lines, span.line, span.column),
            end=self.to_client(lines, end_line, end_col),
        )

    def location(self, span: Span) -> lsp.Location:
        path = Path(span.file)
        text = self.open_texts().get(path.resolve())
        if text is None:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
        uri = from_fs_path(str(path)) or str(path)
        return lsp.Location(uri=uri, range=self.range(text.split("\n"), span))


def _path(uri: str) -> Path | None:
    path = to_fs_path(uri)
    return None if path is None or not uri.startswith("file:") else Path(path)


_SYMBOLS = {
    "network": lsp.SymbolKind.Class,
    "block": lsp.SymbolKind.Function,
    "train": lsp.SymbolKind.Object,
    "const": lsp.SymbolKind.Constant,
    "import": lsp.SymbolKind.File,
    "input": lsp.SymbolKind.Variable,
    "tensor": lsp.SymbolKind.Variable,
    "setting": lsp.SymbolKind.Property,
}


def _symbol(sym: symbols.Symbol, range_of: Callable[[Span], lsp.Range]) -> lsp.DocumentSymbol:
    return lsp.DocumentSymbol(
        name=sym.name,
        detail=sym.detail,
        kind=_SYMBOLS[sym.kind],
        range=range_of(sym.span),
        selection_range=range_of(sym.name_span),
        children=[_symbol(c, range_of) for c in sym.children] or None,
    )


# ---- the server ------------------------------------------------------------------------------


class _Protocol(LanguageServerProtocol):
    """pygls 2.1 keeps the future of every notification its built-in handlers run as
    generators (didOpen, didChange, didSave, ...) in `_request_futures` for good: about a
    kilobyte per keystroke. Drop each one once it is done."""

    def _check_handler_result(self, future: Future[Any]) -> None:
        super()._check_handler_result(future)
        for key, pending in list(self._request_futures.items()):
            if pending is future:
                del self._request_futures[key]


class _Features:
    """Registers handlers with pygls; the one named by NETSPEC_LSP_FAULT raises instead."""

    def __init__(self, server: LanguageServer, fault: str | None) -> None:
        self.server = server
        self.fault = fault

    def __call__(self, method: str, options: Any = None) -> Callable[[F], F]:
        def register(fn: F) -> F:
            def run(params: Any) -> Any:
                if self.fault == method:
                    raise RuntimeError(f"failure injected by {FAULT_ENV}={method}")
                return fn(params)

            self.server.feature(method, options)(run)
            return fn

        return register


def build_server() -> LanguageServer:
    """A server with every feature registered; `start_io()` runs it on stdin/stdout."""
    server = LanguageServer("netspec", __version__, protocol_cls=_Protocol)
    s = Session(server)
    feature = _Features(server, os.environ.get(FAULT_ENV))

    @feature(lsp.INITIALIZE)
    def initialize(params: lsp.InitializeParams) -> None:
        s.settings.update(params.initialization_options)

    @feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def configuration(params: lsp.DidChangeConfigurationParams) -> None:
        s.settings.update(params.settings)
        s.reanalyse_all()
        caps = server.client_capabilities.workspace
        if caps and caps.inlay_hint and caps.inlay_hint.refresh_support:
            server.workspace_inlay_hint_refresh(None)

    @feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: lsp.DidOpenTextDocumentParams) -> None:
        s.changed(params.text_document.uri, now=True)

    @feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: lsp.DidChangeTextDocumentParams) -> None:
        s.changed(params.text_document.uri, now=False)

    @feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: lsp.DidSaveTextDocumentParams) -> None:
        s.changed(params.text_document.uri, now=True)

    @feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: lsp.DidCloseTextDocumentParams) -> None:
        s.closed(params.text_document.uri)

    _register_queries(s, feature)
    return server


def _register_queries(s: Session, feature: _Features) -> None:
    def lines_of(uri: str) -> list[str]:
        return s.text_document(uri).source.split("\n")

    @feature(lsp.TEXT_DOCUMENT_HOVER)
    def on_hover(params: lsp.HoverParams) -> lsp.Hover | None:
        uri = params.text_document.uri
        at = s.from_client(lines_of(uri), params.position)
        text = hover.hover(s.state(uri), at)
        if text is None:
            return None
        return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text))

    @feature(lsp.TEXT_DOCUMENT_INLAY_HINT, lsp.InlayHintOptions(resolve_provider=False))
    def on_inlay_hints(params: lsp.InlayHintParams) -> list[lsp.InlayHint]:
        if not s.settings.inlay_hints:
            return []
        uri = params.text_document.uri
        lines = lines_of(uri)
        first, last = params.range.start.line + 1, params.range.end.line + 1
        hints = []
        for fact in statement_facts(s.state(uri)):
            line = fact.stmt.span.end_line or fact.stmt.span.line
            if not first <= line <= last or line > len(lines):
                continue
            column = len(lines[line - 1].rstrip()) + 1
            hints.append(
                lsp.InlayHint(
                    position=s.to_client(lines, line, column),
                    label=fact.label,
                    kind=lsp.InlayHintKind.Type,
                    padding_left=True,
                )
            )
        return hints

    @feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=TRIGGERS))
    def on_completion(params: lsp.CompletionParams) -> lsp.CompletionList:
        uri = params.text_document.uri
        text = s.text_document(uri).source
        line, column = s.from_client(text.split("\n"), params.position)
        s.state(uri)  # keeps the last analysis that parsed up to date
        items = complete.complete(s.good.get(uri), text, line, column)
        return lsp.CompletionList(
            is_incomplete=False,
            items=[
                lsp.CompletionItem(
                    label=item.label,
                    kind=_KINDS.get(item.kind),
                    detail=item.detail,
                    documentation=item.documentation,
                    insert_text=item.insert,
                    sort_text=f"{item.sort}{i:04d}",
                )
                for i, item in enumerate(items)
            ],
        )

    @feature(lsp.TEXT_DOCUMENT_DEFINITION)
    def on_definition(params: lsp.DefinitionParams) -> lsp.Location | None:
        uri = params.text_document.uri
        doc = s.state(uri)
        if doc.module is None:
            return None
        at = s.from_client(lines_of(uri), params.position)
        target = locate.definition(doc.module, *symbols.tables(doc), at)
        return None if target is None else s.location(target.span)

    @feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def on_symbols(params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
        uri = params.text_document.uri
        doc = s.state(uri)
        module = doc.module or (g.module if (g := s.good.get(uri)) is not None else None)
        if module is None:
            return []
        lines = lines_of(uri)

        def range_of(span: Span) -> lsp.Range:
            return s.range(lines, span)

        return [_symbol(sym, range_of) for sym in symbols.outline(module)]

    @feature(lsp.TEXT_DOCUMENT_FORMATTING)
    def on_formatting(params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit]:
        uri = params.text_document.uri
        td = s.text_document(uri)
        try:
            new = fmt.format_text(td.source, str(_path(uri) or td.filename))
        except NetspecError:
            return []  # the diagnostics already show why it does not parse
        return _edits(td.source, new, s)

    @feature(lsp.TEXT_DOCUMENT_FOLDING_RANGE)
    def on_folding(params: lsp.FoldingRangeParams) -> list[lsp.FoldingRange]:
        doc = s.state(params.text_document.uri)
        return [lsp.FoldingRange(start_line=a, end_line=b) for a, b in symbols.folds(doc.module)]


def _edits(old: str, new: str, s: Session) -> list[lsp.TextEdit]:
    """One edit replacing only what differs (the common head and tail stay untouched)."""
    if old == new:
        return []
    head = 0
    while head < min(len(old), len(new)) and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < min(len(old), len(new)) - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    lines = old.split("\n")

    def pos(offset: int) -> lsp.Position:
        before = old[:offset]
        line = before.count("\n") + 1
        return s.to_client(lines, line, offset - (before.rfind("\n") + 1) + 1)

    return [
        lsp.TextEdit(
            range=lsp.Range(start=pos(head), end=pos(len(old) - tail)),
            new_text=new[head : len(new) - tail],
        )
    ]


def serve() -> None:
    """Run the server on stdin/stdout until the client exits."""
    logging.basicConfig(level=logging.WARNING, format="netspec lsp: %(levelname)s: %(message)s")
    build_server().start_io()


__all__ = ["Session", "Settings", "build_server", "serve"]
