"""`check` reports every independent error of a spec, not the first one (issue 14, item 10):
each statement and call is checked whatever became of those before it, and what only follows
from an earlier error (a tensor a failed statement would have made) is not reported again."""

from __future__ import annotations

from pathlib import Path

import pytest

from netspec import api
from netspec.cli import main
from netspec.cli.report import MAX_SHOWN
from netspec.errors import EXIT_SPEC, NetspecError

THREE = """\
network Net {
  input x: [1, 28, 28]
  conv2d(8, 3) frobnicate
  flatten
  dense(10, activaton=2)
  relu
  y = undefined_thing -> dense(4)
}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.net"
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(NetspecError) as info:
        api.load(path)
    return [f"{d.span.line}: {d.message}" if d.span else d.message for d in info.value.diagnostics]


def test_three_mistakes_on_three_lines_are_three_located_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, THREE)
    assert main(["check", str(path)]) == EXIT_SPEC
    err = capsys.readouterr().err
    located = [line for line in err.splitlines() if line.startswith(f"{path}:")]
    assert [line.split(":")[1] for line in located] == ["3", "5", "7"]
    assert err.endswith("3 error(s), 0 warning(s)\n")


def test_the_library_raises_one_error_carrying_every_diagnostic(tmp_path: Path) -> None:
    assert errors_of(write(tmp_path, THREE)) == [
        "3: unknown op or block 'frobnicate'",
        "5: dense 'dense_1' has no attribute 'activaton'",
        "7: unknown tensor 'undefined_thing'",
    ]


def test_what_follows_from_a_failed_input_is_not_reported(tmp_path: Path) -> None:
    text = "network N {\n  input x: [T, 8]\n  dense(4) relu\n  y = x -> dense(2)\n}\n"
    assert errors_of(write(tmp_path, text)) == ["2: input shape: unknown name 'T'"]


def test_what_follows_from_a_failed_statement_is_not_reported(tmp_path: Path) -> None:
    text = (
        "network N {\n  input x: [8]\n  y = nope -> dense(4)\n  z = y -> relu\n"
        "  w = add(y, z)\n  dense(2, bogus=1)\n}\n"
    )
    assert errors_of(write(tmp_path, text)) == [
        "3: unknown tensor 'nope'",
        "6: dense 'dense_1' has no attribute 'bogus'",
    ]


def test_a_repeated_mistake_is_reported_once(tmp_path: Path) -> None:
    text = (
        "block Bad(n: int = 2) {\n  dense(n, bogus=1)\n}\n"
        "network N {\n  input x: [8]\n  frobnicate * 1000\n  Bad * 3000\n}\n"
    )
    errors = errors_of(write(tmp_path, text))
    assert [e.split(": ")[0] for e in errors] == ["6", "2"]


def test_an_error_in_a_block_is_reported_per_instance_line(tmp_path: Path) -> None:
    text = (
        "block Bad(n: int = 2) {\n  dense(n, bogus=1)\n}\n"
        "network N {\n  input x: [8]\n  Bad(3)\n  Bad(4)\n}\n"
    )
    with pytest.raises(NetspecError) as info:
        api.load(write(tmp_path, text))
    hints = [d.hint or "" for d in info.value.diagnostics]
    assert [h.split(":")[-2] for h in hints] == ["6", "7"]


def test_the_layer_limit_stops_expansion_with_one_error(tmp_path: Path) -> None:
    text = (
        "block B(n: int = 3) {\n  dense(n) relu\n}\n"
        "network N {\n  input x: [8]\n  B * 150000\n  relu\n}\n"
    )
    errors = errors_of(write(tmp_path, text))
    assert len(errors) == 1 and "200,000 layers" in errors[0]


def test_past_the_cap_the_rest_are_counted_not_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = "".join(f"  dense(4, bogus{i}=1)\n" for i in range(MAX_SHOWN + 5))
    path = write(tmp_path, "network N {\n  input x: [8]\n" + body + "}\n")
    assert main(["check", str(path)]) == EXIT_SPEC
    err = capsys.readouterr().err
    assert err.count(": error: ") == MAX_SHOWN
    assert err.endswith(
        f"... and 5 more error(s), not shown\n{MAX_SHOWN + 5} error(s), 0 warning(s)\n"
    )


def test_the_editor_shows_every_independent_error(tmp_path: Path) -> None:
    from netspec.lsp.analysis import analyse_document

    doc = analyse_document(write(tmp_path, THREE), THREE)
    assert [f.span.line for f in doc.findings] == [3, 5, 7]
