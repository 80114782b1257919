"""`netspec lsp` driven over stdio the way an editor drives it: one server for the module."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netspec.fmt import format_text
from tests.lsp.client import ROOT, Client, ResponseError

TWO_ERRORS = """network Two {
  input x: [3, 8, 8]
  a = x -> conv2d(4, kernel=9)
  b = x -> maxpool2d(16)
  add(a, b)
}
"""

BLOCKS = """block Basic(ch: int) {
  conv2d(ch, 3, padding=1) relu
  add(in)
}

network Net {
  input image: [3, 16, 16]
  conv = conv2d(16, 3, padding=1)
  layer = Basic(16) * 2
  flatten
  dense(10)
}
"""


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    env = {"NETSPEC_LSP_FAULT": "textDocument/foldingRange", "PATH": "/usr/bin:/bin"}
    c = Client(env=env)
    c.initialize({"debounceMs": 20})
    yield c
    c.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lsp")


class Doc:
    """An open document and the diagnostics of its latest version."""

    def __init__(self, client: Client, path: Path, text: str) -> None:
        self.client, self.uri, self.version = client, path.as_uri(), 1
        path.write_text(text, encoding="utf-8")
        params = {"uri": self.uri, "languageId": "netspec", "version": 1, "text": text}
        client.notify("textDocument/didOpen", {"textDocument": params})

    def diagnostics(self) -> list[dict[str, Any]]:
        got = self.client.wait_for(
            "textDocument/publishDiagnostics",
            lambda p: p["uri"] == self.uri and p.get("version") == self.version,
        )
        return got["diagnostics"]  # type: ignore[no-any-return]

    def change(self, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
        self.version += 1
        rng = {
            "start": {"line": start[0], "character": start[1]},
            "end": {"line": end[0], "character": end[1]},
        }
        self.client.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": self.uri, "version": self.version},
                "contentChanges": [{"range": rng, "text": text}],
            },
        )

    def at(self, line: int, character: int) -> dict[str, Any]:
        return {
            "textDocument": {"uri": self.uri},
            "position": {"line": line, "character": character},
        }

    def close(self) -> None:
        self.client.notify("textDocument/didClose", {"textDocument": {"uri": self.uri}})


def _range(d: dict[str, Any]) -> tuple[int, int, int, int]:
    r = d["range"]
    return r["start"]["line"], r["start"]["character"], r["end"]["line"], r["end"]["character"]


def test_two_errors_then_an_incremental_fix_leaves_one(client: Client, folder: Path) -> None:
    doc = Doc(client, folder / "two.net", TWO_ERRORS)
    first = doc.diagnostics()
    assert [_range(d) for d in first] == [(2, 11, 2, 30), (3, 11, 3, 24)]
    assert all(d["severity"] == 1 and d["source"] == "netspec" for d in first)
    assert "kernel 9 is larger" in first[0]["message"] and "\nhint: " in first[0]["message"]
    doc.change((2, 28), (2, 29), "3")  # kernel=9 -> kernel=3
    (left,) = doc.diagnostics()
    assert _range(left) == (3, 11, 3, 24) and "maxpool2d 'b'" in left["message"]
    doc.close()


def test_hover_on_a_conv_line_shows_its_shapes_and_parameters(client: Client, folder: Path) -> None:
    doc = Doc(client, folder / "hover.net", BLOCKS)
    doc.diagnostics()
    text = client.request("textDocument/hover", doc.at(7, 12))["contents"]["value"]
    assert "conv2d(filters, kernel" in text  # the signature
    assert "[3, 16, 16] → [16, 16, 16]" in text
    assert "parameters: 448" in text  # 16 * 3 * 3 * 3 + 16
    block = client.request("textDocument/hover", doc.at(8, 12))["contents"]["value"]
    assert "block Basic(ch: int)" in block and "`layer.0`" in block and "`layer.1`" in block
    assert "2 expansions: 4,640 parameters" in block  # 2 * (16 * 16 * 9 + 16)
    doc.close()


def test_an_inlay_hint_per_layer_equals_check_json(client: Client, folder: Path) -> None:
    spec = ROOT / "specs" / "lenet5.net"
    doc = Doc(client, folder / "lenet5.net", spec.read_text(encoding="utf-8"))
    doc.diagnostics()
    lines = spec.read_text(encoding="utf-8").count("\n")
    whole = {"start": {"line": 0, "character": 0}, "end": {"line": lines, "character": 0}}
    hints = client.request(
        "textDocument/inlayHint", {"textDocument": {"uri": doc.uri}, "range": whole}
    )
    out = subprocess.run(
        [sys.executable, "-m", "netspec", "check", "--json", str(spec)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    layers = [x for x in json.loads(out)["layers"] if x["op"] != "input"]  # one a line
    assert [h["label"] for h in sorted(hints, key=lambda h: h["position"]["line"])] == [
        "-> [" + ", ".join(map(str, x["output_shape"])) + "]" for x in layers
    ]
    source = spec.read_text(encoding="utf-8").split("\n")
    assert all(h["position"]["character"] == len(source[h["position"]["line"]]) for h in hints)
    doc.close()


def test_completion_inside_conv2d_offers_its_attributes(client: Client, folder: Path) -> None:
    doc = Doc(client, folder / "complete.net", BLOCKS)
    doc.diagnostics()
    doc.change((9, 2), (9, 2), "conv2d(8, ")
    got = client.request("textDocument/completion", doc.at(9, 12))
    labels = {item["label"]: item for item in got["items"]}
    assert {"kernel", "stride", "padding", "dilation", "groups", "bias", "init"} <= set(labels)
    assert "filters" not in labels  # the positional 8 gave it
    assert labels["padding"]["insertText"] == "padding="
    assert "same" in labels["padding"]["documentation"]
    assert labels["stride"]["detail"] == "stride: int ≥ 1 | list of int ≥ 1 = 1"
    doc.close()


def test_definition_of_a_block_call_jumps_to_the_block(client: Client, folder: Path) -> None:
    doc = Doc(client, folder / "definition.net", BLOCKS)
    doc.diagnostics()
    got = client.request("textDocument/definition", doc.at(8, 11))
    assert got["uri"] == doc.uri
    assert _range(got) == (0, 6, 0, 11)  # `Basic` in `block Basic(ch: int) {`
    doc.close()


def test_a_failing_handler_answers_an_error_and_the_server_goes_on(
    client: Client, folder: Path
) -> None:
    doc = Doc(client, folder / "fault.net", BLOCKS)
    doc.diagnostics()
    with pytest.raises(ResponseError) as err:
        client.request("textDocument/foldingRange", {"textDocument": {"uri": doc.uri}})
    assert "NETSPEC_LSP_FAULT" in str(err.value)
    assert client.request("textDocument/hover", doc.at(7, 12)) is not None
    doc.change((7, 21), (7, 22), "9")  # conv2d(16, 9, padding=1): 16 -> 10 breaks the add
    assert doc.diagnostics()
    doc.close()


@pytest.mark.parametrize(
    ("typed", "where"),
    [
        ("network X {\n  input x: [3, 8, 8]\n  conv2d(3, \n}\n", (3, 0)),
        ("network X {\n  input x: [3, 8, 8]\n  y = x ->\n}\n", (3, 0)),
        ("network X {\n  input x: [3, 8, 8]\n  y = conv2d(3, kernel=[1, \n", (2, 25)),
    ],
    ids=["unclosed paren", "dangling arrow", "unclosed at the end"],
)
def test_half_typed_files_get_diagnostics(
    client: Client, folder: Path, typed: str, where: tuple[int, int]
) -> None:
    doc = Doc(client, folder / "typing.net", typed)
    (d,) = doc.diagnostics()
    assert d["message"].startswith("syntax error") and _range(d)[:2] == where
    assert client.request("textDocument/hover", doc.at(1, 3)) is None
    assert client.request("textDocument/completion", doc.at(2, 2))["items"]
    doc.close()


def test_a_hint_from_the_source_text_follows_the_edits(client: Client, folder: Path) -> None:
    """The parser's hints read the source lines back; they must be the buffer's, not an
    earlier version's (netspec.errors keeps a process-wide cache of source lines)."""
    doc = Doc(client, folder / "stale.net", "network X {\n  input x: [3]\n  dense(3\n}\n")
    (d,) = doc.diagnostics()
    assert "line 3, column 8 is never closed" in d["message"]
    doc.change((2, 0), (2, 0), "  relu\n")
    (d,) = doc.diagnostics()
    assert "line 4, column 8 is never closed" in d["message"]
    doc.close()


