"""The server holds nothing per keystroke: pygls 2.1 kept every notification's future."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pygls.io_ import StdoutWriter

from netspec.lsp.server import build_server

ROOT = Path(__file__).resolve().parent.parent.parent


def test_a_thousand_edits_leave_no_bookkeeping_behind() -> None:
    server = build_server()
    protocol = server.protocol
    out = io.BytesIO()
    protocol.set_writer(StdoutWriter(out))

    def send(method: str, params: Any, msg_id: int | None = None) -> None:
        raw: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if msg_id is not None:
            raw["id"] = msg_id
        protocol.handle_message(protocol.structure_message(raw))

    init = {"processId": None, "rootUri": None, "capabilities": {}}
    send("initialize", {**init, "initializationOptions": {"debounceMs": 0}}, msg_id=1)
    send("initialized", {})
    uri = (ROOT / "specs" / "xor.net").as_uri()
    text = (ROOT / "specs" / "xor.net").read_text(encoding="utf-8")
    item = {"uri": uri, "languageId": "netspec", "version": 1, "text": text}
    send("textDocument/didOpen", {"textDocument": item})
    line = text.split("\n").index("  hidden = dense(2)")
    for version in range(2, 1002):
        change = {
            "range": {
                "start": {"line": line, "character": 17},
                "end": {"line": line, "character": 18},
            },
            "text": "23"[version % 2],
        }
        send(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]},
        )
    assert protocol._request_futures == {}
    assert out.getvalue().count(b'"method": "textDocument/publishDiagnostics"') == 1001
