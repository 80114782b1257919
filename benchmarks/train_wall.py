"""`netspec train`'s wall time against the sum of its step times (the target is <= 1.05x).

A run's wall time is `api.train` on the spec, its data and its train section (curves and
checkpoints as the CLI writes them), timed in this process after the spec is loaded; the step
time is the sum of every `loss` + `update` call of the trainer, timed by wrapping the two
methods. What is left is the loop's own work: batching, metrics, validation, history,
checkpoints and curves.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspec import api
from netspec.engine.trainer import NumpyTrainer

ROOT = Path(__file__).resolve().parent.parent
SPECS = (
    "examples/xor.net",
    "examples/cubic.net",
    "examples/digits_mlp.net",
    "examples/digits_cnn.net",
    "specs/cubic.net",
)
TARGET = 1.05


def _timed(method: Callable[..., Any], total: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - start

    return wrapper


def wall_vs_steps(spec: str, epochs: int | None) -> dict[str, Any]:
    """One training run of `spec`: wall seconds, summed step seconds and their ratio."""
    analysis = api.check(api.load(ROOT / spec))
    steps = [0.0]
    saved = NumpyTrainer.loss, NumpyTrainer.update
    NumpyTrainer.loss = _timed(saved[0], steps)  # type: ignore[method-assign]
    NumpyTrainer.update = _timed(saved[1], steps)  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            api.train(analysis, Path(out) / "run", epochs=epochs)
            wall = time.perf_counter() - start
    finally:
        NumpyTrainer.loss, NumpyTrainer.update = saved  # type: ignore[method-assign]
    ratio = wall / steps[0]
    return {
        "workload": f"train wall {spec}",
        "section": "train_wall",
        "netspec_ms": wall * 1e3,
        "reference_ms": steps[0] * 1e3,
        "ratio": ratio,
        "ratio_min": None,
        "ratio_max": None,
        "target": TARGET,
        "met": ratio <= TARGET,
        "epochs": epochs,
    }
