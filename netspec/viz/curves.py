"""Training curves from history.json: one panel per metric, training solid, validation dashed,
the best epoch marked (and where early stopping stopped). Several runs share the panels.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Literal

from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.runs import CHECKPOINT, HISTORY, load_meta

CURVES = "curves.png"
# What the detached drawer (`netspec plot RUN`) printed, beside curves.png: its "wrote ..." line,
# or why the drawing failed (rewritten by each drawing).
CURVES_LOG = "curves.log"
# How `train` draws curves.png: "auto" in a detached process once its files are written (the
# run does not wait for matplotlib), "always" in the run itself, "never" (`netspec plot` later).
CurvesMode = Literal["auto", "always", "never"]
CURVES_MODES: tuple[CurvesMode, ...] = ("auto", "always", "never")
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
            if _number(value) and key not in _NOT_METRICS and base not in names:
                names.append(base)
    return names


def _number(value: Any) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def best_epoch(run: Run) -> int | None:
    """Early stopping's best epoch when it ran, else the epoch of the lowest finite (val_)loss;
    None when no epoch has one (a NaN or infinite loss is never the best)."""
    if run.best_epoch is not None:
        return run.best_epoch
    key = "val_loss" if any(r.get("val_loss") is not None for r in run.history) else "loss"
    scored = [
        (r[key], r["epoch"]) for r in run.history if _number(r.get(key)) and math.isfinite(r[key])
    ]
    # min() over tuples is the first lowest value; a NaN would compare false and win by position.
    return min(scored)[1] if scored else None


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
                pts = [(r["epoch"], r[key]) for r in run.history if _number(r.get(key))]
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    # A dot per epoch only where dots are apart: on hundreds they hide the
                    # dashes and each is a path for Agg to draw.
                    dot = "." if len(pts) <= 60 else None
                    ax.plot(xs, ys, style, color=color, label=f"{who}{kind}", marker=dot)
            best = best_epoch(run)
            if best is not None:
                ax.axvline(best, color=color, linestyle=":", linewidth=1)
                if i == 0:
                    ax.plot([], [], ":", color=color, label=f"{who}best (epoch {best})")
            if run.stopped and run.history:
                last = run.history[-1]["epoch"]
                ax.axvline(last, color="#555555", linewidth=1)
                if i == 0:
                    ax.plot([], [], "-", color="#555555", label=f"{who}early stop")
        epochs = [r["epoch"] for run in runs for r in run.history]
        if epochs and max(epochs) - min(epochs) < 2:
            # Too few epochs for MaxNLocator to find whole numbers: it would tick 0.96, 0.98.
            ax.set_xticks(range(min(epochs), max(epochs) + 1))
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.legend(fontsize=7)
    # Fixed margins in inches, not tight_layout: its measuring of every tick label cost a third
    # of each drawing (1.84 vs 2.73 s loaded, interleaved), and the panels' labels are alike.
    width, height = 4.2 * cols, 3.0 * rows
    fig.subplots_adjust(
        left=0.55 / width,
        right=1 - 0.15 / width,
        bottom=0.45 / height,
        top=1 - 0.3 / height,
        wspace=0.75 / (4.2 - 0.7),
        hspace=0.75 / (3.0 - 0.75),
    )
    fig.savefig(f, format=fmt, dpi=100)
    return len(names)


def save(runs: list[Run], path: Path) -> int:
    """Write the curves atomically, the format by the suffix (.png, .svg, .pdf)."""
    from netspec.files import atomic_write
    from netspec.viz.raster import require_matplotlib

    require_matplotlib("plotting curves")
    panels = 0

    def write(f: IO[bytes]) -> None:
        nonlocal panels
        panels = draw(runs, f, path.suffix.lstrip(".").lower() or "png")

    atomic_write(path, write)
    return panels


def load_run(folder: Path) -> Run:
    """A run folder's history.json (or that file itself), with early stopping's best epoch,
    monitor and stop read from the checkpoint.npz beside it when there is one."""
    path = folder / HISTORY if folder.is_dir() else folder
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
    numeric = [k for r in history for k, v in r.items() if k != "epoch" and _number(v)]
    if not numeric or not all(_whole(r.get("epoch")) for r in history):
        raise NetspecError.at(
            f"{path} holds no epochs with numbers to plot", exit_code=EXIT_RUNTIME
        )
    checkpoint = path.parent / CHECKPOINT
    meta = _checkpoint_meta(checkpoint) if checkpoint.is_file() else {}
    return run_of(_run_name(path).resolve().name, history, meta.get("early_stopping"), checkpoint)


def load_runs(paths: list[Path]) -> list[Run]:
    """Every run, labelled by the shortest end of its path that no other run shares
    (runs/a/Net and runs/b/Net become a/Net and b/Net; a run given twice keeps its name)."""
    runs = [load_run(p) for p in paths]
    names = [_run_name(p / HISTORY if p.is_dir() else p).resolve() for p in paths]
    return [replace(run, label=_label(name, names)) for run, name in zip(runs, names, strict=True)]


def run_of(
    label: str, history: list[dict[str, Any]], early_stopping: Any, source: Path | None = None
) -> Run:
    """A run with the early-stopping record a checkpoint keeps (`Stopper.state()`): its best
    epoch, its monitor and, from its wait and patience, whether it stopped the run."""
    if early_stopping is None:
        return Run(label, history)
    es = early_stopping if isinstance(early_stopping, dict) else {}
    best, wait = es.get("best_epoch"), es.get("wait")
    monitor, patience = es.get("monitor"), es.get("patience")
    if not (
        (best is None or _whole(best))
        and _whole(wait)
        and (monitor is None or isinstance(monitor, str))
        and (patience is None or _whole(patience))
    ):
        raise NetspecError.at(
            f"{source} is not a netspec checkpoint: its early-stopping record "
            f"{json.dumps(early_stopping)[:80]} lacks a valid best epoch, wait, monitor or "
            "patience",
            exit_code=EXIT_RUNTIME,
        )
    # A checkpoint whose record lacks the patience cannot say whether it stopped the run.
    return Run(label, history, best, monitor, patience is not None and wait > patience)


def _checkpoint_meta(path: Path) -> dict[str, Any]:
    try:
        return load_meta(path)
    except NetspecError as e:
        raise NetspecError.at(
            f"cannot read early stopping's best epoch from {path}: {e}",
            hint="move the broken checkpoint away to plot the history alone",
            exit_code=EXIT_RUNTIME,
        ) from None


def _run_name(history: Path) -> Path:
    """The path that names a run: its folder, or a history file not called history.json."""
    return history.parent if history.name == HISTORY else history


def _label(name: Path, names: list[Path]) -> str:
    others = [n for n in names if n != name]
    parts = name.parts
    for k in range(1, len(parts) + 1):
        if all(other.parts[-k:] != parts[-k:] for other in others):
            return str(Path(*parts[-k:]))
    return str(name)


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


def epoch_hook(mode: CurvesMode | bool, interval: float) -> Redraw | None:
    """The training loop's curves hook for a mode (True: "always", False: "never")."""
    chosen = {True: "always", False: "never"}.get(mode, mode) if isinstance(mode, bool) else mode
    if chosen not in CURVES_MODES:
        raise ValueError(f"curves must be one of {', '.join(CURVES_MODES)}, not {mode!r}")
    return None if chosen == "never" else Redraw(interval, background=chosen == "auto")


