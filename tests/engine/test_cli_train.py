"""`netspec train` and `netspec eval` as a user runs them: subprocesses, exit codes, files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.subprocess_cli import netspec

SPEC = """
network Tiny {
  input x: [4]
  dense(8) tanh
  dense(3)
}
train Tiny {
  data = "d.npz"
  loss = cross_entropy
  optimizer = adam(lr=0.02)
  epochs = 3
  batch = 16
  validation = 0.25
  metrics = [accuracy]
}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.argmax(x[:, :3], axis=1))
    (tmp_path / "tiny.net").write_text(SPEC, encoding="utf-8")
    return tmp_path


def test_train_then_eval_write_files_atomically_and_print_accuracy(project: Path) -> None:
    args = ("train", "tiny.net", "--out", "out", "--epochs", "2", "--curves", "always")
    run = netspec(*args, cwd=project)
    assert run.returncode == 0, run.stderr
    out = project / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.npz",
        "curves.png",
        "history.json",
        "weights.npz",
    ]  # and no temporary files left behind
    umask = os.umask(0)
    os.umask(umask)
    for p in out.iterdir():  # atomic writes still get the mode a plain open() gives
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p.name
    assert len(json.loads((out / "history.json").read_text(encoding="utf-8"))) == 2
    assert "epoch 2/2" in run.stderr and "val_accuracy" in run.stderr
    assert "out/weights.npz" in run.stdout.splitlines()

    ev = netspec("eval", "tiny.net", "--weights", out / "weights.npz", cwd=project)
    assert ev.returncode == 0, ev.stderr
    assert "accuracy" in ev.stdout and "confusion" in ev.stdout

    js = netspec("eval", "tiny.net", "--weights", out / "weights.npz", "--json", cwd=project)
    result = json.loads(js.stdout)
    assert result["samples"] == 16 and 0 <= result["accuracy"] <= 1
    assert np.array(result["confusion"]).sum() == 16


def test_by_default_curves_are_drawn_after_train_has_exited(project: Path) -> None:
    """`--curves auto` leaves the drawing to a detached process: train exits without waiting
    for matplotlib, and the picture still arrives, whole, under its final name."""
    run = netspec("train", "tiny.net", "--out", "out", "--epochs", "2", cwd=project)
    assert run.returncode == 0, run.stderr
    curves = project / "out" / "curves.png"
    deadline = time.monotonic() + 120  # a wait for the file, not a timing: a loaded machine
    while not curves.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert curves.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(curves) as im:
        im.verify()  # complete: plot wrote a temporary and renamed it
    assert not [p for p in (project / "out").iterdir() if p.name.endswith(".tmp")]


def test_train_resume_continues_to_the_new_epoch_count(project: Path) -> None:
    assert netspec("train", "tiny.net", "--out", "r", "--epochs", "1", cwd=project).returncode == 0
    again = netspec("train", "tiny.net", "--resume", "r", "--epochs", "3", cwd=project)
    assert again.returncode == 0, again.stderr
    history = json.loads((project / "r" / "history.json").read_text(encoding="utf-8"))
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert "epoch 1/3" not in again.stderr and "epoch 2/3" in again.stderr


def test_bad_data_path_exits_3_with_one_paragraph_and_no_traceback(project: Path) -> None:
    run = netspec("train", "tiny.net", "--data", "missing.npz", cwd=project)
    assert run.returncode == 3
    assert "missing.npz" in run.stderr and "does not exist" in run.stderr
    assert "Traceback" not in run.stderr and "\n\n" not in run.stderr.strip()


def test_eval_of_weights_from_another_network_names_the_tensor_and_shapes(
    project: Path, tmp_path: Path
) -> None:
    np.savez(
        project / "wrong.npz",
        **{
            "dense_1.weight": np.zeros((5, 4), np.float32),
            "dense_1.bias": np.zeros(5, np.float32),
            "dense_2.weight": np.zeros((3, 5), np.float32),
            "dense_2.bias": np.zeros(3, np.float32),
        },
    )
    run = netspec("eval", "tiny.net", "--weights", "wrong.npz", cwd=project)
    assert run.returncode == 3
    assert "dense_1.weight" in run.stderr and "[5, 4]" in run.stderr and "[8, 4]" in run.stderr


def test_eval_of_a_checkpoint_given_as_weights_says_which_file_to_pass(project: Path) -> None:
    assert (
        netspec("train", "tiny.net", "--out", "out", "--epochs", "1", cwd=project).returncode == 0
    )
    run = netspec("eval", "tiny.net", "--weights", "out/checkpoint.npz", cwd=project)
    assert run.returncode == 3, run.stderr
    assert "out/checkpoint.npz is a training checkpoint, not a weights file" in run.stderr
    assert "weights.npz beside it" in run.stderr and "Traceback" not in run.stderr


def test_train_without_a_train_section_is_a_spec_error(project: Path) -> None:
    (project / "bare.net").write_text("network B {\n input x: [4]\n dense(3)\n}\n", "utf-8")
    run = netspec("train", "bare.net", cwd=project)
    assert run.returncode == 1
    assert "no train section" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("k", [3, 4])
def test_a_top_k_that_covers_every_class_is_a_spec_error(project: Path, k: int) -> None:
    """top_k(k) on k or fewer classes always reads 1.0: say so before training, not after."""
    spec = SPEC.replace("metrics = [accuracy]", f"metrics = [accuracy, top_k(k={k})]")
    (project / "topk.net").write_text(spec, encoding="utf-8")
    run = netspec("train", "topk.net", "--out", "out", cwd=project)
    assert run.returncode == 1
    assert f"top_k(k={k}) on 3 classes is always 1" in run.stderr
    assert "k < 3" in run.stderr and "Traceback" not in run.stderr
    assert not list(project.glob("out/*"))  # refused before anything was trained

    ok = spec.replace(f"top_k(k={k})", "top_k(k=2)")
    (project / "topk.net").write_text(ok, encoding="utf-8")
    run = netspec("train", "topk.net", "--out", "out", "--epochs", "1", cwd=project)
    assert run.returncode == 0, run.stderr
    assert "top_2_accuracy" in run.stderr


