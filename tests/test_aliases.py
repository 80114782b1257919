"""Habits from PyTorch, Keras and Caffe get netspec's spelling as the hint (issue 14 item 12),
not a spelling-distance guess: `out_channels` is nearer to `in_channels` than to `filters`."""

from __future__ import annotations

from pathlib import Path

import pytest

from netspec.aliases import ATTRIBUTES, OPS
from netspec.cli import main
from netspec.errors import EXIT_SPEC
from netspec.ops import OPS as NETSPEC_OPS

NET = "network N {\n  input x: [3, 8, 8]\n  %s\n}\n"
RECIPE = 'train N {\n  data = "d.npz"\n  loss = mse\n  %s\n  epochs = 1\n}\n'


def _check(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> str:
    spec = tmp_path / "n.net"
    spec.write_text(text, encoding="utf-8")
    assert main(["check", str(spec)]) == EXIT_SPEC
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("layer", "message", "hint"),
    [
        (
            "flatten dense(10, activation=relu)",
            "dense 'dense_1' has no attribute 'activation'",
            "activations and dropout are layers of their own: write `dense(...) relu`",
        ),
        (
            "conv2d(out_channels=8, kernel=3)",
            "conv2d 'conv2d_1' has no attribute 'out_channels'",
            "netspec calls it 'filters'",
        ),
        ("conv2d(8, kernel_size=3)", "has no attribute 'kernel_size'", "netspec calls it 'kernel'"),
        ("maxpool2d(pool_size=2)", "has no attribute 'pool_size'", "netspec calls it 'kernel'"),
        (
            "flatten dense(out_features=4)",
            "no attribute 'out_features'",
            "netspec calls it 'units'",
        ),
        ("flatten linear(10)", "unknown op or block 'linear'", "netspec calls it 'dense'"),
        ("flatten fc(10)", "unknown op or block 'fc'", "netspec calls it 'dense'"),
        ("Conv2d(8, 3)", "unknown op or block 'Conv2d'", "netspec calls it 'conv2d'"),
        ("MaxPooling2D(2)", "unknown op or block 'MaxPooling2D'", "netspec calls it 'maxpool2d'"),
        ("BatchNorm2d", "unknown op or block 'BatchNorm2d'", "netspec calls it 'batchnorm'"),
    ],
)
def test_foreign_names_get_netspec_s_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layer: str, message: str, hint: str
) -> None:
    err = _check(tmp_path, capsys, NET % layer)
    assert message in err and f"hint: {hint}" in err
    assert "needs '" not in err  # the missing attribute is explained by the foreign one
    assert "in_channels" not in err


def test_a_foreign_optimizer_setting_gets_its_netspec_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = NET % "flatten dense(2)" + RECIPE % "optimizer = adam(learning_rate=0.1, beta_1=0.8)"
    err = _check(tmp_path, capsys, text)
    assert "optimizer has no attribute 'learning_rate'" in err
    assert "hint: netspec calls it 'lr'" in err


def test_an_unknown_op_with_no_near_name_lists_the_ops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _check(tmp_path, capsys, NET % "xyzzy(2)")
    listed = err.split("hint: the ops are ", 1)[1].split("\n", 1)[0].split(", ")
    assert set(listed) == set(NETSPEC_OPS) - {"input"}


def test_the_tables_name_only_what_netspec_has() -> None:
    assert set(OPS.values()) <= set(NETSPEC_OPS)
    fields = {f for cls in NETSPEC_OPS.values() for f in cls.model_fields}
    recipe = {"lr", "beta1", "beta2", "weight_decay", "batch", "epochs", "rho"}
    missing = {t for targets in ATTRIBUTES.values() for t in targets} - fields - recipe
    assert missing <= {"groups"}, missing  # groups: conv's, and groupnorm's when it lands
