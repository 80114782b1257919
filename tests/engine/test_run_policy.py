"""What api.train adds around the loop for every caller: the guards before a run, and the
cost of the work between steps (checkpoints, curves) bounded."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netspec import api
from netspec.cli import main
from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.ir import Analysis
from netspec.training import loop

SPEC = """network N {
  input x: [4]
  dense(8) relu
  dense(3)
}
train N {
  data = "d.npz"
  loss = cross_entropy
  optimizer = sgd(lr=0.1)
  batch = 8
  epochs = EPOCHS
}
"""


def _spec(tmp_path: Path, epochs: int = 3) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1))
    path = tmp_path / "n.net"
    path.write_text(SPEC.replace("EPOCHS", str(epochs)), encoding="utf-8")
    return path


def _analysis(path: Path) -> Analysis:
    return api.check(api.load(path))


def test_api_train_refuses_an_over_budget_run_exactly_as_the_cli_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _spec(tmp_path)
    with pytest.raises(NetspecError) as caught:
        api.train(_analysis(path), tmp_path / "lib", max_memory=1000)
    assert caught.value.exit_code == EXIT_RUNTIME
    (diag,) = caught.value.diagnostics
    assert "more than the limit of 1000 B" in diag.message
    code = main(["train", str(path), "--out", str(tmp_path / "cli"), "--max-memory", "1000"])
    err = capsys.readouterr().err
    assert code == EXIT_RUNTIME
    assert diag.message in err and str(diag.hint) in err
    assert not (tmp_path / "lib").exists() and not (tmp_path / "cli").exists()  # nothing made


def test_api_train_refuses_an_output_folder_it_cannot_write(tmp_path: Path) -> None:
    path = _spec(tmp_path)
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(NetspecError, match="not writable") as caught:
        api.train(_analysis(path), tmp_path / "file" / "run")
    assert caught.value.exit_code == EXIT_RUNTIME


def test_curves_are_redrawn_every_few_seconds_at_most_and_once_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netspec.viz import curves

    drawn: list[int] = []

    def after_epoch(out_dir: Path, history: list[dict[str, Any]], *rest: Any) -> None:
        drawn.append(len(history))

    monkeypatch.setattr(curves, "after_epoch", after_epoch)
    monkeypatch.setattr(loop, "CHECKPOINT_INTERVAL_S", 0.0)  # every epoch reaches the hook
    api.train(_analysis(_spec(tmp_path, epochs=30)), tmp_path / "run", curves="always")
    # Thirty epochs of a few milliseconds, far shorter than the interval: one drawing, at the end.
    assert drawn == [30]


def test_by_default_the_run_never_draws_and_one_detached_drawing_starts_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netspec.viz import curves

    in_run: list[int] = []
    started: list[tuple[Path, list[str]]] = []

    def spawn(out_dir: Path) -> Any:
        started.append((out_dir, sorted(p.name for p in out_dir.iterdir())))
        return _Done()

    monkeypatch.setattr(curves, "after_epoch", lambda out, history, *rest: in_run.append(1))
    monkeypatch.setattr(curves, "_spawn_plot", spawn)
    monkeypatch.setattr(loop, "CHECKPOINT_INTERVAL_S", 0.0)  # every epoch reaches the hook
    api.train(_analysis(_spec(tmp_path, epochs=30)), tmp_path / "run")
    assert in_run == []  # matplotlib never ran in the training process
    # Once, when the run's files were all written (the drawer reads history and checkpoint).
    assert started == [(tmp_path / "run", ["checkpoint.npz", "history.json", "weights.npz"])]


def test_never_draws_no_curves_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from netspec.viz import curves

    calls: list[Any] = []
    monkeypatch.setattr(curves, "after_epoch", lambda *args: calls.append(args))
    monkeypatch.setattr(curves, "_spawn_plot", lambda out_dir: calls.append(out_dir))
    code = main(
        ["train", str(_spec(tmp_path, 3)), "--out", str(tmp_path / "r"), "--curves", "never"]
    )
    assert code == 0 and calls == []


def test_the_final_drawing_stops_one_still_going_and_removes_its_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drawing started mid-run and still going at the end would replace the final picture
    with an older one if it finished last."""
    import subprocess
    import sys

    from netspec.viz import curves

    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stale = tmp_path / f".{curves.CURVES}.abc123.tmp"  # what its atomic write had begun
    stale.write_bytes(b"half a png")
    started: list[Any] = [slow]
    monkeypatch.setattr(curves, "_spawn_plot", lambda out_dir: started.pop(0))
    drawer = curves.Drawer()
    history = [{"epoch": 1, "loss": 0.5}]
    try:
        assert drawer(tmp_path, history, final=False)
        assert not drawer(tmp_path, history, final=False)  # one at a time
        started.append(_Done())
        assert drawer(tmp_path, history, final=True)
    finally:
        slow.kill()
        slow.wait()
    assert slow.returncode is not None and slow.returncode != 0  # stopped, not waited for
    assert not stale.exists() and started == []


class _Done:
    """A drawing process that has already finished."""

    returncode = 0

    def poll(self) -> int:
        return 0


