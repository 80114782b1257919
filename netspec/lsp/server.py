"""The language server: pygls glue between the editor and the pure features.

Each protocol method is one small handler of (session, params), registered from one table
(HANDLERS). A handler that raises answers its request with an error and the server keeps
serving (pygls does that for every request); `NETSPEC_LSP_FAULT=<method>` makes a method fail
on purpose, for the tests that check it.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from netspec import __version__, fmt
from netspec.errors import NetspecError, Span
from netspec.lsp import complete, hover, locate, symbols
from netspec.lsp.facts import statement_facts
from netspec.lsp.session import Protocol, Session, path_of

FAULT_ENV = "NETSPEC_LSP_FAULT"
TRIGGERS = ["(", ",", "=", ">", "[", " ", '"']
COMPLETION_OPTIONS = lsp.CompletionOptions(trigger_characters=TRIGGERS)

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


# ---- document sync and settings --------------------------------------------------------------


def on_initialize(s: Session, params: lsp.InitializeParams) -> None:
    s.settings.update(params.initialization_options)


def on_configuration(s: Session, params: lsp.DidChangeConfigurationParams) -> None:
    s.settings.update(params.settings)
    s.reanalyse_all()
    caps = s.server.client_capabilities.workspace
    if caps and caps.inlay_hint and caps.inlay_hint.refresh_support:
        s.server.workspace_inlay_hint_refresh(None)


def on_open(s: Session, params: lsp.DidOpenTextDocumentParams) -> None:
    s.changed(params.text_document.uri, now=True)


def on_change(s: Session, params: lsp.DidChangeTextDocumentParams) -> None:
    s.changed(params.text_document.uri, now=False)


def on_save(s: Session, params: lsp.DidSaveTextDocumentParams) -> None:
    s.changed(params.text_document.uri, now=True)


def on_close(s: Session, params: lsp.DidCloseTextDocumentParams) -> None:
    s.closed(params.text_document.uri)


# ---- queries ---------------------------------------------------------------------------------


def _lines(s: Session, uri: str) -> list[str]:
    return s.text_document(uri).source.split("\n")


def on_hover(s: Session, params: lsp.HoverParams) -> lsp.Hover | None:
    uri = params.text_document.uri
    text = hover.hover(s.state(uri), s.from_client(_lines(s, uri), params.position))
    if text is None:
        return None
    return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text))


def on_inlay_hints(s: Session, params: lsp.InlayHintParams) -> list[lsp.InlayHint]:
    """Each statement's shapes at the end of its (last) line."""
    if not s.settings.inlay_hints:
        return []
    uri = params.text_document.uri
    lines = _lines(s, uri)
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


def on_completion(s: Session, params: lsp.CompletionParams) -> lsp.CompletionList:
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


def on_definition(s: Session, params: lsp.DefinitionParams) -> lsp.Location | None:
    uri = params.text_document.uri
    doc = s.state(uri)
    if doc.module is None:
        return None
    at = s.from_client(_lines(s, uri), params.position)
    target = locate.definition(doc.module, *symbols.tables(doc), at)
    return None if target is None else s.location(target.span)


def on_symbols(s: Session, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    uri = params.text_document.uri
    doc = s.state(uri)
    module = doc.module or (g.module if (g := s.good.get(uri)) is not None else None)
    if module is None:
        return []
    lines = _lines(s, uri)

    def range_of(span: Span) -> lsp.Range:
        return s.range(lines, span)

    return [_symbol(sym, range_of) for sym in symbols.outline(module)]


def on_formatting(s: Session, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit]:
    uri = params.text_document.uri
    td = s.text_document(uri)
    try:
        new = fmt.format_text(td.source, str(path_of(uri) or td.filename))
    except NetspecError:
        return []  # the diagnostics already show why it does not parse
    return _edits(td.source, new, s)


def on_folding(s: Session, params: lsp.FoldingRangeParams) -> list[lsp.FoldingRange]:
    doc = s.state(params.text_document.uri)
    return [lsp.FoldingRange(start_line=a, end_line=b) for a, b in symbols.folds(doc.module)]


HANDLERS: tuple[tuple[str, Any, Callable[[Session, Any], Any]], ...] = (
    (lsp.INITIALIZE, None, on_initialize),
    (lsp.WORKSPACE_DID_CHANGE_CONFIGURATION, None, on_configuration),
    (lsp.TEXT_DOCUMENT_DID_OPEN, None, on_open),
    (lsp.TEXT_DOCUMENT_DID_CHANGE, None, on_change),
    (lsp.TEXT_DOCUMENT_DID_SAVE, None, on_save),
    (lsp.TEXT_DOCUMENT_DID_CLOSE, None, on_close),
    (lsp.TEXT_DOCUMENT_HOVER, None, on_hover),
    (lsp.TEXT_DOCUMENT_INLAY_HINT, lsp.InlayHintOptions(resolve_provider=False), on_inlay_hints),
    (
        lsp.TEXT_DOCUMENT_COMPLETION,
        lsp.CompletionOptions(trigger_characters=TRIGGERS),
        on_completion,
    ),
    (lsp.TEXT_DOCUMENT_DEFINITION, None, on_definition),
    (lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL, None, on_symbols),
    (lsp.TEXT_DOCUMENT_FORMATTING, None, on_formatting),
    (lsp.TEXT_DOCUMENT_FOLDING_RANGE, None, on_folding),
)


def _failing(method: str) -> Callable[[Any], Any]:
    def fail(params: Any) -> Any:
        raise RuntimeError(f"failure injected by {FAULT_ENV}={method}")

    return fail


def build_server() -> LanguageServer:
    """A server with every handler registered; `start_io()` runs it on stdin/stdout."""
    server = LanguageServer("netspec", __version__, protocol_cls=Protocol)
    session = Session(server)
    fault = os.environ.get(FAULT_ENV)
    for method, options, handler in HANDLERS:
        run = _failing(method) if method == fault else functools.partial(handler, session)
        server.feature(method, options)(run)
    return server


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


__all__ = ["HANDLERS", "build_server", "serve"]
