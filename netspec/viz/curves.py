"""Training curves from history.json: one panel per metric, training solid, validation dashed,
the best epoch marked (and where early stopping stopped). Several runs share the panels.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from netspec.errors import EXIT_RUNTIME, NetspecError

CURVES = "curves.png"
_NOT_METRICS = {"epoch", "seconds", "lr", "step"}
_log = logging.getLogger("netspec")


@dataclass(frozen=True)
class Run:
    label: str
    history: list[dict[str, Any]]
    best_epoch: int | None = None  # early stopping's best, when it ran
    monitor: str | None = None
    stopped: bool = False  # True when early stopping ended the run


def metrics(history: list[dict[str, Any]]) -> list[str]:
    """The metric names in the order they first appear, `val_` folded into its base."""
    names: list[str] = []
    for record in history:
        for key, value in record.items():
            base = key.removeprefix("val_")
            numeric = isinstance(value, float | int) and not isinstance(value, bool)
            if numeric and key not in _NOT_METRICS and base not in names:
                names.append(base)
    return names


def best_epoch(run: Run) -> tuple[str, int] | None:
    """(metric, epoch) of the best epoch: early stopping's, else the lowest (val_)loss."""
    if run.best_epoch is not None and run.monitor is not None:
        return run.monitor.removeprefix("val_"), run.best_epoch
    key = "val_loss" if any(r.get("val_loss") is not None for r in run.history) else "loss"
    scored = [(r[key], r["epoch"]) for r in run.history if isinstance(r.get(key), float | int)]
    return ("loss", min(scored)[1]) if scored else None


def draw(runs: list[Run], f: IO[bytes], fmt: str = "png") -> int:
    """Draw the runs' curves into `f`; returns the number of panels."""
    from matplotlib.ticker import MaxNLocator

    from netspec.viz.raster import figure

    names = [m for run in runs for m in metrics(run.history)]
    names = list(dict.fromkeys(names))
    cols = min(len(names), 3) if names else 1
    rows = max((len(names) + cols - 1) // cols, 1)
    fig = figure(4.2 * cols, 3.0 * rows)
    colors = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for k, run in enumerate(runs):
            color = colors[k % len(colors)]
            who = f"{run.label} " if len(runs) > 1 else ""
            for key, style, kind in ((name, "-", "train"), (f"val_{name}", "--", "val")):
                pts = [
                    (r["epoch"], r[key])
                    for r in run.history
                    if isinstance(r.get(key), float | int) and not isinstance(r.get(key), bool)
                ]
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(xs, ys, style, color=color, label=f"{who}{kind}", marker=".")
            best = best_epoch(run)
            if best is not None:
                ax.axvline(best[1], color=color, linestyle=":", linewidth=1)
                if i == 0:
                    ax.plot([], [], ":", color=color, label=f"{who}best (epoch {best[1]})")
            if run.stopped and run.history:
                last = run.history[-1]["epoch"]
                ax.axvline(last, color="#555555", linewidth=1)
                if i == 0:
                    ax.plot([], [], "-", color="#555555", label=f"{who}early stop")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(f, format=fmt, dpi=100)
    return len(names)


def save(runs: list[Run], path: Path) -> int:
    """Write the curves atomically, the format by the suffix (.png, .svg, .pdf)."""
    from netspec.engine.files import atomic_write
    from netspec.viz.raster import require_matplotlib

    require_matplotlib("plotting curves")
    panels = 0

    def write(f: IO[bytes]) -> None:
        nonlocal panels
        panels = draw(runs, f, path.suffix.lstrip(".").lower() or "png")

    atomic_write(path, write)
    return panels


def load_run(folder: Path) -> Run:
    """A run folder's history.json (and early stopping's best, from its checkpoint meta)."""
    path = folder / "history.json" if folder.is_dir() else folder
    if not path.is_file():
        raise NetspecError.at(
            f"no training history at {path}",
            hint="give a run folder that holds history.json",
            exit_code=EXIT_RUNTIME,
        )
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NetspecError.at(
            f"cannot read the training history {path}: {e}", exit_code=EXIT_RUNTIME
        ) from None
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise NetspecError.at(f"{path} is not a netspec history", exit_code=EXIT_RUNTIME)
    numeric = [
        k
        for r in history
        for k, v in r.items()
        if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool)
    ]
    if not numeric or not all(isinstance(r.get("epoch"), int) for r in history):
        raise NetspecError.at(
            f"{path} holds no epochs with numbers to plot", exit_code=EXIT_RUNTIME
        )
    label = (path.parent if path.name == "history.json" else path).name
    return Run(label, history)


def after_epoch(
    out_dir: Path,
    history: list[dict[str, Any]],
    best: int | None,
    monitor: str | None,
    stopped: bool,
) -> None:
    """The trainer's hook: curves.png beside history.json when matplotlib is installed.

    Plotting never fails a training run: an error becomes a one-line warning.
    """
    from netspec.viz.raster import have_matplotlib

    if not have_matplotlib() or not history:
        return
    try:
        save([Run(out_dir.name, history, best, monitor, stopped)], out_dir / CURVES)
    except (OSError, ValueError, RuntimeError, NetspecError) as e:
        _log.warning("warning: could not draw %s: %s", out_dir / CURVES, e)
