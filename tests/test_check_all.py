"""`netspec check` checks a whole file: every network, every block (issue 14, item 11), and
says what it checked. compile and train still build one network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netspec.cli import main
from netspec.errors import EXIT_SPEC

TWO_NETWORKS = """\
network First {
  input x: [8]
  dense(4, bogus=1)
}
network Second {
  input x: [8]
  dense(4)
}
"""

UNUSED_BLOCK = """\
block Helper(n: int = 4) {
  dense(n) frobnicate(2)
}
network Net {
  input x: [8]
  dense(4)
}
"""


def write(tmp_path: Path, text: str, name: str = "t.net") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_an_error_in_a_network_before_the_last_one_fails_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, TWO_NETWORKS)
    assert main(["check", path]) == EXIT_SPEC
    captured = capsys.readouterr()
    assert f"{path}:3:12: error: dense 'dense_1' has no attribute 'bogus'" in captured.err
    assert "network Second" in captured.out  # the good one's table is still printed
    assert "checked 2 networks (First, Second) and 0 blocks" in captured.out


def test_check_with_network_checks_that_network_only(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_NETWORKS)
    assert main(["check", path, "--network", "Second"]) == 0
    assert main(["check", path, "--network", "First"]) == EXIT_SPEC


def test_compile_still_builds_the_last_network_of_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compile", write(tmp_path, TWO_NETWORKS)]) == 0
    assert json.loads(capsys.readouterr().out)["network"]["name"] == "Second"


def test_a_block_no_network_uses_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, UNUSED_BLOCK)
    assert main(["check", path]) == EXIT_SPEC
    captured = capsys.readouterr()
    assert f"{path}:2:12: error: unknown op or block 'frobnicate'" in captured.err
    assert "checked 1 network (Net) and 1 block (Helper)" in captured.out
    assert "no network uses Helper: their ops and attributes were checked" in captured.out


def test_a_file_of_blocks_alone_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = "block Stem(c: int = 16) {\n  conv2d(c, 3, padding=same) relu\n}\n"
    assert main(["check", write(tmp_path, good)]) == 0
    assert "checked 0 networks and 1 block (Stem)" in capsys.readouterr().out
    bad = "block Stem(c: int = 16) {\n  conv2d(c, 3, padding=sam) relu\n}\n"
    assert main(["check", write(tmp_path, bad, "bad.net")]) == EXIT_SPEC
    assert "bad.net:2:16: error: conv2d 'Stem.conv2d_1': padding" in capsys.readouterr().err


def test_a_block_without_defaults_is_checked_as_far_as_its_values_are_known(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Attributes computed from `n` and `p` are not guessed at; the rest is checked.
    good = (
        "block Head(n: int, p: float) {\n"
        "  dense(n * 2) relu dropout(p)\n  conv2d(n, kernel=3, stride=[1, n])\n}\n"
    )
    assert main(["check", write(tmp_path, good)]) == 0
    out = capsys.readouterr().out
    assert "Head has no default for n, p" in out
    bad = (
        "block Head(n: int, p: float) {\n"
        "  dense(n, bogus=p) relu dropout(p)\n  conv2d(n, kernel=0)\n  Missing(n)\n}\n"
    )
    assert main(["check", write(tmp_path, bad, "bad.net")]) == EXIT_SPEC
    err = capsys.readouterr().err
    assert "bad.net:2:12: error: dense 'Head.dense_1' has no attribute 'bogus'" in err


def test_a_block_used_only_by_an_unused_block_is_checked_through_it_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "block Inner(n: int) {\n  dense(n, bogus=1)\n}\nblock Outer(n: int = 3) {\n  Inner(n)\n}\n"
    )
    assert main(["check", write(tmp_path, text)]) == EXIT_SPEC
    err = capsys.readouterr().err
    assert err.count("has no attribute 'bogus'") == 1
    assert "instantiated at" in err  # found in Outer's instance of Inner


def test_check_json_lists_every_network_and_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = TWO_NETWORKS.replace("bogus=1", "bias=false") + UNUSED_BLOCK.split("network")[0]
    assert main(["check", write(tmp_path, text), "--json"]) == EXIT_SPEC
    data = json.loads(capsys.readouterr().out)
    assert data["network"] == "Second"  # the default network's keys, as before
    assert sorted(data["networks"]) == ["First", "Second"]
    assert data["blocks"] == {"Helper": {"used": False}}
    assert data["valid"] is False
    assert "frobnicate" in json.dumps(data["diagnostics"])


def test_the_editor_reports_an_unused_blocks_errors_too(tmp_path: Path) -> None:
    from netspec.lsp.analysis import analyse_document

    path = Path(write(tmp_path, UNUSED_BLOCK))
    doc = analyse_document(path, UNUSED_BLOCK)
    assert [f.message for f in doc.findings] == ["unknown op or block 'frobnicate'"]
