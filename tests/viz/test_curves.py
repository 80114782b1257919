"""Training curves: written by `train` beside history.json, drawn by `plot` for several runs."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from netspec import api
from netspec import runs as ckpt
from netspec.cli import main
from netspec.errors import NetspecError
from netspec.viz import curves

ROOT = Path(__file__).resolve().parent.parent.parent
DIGITS = ROOT / "examples" / "digits_cnn.net"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "digits"
    assert main(["train", str(DIGITS), "--epochs", "2", "--out", str(out)]) == 0
    curves.wait_drawn(120)  # --curves auto: drawn by `netspec plot` in a detached process
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
    assert curves.best_epoch(curves.Run("r", history)) == 2
    assert curves.best_epoch(curves.Run("r", history, 3, "val_accuracy", True)) == 3


def test_a_nan_or_infinite_loss_is_never_the_best_epoch() -> None:
    nan, inf = float("nan"), float("inf")
    history = [
        {"epoch": 1, "loss": 0.9, "val_loss": nan},
        {"epoch": 2, "loss": 0.5, "val_loss": 0.3},
        {"epoch": 3, "loss": 0.2, "val_loss": -inf},
        {"epoch": 4, "loss": 0.1, "val_loss": 0.4},
    ]
    assert curves.best_epoch(curves.Run("r", history)) == 2
    unscored = [
        {"epoch": 1, "loss": 0.9, "val_loss": nan},
        {"epoch": 2, "loss": 0.5, "val_loss": nan},
    ]
    assert curves.best_epoch(curves.Run("r", unscored)) is None


def _svg(runs: list[curves.Run], tmp_path: Path) -> str:
    out = tmp_path / "curves.svg"
    curves.save(runs, out)
    return out.read_text(encoding="utf-8")


def _texts(svg: str) -> set[str]:
    """The text matplotlib draws as paths, named by the comment before each."""
    return set(re.findall(r"<!-- (.*?) -->", svg))


def test_without_a_finite_loss_no_epoch_is_marked_best(tmp_path: Path) -> None:
    nan = float("nan")
    history = [
        {"epoch": 1, "loss": 0.9, "val_loss": nan},
        {"epoch": 2, "loss": 0.5, "val_loss": nan},
    ]
    texts = _texts(_svg([curves.Run("r", history)], tmp_path))
    assert {"train", "val"} <= texts
    assert not any(t.startswith("best") for t in texts)


def test_one_epoch_is_ticked_as_a_whole_epoch(tmp_path: Path) -> None:
    texts = _texts(_svg([curves.Run("r", [{"epoch": 1, "loss": 0.5, "val_loss": 0.4}])], tmp_path))
    ticks = {t for t in texts if re.fullmatch(r"[0-9.]+", t)}
    epoch_ticks = ticks - {"0.40", "0.42", "0.44", "0.46", "0.48", "0.50"}  # the loss axis
    assert epoch_ticks == {"1"}
    assert "best (epoch 1)" in texts


def test_an_epoch_that_is_not_a_whole_number_is_refused(tmp_path: Path) -> None:
    (tmp_path / "history.json").write_text('[{"epoch": true, "loss": 0.5}]', encoding="utf-8")
    with pytest.raises(NetspecError, match="no epochs with numbers"):
        curves.load_run(tmp_path)


def _write_run(folder: Path, history: list[dict[str, Any]], early_stopping: Any = None) -> Path:
    """A run folder as `train` leaves it: history.json and a checkpoint whose meta holds them."""
    folder.mkdir(parents=True)
    (folder / "history.json").write_text(json.dumps(history), encoding="utf-8")
    meta = {
        "run": {"seed": 0, "validation": 0.2, "optimizer": "sgd"},
        "epoch": len(history),
        "step": len(history),
        "rng": np.random.default_rng(0).bit_generator.state,
        "history": history,
        "early_stopping": early_stopping,
    }
    ckpt.save_checkpoint(
        folder / ckpt.CHECKPOINT,
        ckpt.Checkpoint({"w": np.zeros(2)}, {"step": np.array(1)}, meta),
    )
    return folder


_FALLING_VAL_LOSS = [
    {"epoch": 1, "loss": 0.5, "val_loss": 0.1, "val_accuracy": 0.9},
    {"epoch": 2, "loss": 0.4, "val_loss": 0.2, "val_accuracy": 0.95},
    {"epoch": 3, "loss": 0.45, "val_loss": 0.3, "val_accuracy": 0.93},
    {"epoch": 4, "loss": 0.46, "val_loss": 0.4, "val_accuracy": 0.92},
]


def test_plot_marks_early_stoppings_best_and_stop_from_the_checkpoint(tmp_path: Path) -> None:
    es = {"best": 0.95, "best_epoch": 2, "wait": 2, "monitor": "val_accuracy", "patience": 1}
    folder = _write_run(tmp_path / "M", _FALLING_VAL_LOSS, es)
    run = curves.load_run(folder)
    assert (run.best_epoch, run.monitor, run.stopped) == (2, "val_accuracy", True)
    assert main(["plot", str(folder), "-o", str(tmp_path / "again.svg")]) == 0
    texts = _texts((tmp_path / "again.svg").read_text(encoding="utf-8"))
    assert "best (epoch 2)" in texts and "early stop" in texts
    assert "best (epoch 1)" not in texts  # the lowest val_loss, which early stopping did not watch


def test_early_stopping_that_has_not_run_out_of_patience_draws_no_stop(tmp_path: Path) -> None:
    es = {"best": 0.4, "best_epoch": 2, "wait": 2, "monitor": "loss", "patience": 3}
    run = curves.load_run(_write_run(tmp_path / "M", _FALLING_VAL_LOSS, es))
    assert (run.best_epoch, run.monitor, run.stopped) == (2, "loss", False)


def test_a_checkpoint_without_early_stopping_leaves_the_lowest_validation_loss(
    tmp_path: Path,
) -> None:
    run = curves.load_run(_write_run(tmp_path / "M", _FALLING_VAL_LOSS))
    assert (run.best_epoch, run.monitor, run.stopped) == (None, None, False)
    assert curves.best_epoch(run) == 1


@pytest.mark.parametrize(
    "record",
    [{"best": 1.0, "best_epoch": "2", "wait": 0}, {"best": 1.0, "best_epoch": 2}, [2, 0]],
)
def test_a_malformed_early_stopping_record_is_named(tmp_path: Path, record: Any) -> None:
    folder = _write_run(tmp_path / "M", _FALLING_VAL_LOSS, record)
    assert main(["plot", str(folder)]) == 3
    assert not (folder / curves.CURVES).exists()


def test_a_broken_checkpoint_is_named_with_a_way_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _write_run(tmp_path / "M", _FALLING_VAL_LOSS)
    (folder / ckpt.CHECKPOINT).write_bytes(b"not a zip")
    assert main(["plot", str(folder)]) == 3
    err = capsys.readouterr().err
    assert "cannot read early stopping's best epoch" in err and "move the broken" in err


def test_plot_redraws_what_train_drew_for_early_stopping_on_the_training_loss(
    tmp_path: Path,
) -> None:
    # sgd(lr=0.5) overfits: the training loss falls to the last epoch, the validation loss
    # bottoms out early, so the two rules for "best" disagree.
    analysis = api.check(api.load(_early_stopping_spec(tmp_path, "loss")))
    result = api.train(analysis, tmp_path / "M")
    run = curves.load_run(tmp_path / "M")
    assert run.best_epoch == result.best_epoch == 30
    assert curves.best_epoch(curves.Run("M", result.history)) != 30


def test_plot_redraws_the_stop_of_a_trained_run(tmp_path: Path) -> None:
    analysis = api.check(api.load(_early_stopping_spec(tmp_path, "val_accuracy")))
    result = api.train(analysis, tmp_path / "M")
    assert result.stopped == "early_stopping"
    run = curves.load_run(tmp_path / "M")
    assert (run.best_epoch, run.monitor, run.stopped) == (result.best_epoch, "val_accuracy", True)


def _early_stopping_spec(tmp_path: Path, monitor: str) -> Path:
    spec = tmp_path / "es.net"
    data = (ROOT / "examples" / "data" / "digits.npz").as_posix()
    spec.write_text(
        f"""network M {{
  input image: [64]
  dense(64) relu
  dense(10)
}}
train M {{
  data = npz("{data}", normalize="standard")
  loss = cross_entropy
  optimizer = sgd(lr=0.5)
  batch = 32
  epochs = 30
  validation = 0.2
  metrics = [accuracy]
  seed = 0
  early_stopping = early_stopping(monitor="{monitor}", patience=1)
}}
""",
        encoding="utf-8",
    )
    return spec


def test_runs_of_the_same_name_are_labelled_by_the_path_that_tells_them_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.4}]
    for folder in ("h/a/M", "h/b/M", "h/c/N"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "history.json").write_text(json.dumps(history), encoding="utf-8")
    monkeypatch.chdir(tmp_path / "h" / "a" / "M")
    paths = [Path("."), Path("../../b/M/history.json"), Path("../../c/N"), Path(".")]
    assert [r.label for r in curves.load_runs(paths)] == ["a/M", "b/M", "N", "a/M"]
    assert main(["plot", *map(str, paths[:2]), "-o", str(tmp_path / "cmp.svg")]) == 0
    texts = _texts((tmp_path / "cmp.svg").read_text(encoding="utf-8"))
    assert {"a/M train", "b/M train", "a/M best (epoch 2)", "b/M best (epoch 2)"} <= texts


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
        result = api.train(analysis, tmp_path / "run", epochs=1, curves="always")
    assert len(result.history) == 1
    assert (tmp_path / "run" / "weights.npz").is_file()
    assert not (tmp_path / "run" / curves.CURVES).exists()
    assert "could not draw" in caplog.text and "no fonts" in caplog.text


def test_the_detached_drawing_says_how_it_went_in_curves_log(digits_run: Path) -> None:
    """--curves auto's drawer writes curves.log beside curves.png: its line when it drew."""
    log = (digits_run / curves.CURVES_LOG).read_text(encoding="utf-8")
    assert f"wrote {digits_run.resolve() / curves.CURVES}" in log


def test_a_failed_detached_drawing_is_diagnosable_from_curves_log(tmp_path: Path) -> None:
    """Its errors went to /dev/null: a missing curves.png said nothing of why."""
    (tmp_path / ckpt.HISTORY).write_text('[{"epoch": 1, "loss": ', encoding="utf-8")
    (tmp_path / curves.CURVES_LOG).write_text("an older drawing's line\n", encoding="utf-8")
    assert curves.Drawer()(tmp_path, [{"epoch": 1, "loss": 0.5}], final=True)
    curves.wait_drawn(120)
    log = (tmp_path / curves.CURVES_LOG).read_text(encoding="utf-8")
    assert "cannot read the training history" in log and "older" not in log
    assert not (tmp_path / curves.CURVES).exists()
