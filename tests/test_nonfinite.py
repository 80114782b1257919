"""Non-finite numbers are refused where they are written (issue 14 item 24).

`1e309` overflows to infinity and IR JSON may hold `NaN`; both passed `check` before, and
`compile` then wrote them as `null`, which `check` refused in its own IR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netspec.cli import main
from netspec.errors import EXIT_SPEC

NET = """network N {
  input x: [4, 6, 6]
  %s
}
"""


@pytest.mark.parametrize(
    ("layer", "attribute"),
    [("elu(alpha=1e309)", "alpha"), ("lrn(alpha=-1e400)", "alpha"), ("dropout(1e999)", "p")],
)
def test_an_infinite_attribute_is_a_located_spec_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layer: str, attribute: str
) -> None:
    spec = tmp_path / "n.net"
    spec.write_text(NET % layer, encoding="utf-8")
    assert main(["check", str(spec)]) == EXIT_SPEC
    err = capsys.readouterr().err
    assert "n.net:3:" in err and f"{attribute} must be a finite number" in err


def test_an_infinite_learning_rate_is_refused_in_the_train_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "n.net"
    body = (
        'train N {\n  data = "d.npz"\n  loss = mse\n  optimizer = sgd(lr=1e400)\n  epochs = 1\n}\n'
    )
    spec.write_text(NET % "flatten dense(2)" + body, encoding="utf-8")
    assert main(["check", str(spec)]) == EXIT_SPEC
    assert "n.net:8:15: error: train: optimizer.lr must be a finite number" in (
        capsys.readouterr().err
    )


def test_nan_in_ir_json_is_refused_and_compile_never_writes_null(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, ir = tmp_path / "n.net", tmp_path / "n.json"
    spec.write_text(NET % "elu(alpha=2.0)", encoding="utf-8")
    assert main(["compile", str(spec), "-o", str(ir)]) == 0
    text = ir.read_text(encoding="utf-8")
    assert "null" not in text.split('"op"', 1)[1].split("}", 1)[0]
    ir.write_text(text.replace('"alpha": 2.0', '"alpha": NaN'), encoding="utf-8")
    assert json.loads(ir.read_text(encoding="utf-8"))  # Python's json reads NaN
    capsys.readouterr()
    assert main(["check", str(ir)]) == EXIT_SPEC
    assert "finite number" in capsys.readouterr().err
