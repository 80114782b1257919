"""An error the analysis finds in a layer of a block's body names the block instance it is in
(issue 14, item 13): the body line alone does not say which of several instances failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netspec import api
from netspec.errors import SOURCES, NetspecError
from netspec.ir import read_ir

TEXT = """\
block Unit(k: int) {
  conv2d(4, k)
}
block Pair(k: int) {
  Unit(k)
}
network Net {
  input x: [3, 8, 8]
  Unit(3)
  Pair(9)
}
"""


def hints(path: Path) -> list[str]:
    with pytest.raises(NetspecError) as info:
        api.check(api.load(path))
    return [d.hint or "" for d in info.value.diagnostics]


def test_a_shape_error_in_a_block_names_the_instances_it_is_in(tmp_path: Path) -> None:
    path = tmp_path / "t.net"
    path.write_text(TEXT, encoding="utf-8")
    (hint,) = hints(path)
    # The innermost instance (Unit(k) in Pair's body) first, then the call of Pair.
    assert hint.endswith(f"(instantiated at {path}:5:3, in {path}:10:3)")


def test_the_instances_survive_the_ir_json_and_old_ir_reads_without_them(tmp_path: Path) -> None:
    path = tmp_path / "t.net"
    path.write_text(TEXT.replace("Pair(9)", "Pair(2)"), encoding="utf-8")
    ir = json.loads(api.compile_json(api.check(api.load(path))))["network"]
    node = next(n for n in ir["nodes"] if n["name"] == "pair_1.unit_1.conv2d_1")
    assert [(s["line"], s["column"]) for s in node["instantiated_at"]] == [(10, 3), (5, 3)]
    node["op"]["kernel"] = [9, 9]
    (tmp_path / "bad.json").write_text(json.dumps(ir), encoding="utf-8")
    (hint,) = hints(tmp_path / "bad.json")
    assert hint.endswith(f"(instantiated at {path}:5:3, in {path}:10:3)")
    for n in ir["nodes"]:
        n.pop("instantiated_at", None)
    (tmp_path / "old.json").write_text(json.dumps(ir), encoding="utf-8")
    assert "instantiated at" not in hints(tmp_path / "old.json")[0]


def test_an_instance_span_in_ir_json_opens_no_file_outside_its_folder(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET_LINE\n", encoding="utf-8")
    (tmp_path / "ir").mkdir()
    path = tmp_path / "ir" / "t.net"
    path.write_text(TEXT.replace("Pair(9)", "Pair(2)"), encoding="utf-8")
    ir = json.loads(api.compile_json(api.check(api.load(path))))
    node = next(n for n in ir["network"]["nodes"] if n["instantiated_at"])
    node["instantiated_at"][0]["file"] = str(secret)
    (tmp_path / "ir" / "m.json").write_text(json.dumps(ir), encoding="utf-8")
    read_ir(tmp_path / "ir" / "m.json")
    assert SOURCES.line(str(secret), 1) is None