def test_a_slow_drawing_spaces_the_next_so_that_drawing_stays_a_small_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netspec.viz import curves

    clock = _Clock()
    drawn: list[float] = []

    def after_epoch(*args: Any) -> None:
        drawn.append(clock.now)
        clock.now += 2.0  # a drawing of 2 s: at 5% the next waits 38 s, not the interval's 5

    monkeypatch.setattr(curves, "time", clock)
    monkeypatch.setattr(curves, "after_epoch", after_epoch)
    redraw = curves.Redraw(interval=5.0, share=0.05, first_cost=0.1)
    for _ in range(200):  # an epoch every 0.5 s for 100 s
        clock.now += 0.5
        redraw(tmp_path, [], None, False)
    redraw(tmp_path, [], None, True)
    gaps = [b - a for a, b in itertools.pairwise(drawn[:-1])]
    assert drawn[0] >= 5.0 and gaps and all(g >= 40.0 for g in gaps)
    assert len(drawn) <= 4  # the first at 5 s, then every 40 s, and the final one


def test_the_first_redraw_waits_for_a_run_long_enough_to_afford_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netspec.viz import curves

    clock = _Clock()
    drawn: list[float] = []
    monkeypatch.setattr(curves, "time", clock)
    monkeypatch.setattr(curves, "after_epoch", lambda *args: drawn.append(clock.now))
    redraw = curves.Redraw(interval=5.0, share=0.05, first_cost=1.0)
    for _ in range(40):  # 20 s of 0.5 s epochs: a first drawing guessed at 1 s waits 19 s
        clock.now += 0.5
        redraw(tmp_path, [], None, False)
    assert len(drawn) == 1 and drawn[0] >= 19.0


class _Clock:
    """perf_counter for the loop: a little time per call, and what a slow save costs."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 0.001
        return self.now


def test_the_checkpoint_throttle_counts_from_the_end_of_a_slow_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    saves: list[int] = []
    real_save = loop.runs.save_checkpoint

    def slow_save(path: Path, checkpoint: Any) -> None:
        saves.append(checkpoint.meta["epoch"])
        real_save(path, checkpoint)
        clock.now += 2.0  # longer than the interval: a save must not make every epoch save

    real_record = loop._epoch_record

    def epoch_of_0_4_s(*args: Any) -> Any:
        clock.now += 0.4
        return real_record(*args)

    monkeypatch.setattr(loop, "time", clock)
    monkeypatch.setattr(loop.runs, "save_checkpoint", slow_save)
    monkeypatch.setattr(loop, "_epoch_record", epoch_of_0_4_s)
    api.train(_analysis(_spec(tmp_path, epochs=10)), tmp_path / "run", curves=False)
    # From the run's start: the first save once a second has passed (epoch 3), then 99 times
    # the 2 s the save took after it ended, so the last epoch's; timed from before the save,
    # every epoch after the first would save.
    assert saves == [3, 10]


def test_a_fast_save_comes_a_second_after_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    saves: list[int] = []
    real_save = loop.runs.save_checkpoint

    def fast_save(path: Path, checkpoint: Any) -> None:
        saves.append(checkpoint.meta["epoch"])
        real_save(path, checkpoint)
        clock.now += 0.01  # 99 times this is under the interval: the interval rules

    real_record = loop._epoch_record

    def epoch_of_0_4_s(*args: Any) -> Any:
        clock.now += 0.4
        return real_record(*args)

    monkeypatch.setattr(loop, "time", clock)
    monkeypatch.setattr(loop.runs, "save_checkpoint", fast_save)
    monkeypatch.setattr(loop, "_epoch_record", epoch_of_0_4_s)
    api.train(_analysis(_spec(tmp_path, epochs=10)), tmp_path / "run", curves=False)
    assert saves == [3, 6, 9, 10]


def test_a_run_shorter_than_the_checkpoint_interval_saves_once_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves: list[int] = []
    real_save = loop.runs.save_checkpoint

    def counted(path: Path, checkpoint: Any) -> None:
        saves.append(checkpoint.meta["epoch"])
        real_save(path, checkpoint)

    monkeypatch.setattr(loop.runs, "save_checkpoint", counted)
    monkeypatch.setattr(loop, "CHECKPOINT_INTERVAL_S", 60.0)
    api.train(_analysis(_spec(tmp_path, epochs=10)), tmp_path / "run", curves=False)
    assert saves == [10]


def test_an_interval_of_zero_saves_every_epoch_however_slow_the_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    saves: list[int] = []
    real_save = loop.runs.save_checkpoint

    def slow_save(path: Path, checkpoint: Any) -> None:
        saves.append(checkpoint.meta["epoch"])
        real_save(path, checkpoint)
        clock.now += 2.0

    monkeypatch.setattr(loop, "time", clock)
    monkeypatch.setattr(loop.runs, "save_checkpoint", slow_save)
    monkeypatch.setattr(loop, "CHECKPOINT_INTERVAL_S", 0.0)  # what the resume tests ask for
    api.train(_analysis(_spec(tmp_path, epochs=5)), tmp_path / "run", curves=False)
    assert saves == [1, 2, 3, 4, 5]


def test_only_the_checkpoint_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An fsync costs 5-15 ms here, a short run's whole overhead budget: the checkpoint holds
    everything the other files do (weights, best weights, history), so only it is made durable."""
    import os

    from netspec import files

    synced: list[str] = []
    real_fsync = files.os.fsync

    def fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name.split(".")[1])
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    spec = _spec(tmp_path, epochs=4).read_text(encoding="utf-8")
    path = tmp_path / "norm.net"
    path.write_text(spec.replace('data = "d.npz"', 'data = npz("d.npz", normalize="standard")'))
    api.train(_analysis(path), tmp_path / "run", curves="never")
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["checkpoint.npz", "history.json", "normalization.npz", "weights.npz"]
    assert synced == ["checkpoint"]  # the run is shorter than the checkpoint interval