def test_errors_of_an_imported_file_show_at_the_import(client: Client, folder: Path) -> None:
    lib = folder / "lib.net"
    lib.write_text("block Wide() {\n  dense(4)\n  relux\n}\n", encoding="utf-8")
    main = 'import "lib.net"\n\nnetwork M {\n  input x: [2]\n  Wide()\n}\n'
    doc = Doc(client, folder / "main.net", main)
    (d,) = doc.diagnostics()
    assert _range(d) == (0, 0, 0, 16)
    assert d["message"].startswith("lib.net:3:3: unknown op or block 'relux'")
    (where,) = d["relatedInformation"]
    assert where["location"]["uri"] == lib.as_uri() and _range(where["location"])[:2] == (2, 2)
    # The import opened and fixed in the editor, unsaved: the importing file follows it.
    opened = Doc(client, lib, lib.read_text(encoding="utf-8"))
    opened.diagnostics()
    opened.change((2, 2), (2, 7), "relu")
    assert doc.diagnostics() == []
    assert "relux" in lib.read_text(encoding="utf-8")  # nothing was written
    opened.close()
    doc.close()


def test_inlay_hints_can_be_turned_off(client: Client, folder: Path) -> None:
    doc = Doc(client, folder / "off.net", BLOCKS)
    doc.diagnostics()
    whole = {"start": {"line": 0, "character": 0}, "end": {"line": 20, "character": 0}}
    params = {"textDocument": {"uri": doc.uri}, "range": whole}
    hints = client.request("textDocument/inlayHint", params)
    assert any(h["label"].startswith("-> [16, 16, 16] · 2 blocks") for h in hints)
    client.notify(
        "workspace/didChangeConfiguration", {"settings": {"netspec": {"inlayHints": False}}}
    )
    assert client.request("textDocument/inlayHint", params) == []
    client.notify(
        "workspace/didChangeConfiguration", {"settings": {"netspec": {"inlayHints": True}}}
    )
    assert client.request("textDocument/inlayHint", params) == hints
    doc.close()


