"""What the server knows about the open documents, and where protocol positions meet netspec's.

Everything runs on pygls's event loop, one message at a time: a document's analysis is
cached by its version, so diagnostics (debounced after typing), inlay hints, hover and the
rest of one version share one analysis. Positions are converted here, once: netspec counts
1-based lines and code points; the protocol counts 0-based lines and UTF-16 units (or what
the client negotiated).
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.uris import from_fs_path, to_fs_path
from pygls.workspace import PositionCodec, TextDocument

from netspec.errors import SOURCES, Severity, Span
from netspec.lsp import locate
from netspec.lsp.analysis import Document, Finding, analyse_document


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
            path = path_of(uri)
            if path is not None:
                out[path.resolve()] = doc.source
        return out

    def state(self, uri: str) -> Document:
        """The analysis of the document's current text (computed at most once per version)."""
        td = self.text_document(uri)
        cached = self.states.get(uri)
        if cached is not None and cached.version == td.version and td.version is not None:
            return cached.doc
        path = path_of(uri) or Path.cwd() / (td.filename or "untitled.net")
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
        path = path_of(uri)
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
        path = path_of(uri)
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


def path_of(uri: str) -> Path | None:
    path = to_fs_path(uri)
    return None if path is None or not uri.startswith("file:") else Path(path)


class Protocol(LanguageServerProtocol):
    """pygls 2.1 keeps the future of every notification its built-in handlers run as
    generators (didOpen, didChange, didSave, ...) in `_request_futures` for good: about a
    kilobyte per keystroke. Drop each one once it is done."""

    def _check_handler_result(self, future: Future[Any]) -> None:
        super()._check_handler_result(future)
        for key, pending in list(self._request_futures.items()):
            if pending is future:
                del self._request_futures[key]
