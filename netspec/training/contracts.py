"""What an engine and a caller see of a training run: the engine's `Trainer`, the `Progress`
and `EpochHook` callbacks, and the `FitResult` (the loop itself is training/loop.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from netspec import runs
from netspec.ir import Analysis
from netspec.ops.base import Array, Params
from netspec.recipe import TrainSpec
from netspec.training.stopping import Stopper

Stopped = Literal["completed", "early_stopping", "interrupted"]


class Trainer(Protocol):
    """An engine's side of a run: the network's weights and one step's arithmetic.

    `loss` runs the network in training mode on a batch and returns the mean data loss and the
    outputs; `update` then applies that batch's gradients (penalties, clipping and the optimizer
    at learning rate `lr`) to `params`. Splitting the step lets the loop refuse a non-finite
    loss before its update.
    """

    params: Params  # by global name, as weights.npz holds them
    engine: str  # "numpy", "torch": what history.json and the first progress line report
    device: str  # "cpu", "cuda:0 (NVIDIA H200)"

    def loss(self, x: Array, y: Array) -> tuple[float, Array]: ...

    def update(self, lr: float) -> None: ...

    def predict(self, x: Array) -> Array: ...

    def optimizer_state(self) -> dict[str, Array]: ...

    def restore(self, params: Params, optimizer_state: dict[str, Array]) -> None: ...


# (analysis, recipe with its overrides, the initial weights' generator, the loop's generator)
TrainerFactory = Callable[[Analysis, TrainSpec, np.random.Generator, np.random.Generator], Trainer]


class Progress(Protocol):
    """What the loop reports as it goes (the CLI draws a progress bar from it)."""

    def run_start(self, engine: str, device: str) -> None: ...

    def epoch_start(self, epoch: int, epochs: int, samples: int) -> None: ...

    def batch_end(self, samples_done: int, running_loss: float) -> None: ...

    def epoch_end(self, record: dict[str, Any]) -> None: ...


class EpochHook(Protocol):
    """Called after each saved epoch (final=False) and once when the run ends (final=True),
    e.g. to redraw the curves of history.json."""

    def __call__(
        self, out_dir: Path, history: list[dict[str, Any]], stopper: Stopper | None, final: bool
    ) -> None: ...


@dataclass
class FitResult:
    params: Params
    history: list[dict[str, Any]]
    out_dir: Path
    stopped: Stopped
    best_epoch: int | None = None
    # The epoch that out_dir's checkpoint.npz holds, which --resume continues from; None when
    # the run wrote none (interrupted before its first save, even mid-write).
    checkpoint_epoch: int | None = None
    # (shift, scale) the inputs were normalised with; `api.export(..., normalization=...)`
    # builds it into an ONNX model so that the model takes raw inputs.
    normalization: tuple[Array, Array] | None = None
    # The class names text labels were mapped from, index by index (None: numeric labels).
    classes: tuple[str, ...] | None = None
    # The `num_batches_tracked` counters --init-weights held and netspec dropped (for a note).
    ignored: list[str] = field(default_factory=list)

    @property
    def weights_path(self) -> Path:
        return self.out_dir / runs.WEIGHTS

    @property
    def history_path(self) -> Path:
        return self.out_dir / runs.HISTORY

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / runs.CHECKPOINT