def test_resume_accepts_the_checkpoint_file_and_continues_in_its_folder(project: Path) -> None:
    assert netspec("train", "tiny.net", "--out", "r", "--epochs", "1", cwd=project).returncode == 0
    again = netspec(
        "train", "tiny.net", "--resume", "r/checkpoint.npz", "--epochs", "2", cwd=project
    )
    assert again.returncode == 0, again.stderr
    history = json.loads((project / "r" / "history.json").read_text(encoding="utf-8"))
    assert [h["epoch"] for h in history] == [1, 2]
    assert (project / "r" / "checkpoint.npz").is_file()
    assert "r/weights.npz" in again.stdout.splitlines()


@pytest.mark.parametrize("out", [[], ["--out", "elsewhere"]])
def test_resume_of_a_missing_run_fails_without_creating_anything(
    project: Path, out: list[str]
) -> None:
    before = sorted(project.rglob("*"))
    run = netspec("train", "tiny.net", "--resume", "nowhere/run", *out, cwd=project)
    assert run.returncode == 3
    assert "no run to resume at nowhere/run: it does not exist" in run.stderr
    assert "--resume takes the folder of an earlier run" in run.stderr
    assert "Traceback" not in run.stderr
    assert sorted(project.rglob("*")) == before


def test_resume_of_a_folder_without_a_checkpoint_names_the_missing_file(project: Path) -> None:
    (project / "empty").mkdir()
    run = netspec("train", "tiny.net", "--resume", "empty", cwd=project)
    assert run.returncode == 3
    assert "empty holds no checkpoint.npz to resume from" in run.stderr
    assert "--resume takes the folder of an earlier run" in run.stderr
    assert list((project / "empty").iterdir()) == []


def test_train_and_eval_read_a_csv_given_with_data_for_a_recipe_of_npz_data(
    project: Path,
) -> None:
    with np.load(project / "d.npz") as z:
        table = np.column_stack([z["x"], z["y"]])
    header = "a,b,c,d,y"
    np.savetxt(project / "d.csv", table, delimiter=",", header=header, comments="")
    npz = SPEC.replace('data = "d.npz"', 'data = npz("d.npz", normalize="standard")')
    (project / "npz.net").write_text(npz, encoding="utf-8")
    run = netspec("train", "npz.net", "--data", "d.csv", "--out", "c", "--epochs", "1", cwd=project)
    assert run.returncode == 0, run.stderr
    assert (project / "c" / "normalization.npz").is_file()  # the recipe's option still applies
    ev = netspec("eval", "npz.net", "--weights", "c", "--data", "d.csv", "--json", cwd=project)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["samples"] == 64


def _interrupt_checkpoint_write(monkeypatch: pytest.MonkeyPatch, at_save: int) -> None:
    """Ctrl-C inside the `at_save`-th checkpoint write (1: the first), mid-file."""
    from netspec import runs

    real = runs.atomic_write
    saves = []

    def write(path: Path, fill: object) -> None:
        if path.name == runs.CHECKPOINT:
            saves.append(path)
            if len(saves) == at_save:

                def partial(f: object) -> None:
                    f.write(b"PK\x03\x04 half a checkpoint")  # type: ignore[attr-defined]
                    raise KeyboardInterrupt

                return real(path, partial)
        return real(path, fill)  # type: ignore[arg-type]

    monkeypatch.setattr(runs, "atomic_write", write)
    monkeypatch.setattr("netspec.training.loop.CHECKPOINT_INTERVAL_S", 0.0)  # every epoch


@pytest.mark.parametrize("at_save", [1, 2])
def test_ctrl_c_mid_checkpoint_says_what_was_really_saved(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    at_save: int,
) -> None:
    """Interrupted while its first checkpoint was being written, a run once said "--resume
    continues from the last epoch" and printed the path of a checkpoint that did not exist."""
    from netspec.cli import main

    monkeypatch.chdir(project)
    _interrupt_checkpoint_write(monkeypatch, at_save)
    assert main(["train", "tiny.net", "--out", "run"]) == 130
    captured = capsys.readouterr()
    assert (project / "run" / "weights.npz").is_file()
    assert not [p for p in (project / "run").iterdir() if p.name.endswith(".tmp")]
    if at_save == 1:
        assert "no checkpoint was written yet, so --resume cannot continue" in captured.err
        assert not (project / "run" / "checkpoint.npz").exists()
        assert "checkpoint.npz" not in captured.out
    else:
        assert "--resume continues from epoch 1, the last checkpoint" in captured.err
        assert "run/checkpoint.npz" in captured.out
        monkeypatch.undo()
        monkeypatch.chdir(project)
        assert main(["train", "tiny.net", "--resume", "run"]) == 0


def test_a_run_removes_the_temporaries_a_killed_run_left_and_nothing_else(project: Path) -> None:
    """SIGKILL mid-write leaves `.checkpoint.npz.*.tmp`; nothing removed them."""
    run = project / "run"
    run.mkdir()
    stale = [run / ".checkpoint.npz.k3j_x1.tmp", run / ".weights.npz.abc.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    kept = [run / ".mine.tmp", run / "notes.txt"]
    for path in kept:
        path.write_bytes(b"keep")
    proc = netspec("train", "tiny.net", "--out", "run", "--epochs", "1", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert not any(p.exists() for p in stale)
    assert all(p.read_bytes() == b"keep" for p in kept)
