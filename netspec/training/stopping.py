"""Early stopping: watch one recorded quantity after each epoch, stop when it stops improving,
and keep the best epoch's weights for the end of the run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from netspec.errors import EXIT_RUNTIME, EXIT_SPEC, NetspecError, suggest
from netspec.ops.base import Params
from netspec.recipe import TrainSpec

MAX_METRICS = frozenset({"accuracy", "precision", "recall", "f1", "r2"})


@dataclass
class Stopper:
    monitor: str
    mode: Literal["min", "max"]
    patience: int
    min_delta: float
    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0
    best_params: Params | None = field(default=None, repr=False)

    def update(self, epoch: int, value: float, params: Params, keep: bool) -> bool:
        """Record an epoch's value; True when patience has run out. A value that is not
        finite never counts as best (NaN compares false with everything after it). `keep`
        copies the weights of a new best, for restore_best."""
        better = math.isfinite(value) and (
            self.best is None
            or (
                value < self.best - self.min_delta
                if self.mode == "min"
                else value > self.best + self.min_delta
            )
        )
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if keep:
                self.best_params = {k: v.copy() for k, v in params.items()}
            return False
        self.wait += 1
        return self.wait > self.patience

    def watched(self, record: dict[str, Any]) -> float:
        """The monitored value of an epoch's record."""
        value = record.get(self.monitor)
        if not isinstance(value, float | int) or isinstance(value, bool):
            raise NetspecError.at(
                f"early stopping monitors '{self.monitor}', which this run does not compute",
                hint="choose one of: " + ", ".join(k for k, v in record.items() if _scalar(v)),
                exit_code=EXIT_SPEC,
            )
        return float(value)

    @property
    def stopped(self) -> bool:
        return self.wait > self.patience

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: resume continues from it, and `plot` draws the best epoch
        and the stop (wait > patience) of what it monitored."""
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "monitor": self.monitor,
            "patience": self.patience,
        }

    def restore(self, state: dict[str, Any], best: Params | None, where: str) -> None:
        """Continue from a checkpoint's state; refused when it watched another quantity."""
        watched = state.get("monitor", self.monitor)  # recorded since stop 12
        if watched != self.monitor:  # its best is of another quantity
            raise NetspecError.at(
                f"the run in {where} stopped early on {watched}; the recipe now monitors "
                f"{self.monitor}, whose values its best cannot be compared with",
                hint=f'resume with early_stopping(monitor="{watched}", ...), or start a fresh '
                "run with --out",
                exit_code=EXIT_RUNTIME,
            )
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_params = best


def _scalar(v: Any) -> bool:
    return isinstance(v, float | int) and not isinstance(v, bool)


def make_stopper(spec: TrainSpec, has_val: bool) -> Stopper | None:
    """The recipe's early stopping, checked against what the run records."""
    es = spec.early_stopping
    if es is None:
        return None
    if es.monitor.startswith("val_") and not has_val:
        raise NetspecError.at(
            f"early stopping monitors {es.monitor} but there is no validation data",
            hint="hold some out with `validation = 0.2`, give `val_data`, or monitor `loss`",
            exit_code=EXIT_SPEC,
        )
    known = monitorable(spec, has_val)
    if es.monitor not in known:  # before an epoch is spent, not after it
        raise NetspecError.at(
            f"early stopping monitors '{es.monitor}', which this run does not compute",
            hint=" ".join(
                h
                for h in (suggest(es.monitor, known), f"this run computes {', '.join(known)}")
                if h
            ),
            exit_code=EXIT_SPEC,
        )
    base = es.monitor.removeprefix("val_")
    mode = es.mode
    if mode == "auto":
        mode = "max" if base in MAX_METRICS or base.startswith("top_") else "min"
    return Stopper(es.monitor, mode, es.patience, es.min_delta)


def monitorable(spec: TrainSpec, has_val: bool) -> list[str]:
    """The per-epoch numbers a run records that early stopping may watch."""
    names = ["loss"] + [
        f"top_{m.k}_accuracy" if m.name == "top_k" else m.name
        for m in spec.metrics
        if m.name != "confusion"  # a matrix, not a number
    ]
    return names + [f"val_{n}" for n in names] if has_val else names
