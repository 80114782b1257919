"""`netspec train`'s wall time against the sum of its step times (the target is <= 1.05x).

A run's wall time is `api.train` on the spec, its data and its train section (checkpoints and
curves as the CLI writes them: curves.png by the detached drawer that `--curves auto` starts,
which this process waits for after the clock stops, so that runs do not overlap), timed in this
process after the spec is loaded. Its steps are every call of the trainer's `loss` + `update`
(one training step) and `predict` (the validation pass the recipe asks for after each epoch),
timed by wrapping the three methods. What is left is the loop's own work: batching, the
schedule, metrics, history, checkpoints, the final files, and starting the drawer. A run of
microsecond steps (XOR: 4 samples) cannot reach the target: a Python epoch's bookkeeping is as
long as its step, so each row also gives the overhead and the steps per epoch in microseconds.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspec import api
from netspec.engine.trainer import NumpyTrainer
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


def _timed(method: Callable[..., Any], total: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - start

    return wrapper


def _one_run(analysis: Any, epochs: int | None) -> tuple[float, float, int]:
    """(wall seconds, step seconds, epochs run) of one api.train."""
    steps = [0.0]
    saved = {m: getattr(NumpyTrainer, m) for m in STEP_METHODS}
    for m, method in saved.items():
        setattr(NumpyTrainer, m, _timed(method, steps))
    try:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            result = api.train(analysis, Path(out) / "run", epochs=epochs)
            wall = time.perf_counter() - start
            wait_drawn(120)  # not timed: the run has returned; its folder must outlive it
    finally:
        for m, method in saved.items():
            setattr(NumpyTrainer, m, method)
    return wall, steps[0], len(result.history)


def wall_vs_steps(spec: str, epochs: int | None, reps: int = 3) -> dict[str, Any]:
    """`reps` training runs of `spec`: the median run's wall and step seconds, the ratios'
    spread, and the per-epoch overhead (wall - steps) and steps in microseconds."""
    analysis = api.check(api.load(ROOT / spec))
    runs = sorted((_one_run(analysis, epochs) for _ in range(reps)), key=lambda r: r[0] / r[1])
    ratios = [wall / steps for wall, steps, _ in runs]
    wall, steps, n = runs[len(runs) // 2]
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
    }