class Redraw:
    """The training loop's hook (training.contracts.EpochHook): redraws curves.png, and always
    when the run ends. A drawing costs 0.2-3 s (matplotlib's import, then each layout and PNG),
    which a run of short epochs must not pay per epoch: the next one waits `interval` seconds
    from the end of the last (from the run's start for the first, so a run shorter than that
    draws once, at its end), and longer where drawing would otherwise take more than `share` of
    the time. Before the first drawing its cost is guessed at `first_cost` (matplotlib's import
    and one drawing measured 0.5 s quiet, 6 s loaded), so a 20-second run draws only at its end.
    With `background`, a detached process draws (Drawer) and the guess stays the cost: its
    drawing takes a core from the run's however quickly it is started."""

    def __init__(
        self,
        interval: float,
        share: float = 0.05,
        first_cost: float = 1.0,
        background: bool = False,
    ) -> None:
        self.interval = interval
        self.share = share
        self.last = time.perf_counter()
        self.cost = first_cost  # seconds the last drawing took
        self.drawer = Drawer() if background else None

    def __call__(
        self, out_dir: Path, history: list[dict[str, Any]], stopper: Any, final: bool
    ) -> None:
        start = time.perf_counter()
        wait = max(self.interval, self.cost * (1 - self.share) / self.share)
        if not final and start - self.last < wait:
            return
        if self.drawer is not None:
            if self.drawer(out_dir, history, final):
                self.last = time.perf_counter()
            return
        best = None if stopper is None else stopper.best_epoch
        monitor = None if stopper is None else stopper.monitor
        after_epoch(out_dir, history, best, monitor, stopper is not None and stopper.stopped)
        self.last = time.perf_counter()
        self.cost = self.last - start


_drawers: list[subprocess.Popen[bytes]] = []  # this process's drawing children, for wait_drawn


class Drawer:
    """curves.png drawn by `netspec plot RUN` in a detached process (its own session, so it
    outlives the run and a Ctrl-C after it), from the history.json and checkpoint.npz that the
    loop has just written; plot writes atomically, and what it prints goes to curves.log. One
    at a time per run: a drawing still going when the run ends is stopped (and its temporary
    removed) so that no stale one lands last."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None

    def __call__(self, out_dir: Path, history: list[dict[str, Any]], final: bool) -> bool:
        """Start a drawing; False when none was (no matplotlib, no epochs, one still going)."""
        from netspec.viz.raster import have_matplotlib

        if not have_matplotlib() or not history:
            return False
        if self.child is not None and self.child.poll() is None:
            if not final:
                return False
            self.child.terminate()
            self.child.wait()
            for tmp in out_dir.glob(f".{CURVES}.*.tmp"):
                tmp.unlink(missing_ok=True)
        try:
            self.child = _spawn_plot(out_dir)
        except OSError as e:
            _log.warning("warning: could not start drawing %s: %s", out_dir / CURVES, e)
            return False
        return True


def _spawn_plot(out_dir: Path) -> subprocess.Popen[bytes]:
    """`python -m netspec plot out_dir`, importing this netspec, detached, its output and errors
    in out_dir/curves.log (a drawing that fails in the background says why there)."""
    _drawers[:] = [c for c in _drawers if c.poll() is None]  # reap the finished ones
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
    with open(out_dir / CURVES_LOG, "wb") as log:  # the child keeps its own copy of the file
        child = subprocess.Popen(
            [sys.executable, "-m", "netspec", "plot", str(out_dir.resolve())],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    _drawers.append(child)
    return child


def wait_drawn(timeout: float | None = None) -> None:
    """Wait for the drawings this process started (tests; a benchmark between runs)."""
    for child in _drawers:
        child.wait(timeout)
    _drawers.clear()