def test_formatting_edits_give_what_netspec_fmt_writes(client: Client, folder: Path) -> None:
    ugly = "network X {\ninput x:[2]\n  dense( 3 )relu   # r\n}\n"
    doc = Doc(client, folder / "ugly.net", ugly)
    doc.diagnostics()
    edits = client.request(
        "textDocument/formatting",
        {"textDocument": {"uri": doc.uri}, "options": {"tabSize": 2, "insertSpaces": True}},
    )
    lines = ugly.split("\n")
    (edit,) = edits
    (l0, c0, l1, c1) = _range(edit)
    head = "\n".join([*lines[:l0], lines[l0][:c0]])
    tail = "\n".join([lines[l1][c1:], *lines[l1 + 1 :]])
    assert head + edit["newText"] + tail == format_text(ugly)
    doc.close()


def test_document_symbols_outline_networks_blocks_and_train(client: Client, folder: Path) -> None:
    doc = Doc(client, folder / "symbols.net", BLOCKS + "\ntrain Net {\n  epochs = 2\n}\n")
    doc.diagnostics()
    got = client.request("textDocument/documentSymbol", {"textDocument": {"uri": doc.uri}})
    assert [(s["name"], s["kind"]) for s in got] == [("Basic", 12), ("Net", 5), ("train Net", 19)]
    assert [c["name"] for c in got[1]["children"]] == ["image", "conv", "layer"]
    doc.close()
