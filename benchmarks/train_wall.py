"""`netspec train`'s wall time against the sum of its step times (the target is <= 1.05x).

A run's wall time is `api.train` on the spec, its data and its train section as the CLI runs it
in a terminal: checkpoints, curves.png by the detached drawer that `--curves auto` starts (this
process waits for it after the clock stops, so that runs do not overlap), and the CLI's own
progress display (cli.train._Bar: the live bar and one line per epoch, on a terminal console
that writes to os.devnull). It is timed in this process after the spec is loaded and checked:
the interpreter's start, netspec's imports and `check` (0.5-1 s, the same for every spec) are
not in it, as they are no part of the training loop. Its steps are every call of the trainer's
`loss` + `update` (one training step) and `predict` (the validation pass the recipe asks for
after each epoch), timed by wrapping the three methods. What is left is the loop's own work:
batching, the schedule, metrics, history, checkpoints, progress, the final files, and starting
the drawer. Each row splits it into the time outside the epoch loop (reading the data, building
the trainer, the final weights, the drawer; `fixed_ms`) and the loop's own per epoch (the last
epoch's checkpoint, always written, included). A run of microsecond steps (XOR: 4 samples)
cannot reach the target: a Python epoch's bookkeeping is as long as its step.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from netspec import api
from netspec.engine.trainer import NumpyTrainer
from netspec.training import loop
from netspec.viz.curves import wait_drawn

ROOT = Path(__file__).resolve().parent.parent
SPECS = (
    "examples/xor.net",
    "examples/cubic.net",
    "examples/digits_mlp.net",
    "examples/digits_cnn.net",
    "specs/cubic.net",
)
TARGET = 1.05
STEP_METHODS = ("loss", "update", "predict")
# How the CLI shows progress: in a terminal (the live bar), piped (epoch lines only), or not.
Shown = Literal["terminal", "piped", "none"]


def _timed(method: Callable[..., Any], total: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - start

    return wrapper


@contextmanager
def _progress(shown: Shown) -> Iterator[Any]:
    """The CLI's progress display as `netspec train` makes it, writing to os.devnull."""
    if shown == "none":
        yield None
        return
    from rich.console import Console

    from netspec.cli.train import _Bar

    with open(os.devnull, "w", encoding="utf-8") as sink:
        terminal = shown == "terminal"
        console = Console(file=sink, soft_wrap=True, force_terminal=terminal, width=120)
        bar = _Bar(console, live=terminal, threads="1 thread (--threads)")
        try:
            yield bar
        finally:
            bar.close()  # as run_train does, inside the clock


def _one_run(analysis: Any, epochs: int | None, shown: Shown) -> tuple[float, float, float, int]:
    """(wall seconds, step seconds, seconds in the epoch loop, epochs run) of one api.train."""
    steps, in_loop = [0.0], [0.0]
    saved = {m: getattr(NumpyTrainer, m) for m in STEP_METHODS}
    saved_epochs = loop._epochs
    for m, method in saved.items():
        setattr(NumpyTrainer, m, _timed(method, steps))
    loop._epochs = _timed(saved_epochs, in_loop)  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            with _progress(shown) as bar:
                result = api.train(analysis, Path(out) / "run", epochs=epochs, progress=bar)
            wall = time.perf_counter() - start
            wait_drawn(120)  # not timed: the run has returned; its folder must outlive it
    finally:
        for m, method in saved.items():
            setattr(NumpyTrainer, m, method)
        loop._epochs = saved_epochs  # type: ignore[assignment]
    return wall, steps[0], in_loop[0], len(result.history)


def wall_vs_steps(
    spec: str, epochs: int | None, reps: int = 3, shown: Shown = "terminal"
) -> dict[str, Any]:
    """`reps` training runs of `spec`: the median run's wall and step seconds, the ratios'
    spread, the per-epoch overhead (wall - steps) and steps in microseconds, and that overhead
    split into the time outside the epoch loop and the loop's own per epoch."""
    analysis = api.check(api.load(ROOT / spec))
    runs = sorted(
        (_one_run(analysis, epochs, shown) for _ in range(reps)), key=lambda r: r[0] / r[1]
    )
    ratios = [wall / steps for wall, steps, _, _ in runs]
    wall, steps, in_loop, n = runs[len(runs) // 2]
    ratio = statistics.median(ratios)
    return {
        "workload": f"train wall {spec}",
        "section": "train_wall",
        "netspec_ms": wall * 1e3,
        "reference_ms": steps * 1e3,
        "ratio": ratio,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "target": TARGET,
        "met": ratio <= TARGET,
        "epochs": epochs,
        "overhead_us_per_epoch": (wall - steps) / n * 1e6,
        "steps_us_per_epoch": steps / n * 1e6,
        "fixed_ms": (wall - in_loop) * 1e3,
        "loop_us_per_epoch": (in_loop - steps) / n * 1e6,
        "progress": shown,
    }
