"""Training curves: written by `train` beside history.json, drawn by `plot` for several runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from netspec import api
from netspec.cli import main
from netspec.viz import curves

ROOT = Path(__file__).resolve().parent.parent.parent
DIGITS = ROOT / "examples" / "digits_cnn.net"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "digits"
    assert main(["train", str(DIGITS), "--epochs", "2", "--out", str(out)]) == 0
    return out


def test_training_writes_curves_with_one_panel_per_metric(digits_run: Path) -> None:
    history = json.loads((digits_run / "history.json").read_text(encoding="utf-8"))
    assert curves.metrics(history) == ["loss", "accuracy"]
    with Image.open(digits_run / curves.CURVES) as im:
        w, h = im.size
    assert w > 2 * h  # two panels side by side, one per metric
    run = curves.load_run(digits_run)
    with (digits_run / "again.png").open("wb") as f:
        assert curves.draw([run], f) == 2


def test_the_best_epoch_is_the_lowest_validation_loss() -> None:
    history = [
        {"epoch": 1, "loss": 0.9, "val_loss": 0.5},
        {"epoch": 2, "loss": 0.5, "val_loss": 0.3},
        {"epoch": 3, "loss": 0.2, "val_loss": 0.4},
    ]
    assert curves.best_epoch(curves.Run("r", history)) == ("loss", 2)
    assert curves.best_epoch(curves.Run("r", history, 3, "val_accuracy", True)) == ("accuracy", 3)


def test_plot_compares_runs_side_by_side_and_needs_an_output_for_several(
    digits_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "compare.svg"
    assert main(["plot", str(digits_run), str(digits_run), "-o", str(out)]) == 0
    svg = out.read_text(encoding="utf-8")
    assert svg.count("digits train") >= 2 and "accuracy" in svg  # a legend entry per run
    assert main(["plot", str(digits_run), str(digits_run)]) == 2
    assert "-o" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "nowhere")]) == 3


def test_a_plotting_error_never_fails_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(runs: list[curves.Run], path: Path) -> int:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(curves, "save", broken)
    analysis = api.check(api.load(DIGITS))
    with caplog.at_level(logging.WARNING, logger="netspec"):
        result = api.train(analysis, tmp_path / "run", epochs=1)
    assert len(result.history) == 1
    assert (tmp_path / "run" / "weights.npz").is_file()
    assert not (tmp_path / "run" / curves.CURVES).exists()
    assert "could not draw" in caplog.text and "no fonts" in caplog.text
