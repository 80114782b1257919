"""The BLAS thread count: the rule that picks it, the limit a run holds, `--threads`, and the
progress line that shows it. (Whether one thread is faster is the machine's business: the rule
is tested, not the timing.)"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from threadpoolctl import threadpool_info

from netspec import api, threads
from netspec.cli import main
from netspec.cli.train import _Bar
from netspec.errors import EXIT_USAGE, NetspecError
from netspec.threads import choose
from tests.engine.test_run_policy import _analysis, _spec


@pytest.mark.parametrize(
    ("cores", "load", "count"),
    [
        (2, 4.2, 1),  # the loaded 2-core machine of issue 14: two threads ran 10x slower
        (2, 1.0, 1),  # one core busy: a second thread would take turns with it
        (2, 0.9, 1),
        (8, 0.3, 7),  # the idle cores, rounded down
        (4, 0.0, 4),  # an idle machine gets every core
        (16, 40.0, 1),  # never below one
        (1, 0.0, 1),
    ],
)
def test_the_default_is_the_cores_the_load_leaves_idle_and_at_least_one(
    cores: int, load: float, count: int
) -> None:
    choice = choose(None, cores, load, {})
    assert choice.count == count
    assert choice.reason == f"load {load:.1f} on {cores} cores"


def test_an_explicit_count_wins_then_the_environment_then_the_load() -> None:
    env = {"OMP_NUM_THREADS": "3"}
    assert choose(5, 2, 9.0, env) == threads.ThreadChoice(5, "--threads")
    assert choose(None, 2, 9.0, env) == threads.ThreadChoice(3, "OMP_NUM_THREADS")
    both = {"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "2"}
    assert choose(None, 8, 0.0, both).count == 2  # OpenBLAS reads its own variable first
    for junk in ("", "0", "-1", "two"):  # not a count: the load decides
        assert choose(None, 4, 0.0, {"OMP_NUM_THREADS": junk}).count == 4


def test_without_a_load_average_one_thread_is_chosen() -> None:
    assert choose(None, 64, None, {}) == threads.ThreadChoice(1, "load unknown")


def test_the_label_names_the_count_and_the_reason() -> None:
    assert threads.ThreadChoice(1, "load 4.2 on 2 cores").label() == (
        "1 thread (load 4.2 on 2 cores)"
    )
    assert threads.ThreadChoice(3, "--threads").label() == "3 threads (--threads)"


def test_usable_cores_is_at_least_one_and_at_most_the_machine() -> None:
    import os

    assert 1 <= threads.usable_cores() <= (os.cpu_count() or 1)


class _Spy:
    """A progress sink that records the BLAS pools' thread counts while the run is training."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def epoch_start(self, epoch: int, epochs: int, samples: int) -> None:
        self.seen |= {pool["num_threads"] for pool in threadpool_info()}

    def run_start(self, engine: str, device: str) -> None:
        pass

    def batch_end(self, samples_done: int, running_loss: float) -> None:
        pass

    def epoch_end(self, record: dict[str, Any]) -> None:
        pass


def _blas_pools() -> list[dict[str, Any]]:
    return [p for p in threadpool_info() if p["user_api"] == "blas"]


@pytest.mark.skipif(not _blas_pools(), reason="numpy is built without a BLAS thread pool")
def test_a_loaded_machine_trains_on_one_blas_thread_and_the_limit_is_lifted_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p["num_threads"] for p in _blas_pools()}
    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "load_average", lambda: 50.0)
    spy = _Spy()
    api.train(_analysis(_spec(tmp_path, epochs=1)), tmp_path / "run", progress=spy, curves=False)
    assert spy.seen == {1}
    assert {p["num_threads"] for p in _blas_pools()} == before


@pytest.mark.skipif(not _blas_pools(), reason="numpy is built without a BLAS thread pool")
def test_api_train_holds_blas_to_the_requested_count(tmp_path: Path) -> None:
    spy = _Spy()
    path = _spec(tmp_path, epochs=1)
    api.train(_analysis(path), tmp_path / "run", progress=spy, curves=False, threads=1)
    assert spy.seen == {1}


def test_threads_below_one_are_refused_by_the_api_and_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(NetspecError) as caught:
        api.thread_choice(0)
    assert caught.value.exit_code == EXIT_USAGE
    path = _spec(tmp_path)
    code = main(["train", str(path), "--threads", "0", "--out", str(tmp_path / "r")])
    assert code == EXIT_USAGE
    assert "--threads" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_train_with_threads_runs(tmp_path: Path) -> None:
    path = _spec(tmp_path, epochs=1)
    assert main(["train", str(path), "--threads", "1", "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "weights.npz").is_file()


def test_the_progress_line_shows_the_thread_count() -> None:
    from rich.console import Console

    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, width=200)
    bar = _Bar(console, live=True, threads="1 thread (load 4.2 on 2 cores)")
    bar.epoch_start(1, 2, 100)
    bar.batch_end(50, 0.5)
    bar.close()
    assert "1 thread (load 4.2 on 2 cores)" in sink.getvalue()
