"""`netspec fmt`: one layout, comments kept, idempotent, and never a change of meaning."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netspec import syntax
from netspec.cli import main
from netspec.errors import NetspecError
from netspec.fmt import format_text
from tests.fuzzing import SPECS, mutate

ROOT = Path(__file__).resolve().parent.parent
KEPT_FORMATTED = sorted([*SPECS, *(ROOT / "examples").glob("*.net")])


@pytest.mark.parametrize("path", KEPT_FORMATTED, ids=[p.name for p in KEPT_FORMATTED])
def test_every_spec_and_example_in_the_repository_is_formatted(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert format_text(text, str(path)) == text, f"run `netspec fmt {path.relative_to(ROOT)}`"


CASES = {
    "spacing": (
        "const  N=3\nconst M = -N*2+(1 - 2)//3\n"
        "network X { input x:[3, 8,8]\n  y=conv2d( N,3 , padding = same )relu\n"
        "  z = y ->dense( -1 ) * ( N-1)\n  add( y , z )\n}\n",
        "const N = 3\nconst M = -N * 2 + (1 - 2) // 3\n\n"
        "network X {\n  input x: [3, 8, 8]\n  y = conv2d(N, 3, padding=same) relu\n"
        "  z = y -> dense(-1) * (N - 1)\n  add(y, z)\n}\n",
    ),
    "typed block parameters keep spaces around their default": (
        "block B(ch:int,k=2,s: int=1,) {\n  conv2d(ch, k, stride=s)\n}\n",
        "block B(ch: int, k=2, s: int = 1,) {\n  conv2d(ch, k, stride=s)\n}\n",
    ),
    "token inputs and chain groups": (
        "network T {\n  input t: int64 [10]\n  embedding(5, 4) [relu,tanh]\n}\n",
        "network T {\n  input t: int64[10]\n  embedding(5, 4) [relu, tanh]\n}\n",
    ),
    "wrapped arguments indent one level under the line that opened them": (
        "network W {\n  input x: [3, 8, 8]\n  w = [conv2d(3,\n     kernel=[1, 2]) relu,\n"
        "       relu]\n  pad([1, 1,\n        0, 0],\n value=0)\n}\n",
        "network W {\n  input x: [3, 8, 8]\n  w = [conv2d(3,\n    kernel=[1, 2]) relu,\n"
        "    relu]\n  pad([1, 1,\n    0, 0],\n    value=0)\n}\n",
    ),
    "a chain continued after its arrow": (
        "network A {\n  input x: [4]\n  y = x ->\n  dense(2)\n}\n",
        "network A {\n  input x: [4]\n  y = x ->\n    dense(2)\n}\n",
    ),
    "braces open and close lines, one blank line between definitions": (
        "network X { input x: [1]\n  output x }\ntrain X {\n\n\n  epochs=2\n\n}\n\n\n\n",
        "network X {\n  input x: [1]\n  output x\n}\n\ntrain X {\n  epochs = 2\n}\n",
    ),
    "comments stay, trailing ones aligned by runs of one indentation": (
        "# head\n\n\n# about X\nnetwork X {   # opens\n  input x: [2]  # in\n"
        "  dense(3)    # a\n  # alone\n  relu # b\n\n  dense(1)  # c\n}\n",
        "# head\n\n# about X\nnetwork X {  # opens\n  input x: [2]  # in\n"
        "  dense(3)      # a\n  # alone\n  relu  # b\n\n  dense(1)  # c\n}\n",
    ),
    "a blank line goes above the comments that belong to a definition": (
        "const K = 1\n# the block\nblock B() {\n  relu\n}\n",
        "const K = 1\n\n# the block\nblock B() {\n  relu\n}\n",
    ),
    "windows line ends, a byte-order mark and tabs": (
        "\ufeffnetwork X {\r\n\tinput x: [2]\r\n\tdense(1)\t# t\r\n}\r\n",
        "network X {\n  input x: [2]\n  dense(1)  # t\n}\n",
    ),
}


@pytest.mark.parametrize(("source", "expected"), CASES.values(), ids=CASES.keys())
def test_the_canonical_layout(source: str, expected: str) -> None:
    assert format_text(source) == expected
    assert format_text(expected) == expected  # idempotent


@pytest.mark.parametrize("name", ["googlenet", "resnet152", "text_bilstm"])
def test_any_spacing_between_tokens_formats_to_the_same_text(name: str) -> None:
    source = (ROOT / "specs" / f"{name}.net").read_text(encoding="utf-8")
    rng = random.Random(name)
    pieces = []
    for lx in syntax.lex(source):
        if lx.kind == "NEWLINE":
            pieces.append(rng.choice(["\n", "  \n", "\t\n"]))
        elif lx.kind == "COMMENT":
            pieces.append(rng.choice([" ", "\t", "     "]) + lx.text)
        else:
            pieces.append(lx.text + rng.choice([" ", "\t", "   "]))
    scrambled = "".join(pieces)
    assert scrambled != source
    assert format_text(scrambled) == source  # comments included, word for word


def test_a_file_that_does_not_parse_is_refused_with_the_located_error() -> None:
    with pytest.raises(NetspecError) as err:
        format_text("network X {\n  dense(3\n}\n", "bad.net")
    (d,) = err.value.diagnostics
    assert d.span is not None and (d.span.file, d.span.line, d.span.column) == ("bad.net", 3, 1)
    assert d.hint is not None and "line 2, column 8" in d.hint


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(min_value=0), seed=st.integers(min_value=0))
def test_mutated_specs_format_to_the_same_program_and_stay_formatted(index: int, seed: int) -> None:
    """format_text itself checks that the result parses to the same AST; here that holds for
    whatever the fuzzer's mutations make of the specs, and a second pass changes nothing."""
    rng = random.Random(seed)
    data = mutate(SPECS[index % len(SPECS)].read_bytes(), rng)
    try:
        text = data.decode("utf-8")
        syntax.parse(text, "m.net")
    except (UnicodeDecodeError, NetspecError):
        return
    out = format_text(text, "m.net")
    assert format_text(out, "m.net") == out


# ---- the command ----------------------------------------------------------------------------


def test_fmt_check_lists_the_files_that_would_change_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ugly, tidy = tmp_path / "ugly.net", tmp_path / "tidy.net"
    ugly.write_text("network X {\ninput x:[2]\n}\n")
    tidy.write_text("network X {\n  input x: [2]\n}\n")
    assert main(["fmt", "--check", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == [f"would reformat {ugly}"]
    assert ugly.read_text() == "network X {\ninput x:[2]\n}\n"
    assert main(["fmt", "--check", str(tidy)]) == 0


def test_fmt_rewrites_files_in_place_and_leaves_one_that_does_not_parse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ugly, bad = tmp_path / "ugly.net", tmp_path / "bad.net"
    ugly.write_text("network X {\ninput x:[2]\n}\n")
    bad.write_text("network X {\n  dense(3\n}\n")
    ugly.chmod(0o640)
    assert main(["fmt", str(ugly), str(bad)]) == 1
    assert ugly.read_text() == "network X {\n  input x: [2]\n}\n"
    assert bad.read_text() == "network X {\n  dense(3\n}\n"
    err = capsys.readouterr().err
    assert f"{bad}:3:1: error: syntax error" in err and f"{bad}: not formatted" in err
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed
    assert main(["fmt", str(ugly)]) == 0


def test_fmt_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["fmt", str(tmp_path / "nope.net")]) == 2
