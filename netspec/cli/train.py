"""`train` and `eval`: the progress bar and the printing; the run itself is api.train's."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netspec.cli.args import (
    Command,
    max_memory,
    non_negative_int,
    positive_float,
    positive_int,
    spec_arguments,
)
from netspec.cli.report import note_torch_counters
from netspec.errors import EXIT_RUNTIME, NetspecError, printable

if TYPE_CHECKING:
    from rich.console import Console

    from netspec.training.contracts import FitResult


def _train_arguments(t: argparse.ArgumentParser) -> None:
    spec_arguments(t)
    t.add_argument("--data", metavar="PATH", help="read the training data from PATH instead")
    _name_arguments(t)
    t.add_argument("--epochs", type=positive_int, metavar="N")
    t.add_argument("--batch", type=positive_int, metavar="N")
    t.add_argument("--lr", type=positive_float, metavar="X", help="base learning rate")
    t.add_argument("--seed", type=non_negative_int, metavar="N")
    t.add_argument(
        "--engine",
        choices=("numpy", "torch"),
        default="numpy",
        help="numpy (default, built in) or torch (pip install 'netspec[torch]')",
    )
    t.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="torch engine only: auto (the GPU if any; default), cpu or cuda",
    )
    t.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        metavar="N",
        help="torch engine only: N data-parallel processes on this machine, each on its shard "
        "of every batch (under torchrun: the launcher's processes, no --nproc)",
    )
    t.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="torch engine only: autocast to bf16 or fp16 (with a gradient scaler); default fp32",
    )
    t.add_argument(
        "--compile", action="store_true", help="torch engine only: torch.compile the network"
    )
    t.add_argument("--out", metavar="DIR", help="output folder (default: runs/<network>/)")
    t.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR (or from the checkpoint file DIR names)",
    )
    t.add_argument(
        "--init-weights",
        metavar="W",
        help="start from the weights in W (an .npz keyed by the spec's names, e.g. from "
        "`netspec import` or a run's weights.npz) instead of fresh ones",
    )
    _curves_argument(t)
    t.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="BLAS threads (default: the cores the load average leaves idle, at least 1)",
    )
    max_memory(t, "run")


def _curves_argument(t: argparse.ArgumentParser) -> None:
    t.add_argument(
        "--curves",
        choices=("auto", "always", "never"),
        default="auto",
        help="curves.png (with matplotlib): auto draws it in a detached process from the run's "
        "files (its output in curves.log), always in the run (it waits), never (`netspec plot "
        "RUN` later)",
    )


def _name_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--x", metavar="NAME", help="the features array of an .npz (default: x)")
    p.add_argument(
        "--y",
        metavar="NAME",
        help="the labels array of an .npz (default: y), or a CSV's label column (name or index)",
    )


def _eval_arguments(e: argparse.ArgumentParser) -> None:
    spec_arguments(e)
    e.add_argument("--weights", required=True, metavar="W", help="a weights.npz from train")
    e.add_argument(
        "--data", metavar="PATH", help="data to score (default: the recipe's validation data)"
    )
    _name_arguments(e)
    e.add_argument("--json", action="store_true", help="machine-readable output")


def _fmt(record: dict[str, Any]) -> str:
    """`epoch 3/10  loss 0.1234  accuracy 0.9612  val_loss ...  (1.2 s)`."""
    skip = {"epoch", "seconds", "lr"}
    parts = [
        f"{k} {v:.4g}"
        for k, v in record.items()
        if k not in skip and isinstance(v, float | int) and not isinstance(v, bool)
    ]
    return "  ".join(parts)


class _Bar:
    """Progress on stderr: one line per epoch and, in a terminal, a bar (samples/s, the epoch's
    ETA, the running loss) redrawn in place on one line.

    The bar is drawn by this object, from the loop's own calls, at most every DRAW_S, and under
    it the epoch lines are written together at most every FLUSH_S: rich's Progress (a thread
    redrawing a table, 1.5 ms a drawing), started per epoch, cost 7 ms an epoch and, kept for
    the run, still 10% of a run of XOR's 0.2 ms epochs."""

    DRAW_S = 0.2
    FLUSH_S = 0.2
    CELLS = 30  # the bar's width in characters

    def __init__(self, console: Console, live: bool, threads: str = "") -> None:
        self.console = console
        self.live = live
        self.threads = threads  # e.g. "1 thread (load 3.2 on 2 cores)"
        self.epoch = self.epochs = self.samples = self.done = 0
        self.loss: float | None = None
        self.t0 = 0.0
        self.drawn = -math.inf  # when the bar was last drawn
        self.flushed = -math.inf  # when the epoch lines were last written
        self.shown = False  # the bar's line is on the screen
        self.last = ""  # its text, which a shorter one must cover
        self.pending: list[str] = []
        utf8 = (console.encoding or "").lower().replace("-", "").startswith("utf8")
        self.marks = ("\u2501", "\u2500") if utf8 else ("#", "-")

    def run_start(self, engine: str, device: str) -> None:
        self.console.print(f"training on the {engine} engine, device {device}", highlight=False)

    def epoch_start(self, epoch: int, epochs: int, samples: int) -> None:
        self.epoch, self.epochs, self.samples, self.done = epoch, epochs, samples, 0
        self.loss = None
        self.t0 = time.perf_counter()

    def batch_end(self, samples_done: int, running_loss: float) -> None:
        self.done, self.loss = samples_done, running_loss
        if self.live:
            now = time.perf_counter()
            if now - self.drawn >= self.DRAW_S:
                self._draw(now)

    def epoch_end(self, record: dict[str, Any]) -> None:
        line = f"epoch {record['epoch']}/{self.epochs}  {_fmt(record)}  ({record['seconds']:.2f} s)"
        self.pending.append(line)
        # Held back only under a live bar, whose redraw is the cost; a log gets each line now.
        if not self.live or time.perf_counter() - self.flushed >= self.FLUSH_S:
            self._flush()

    def _line(self, now: float) -> str:
        """The bar's text, cut to the terminal's width (a wrapped line could not be redrawn);
        the bar itself narrows first."""
        done, total = self.done, max(self.samples, 1)
        rate = done / max(now - self.t0, 1e-9)
        eta = timedelta(seconds=math.ceil((total - done) / rate)) if done else "-"
        loss = "-" if self.loss is None else f"{self.loss:.4g}"
        head = f"epoch {self.epoch}/{self.epochs} "
        tail = f"{done}/{self.samples} {rate:,.0f} samples/s {eta} loss {loss} {self.threads}"
        width = max(self.console.width - 1, 1)
        cells = max(min(self.CELLS, width - len(head) - len(tail) - 1), 0)
        full = min(cells, cells * done // total)
        bar = self.marks[0] * full + self.marks[1] * (cells - full) + " " if cells else ""
        return (head + bar + tail)[:width]

    def _draw(self, now: float) -> None:
        line = self._line(now)
        self._write("\r" + line + " " * max(len(self.last) - len(line), 0) if self.shown else line)
        self.last, self.shown, self.drawn = line, True, now

    def _clear(self) -> str:
        """Spaces over the bar (no terminal escapes: any terminal, any Windows console)."""
        return "\r" + " " * len(self.last) + "\r"

    def _write(self, text: str) -> None:
        if self.console.quiet:  # as console.print: a quiet console (torchrun's ranks) says nothing
            return
        file = self.console.file
        file.write(text)
        file.flush()

    def _flush(self) -> None:
        if self.pending:
            clear = self._clear() if self.shown else ""
            self.shown = False
            self._write(clear + "\n".join(self.pending) + "\n")
            self.pending.clear()
            if self.live and self.epoch:
                self._draw(time.perf_counter())
        self.flushed = time.perf_counter()

    def close(self) -> None:
        self.live = False  # the last lines, then no bar
        self._flush()
        if self.shown:
            self._write(self._clear())
            self.shown = False


def run_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from netspec import api, runs
    from netspec.training.plan import launched

    net = api.load(args.file, args.network, allow_outside_imports=args.allow_outside_imports)
    analysis = api.check(net)
    # the folder, for the message on a full disk
    out, _ = runs.run_folder(analysis.network.name, args.out, args.resume)
    place = launched()
    quiet = place is not None and place.rank != 0  # under torchrun, only rank 0 prints
    console = Console(stderr=True, soft_wrap=True, quiet=quiet)
    threads = api.thread_choice(args.threads)
    bar = _Bar(console, live=sys.stderr.isatty(), threads=threads.label())
    try:
        result = api.train(
            analysis,
            args.out,
            data=args.data,
            x=args.x,
            y=args.y,
            epochs=args.epochs,
            batch=args.batch,
            lr=args.lr,
            seed=args.seed,
            resume=args.resume,
            init_weights=args.init_weights,
            engine=args.engine,
            device=args.device,
            nproc=args.nproc,
            precision=args.precision,
            compile=args.compile,
            progress=None if quiet else bar,
            max_memory=args.max_memory,
            curves=args.curves,
            threads=threads.count,
        )
    except OSError as e:  # disk full, a folder removed mid-run: atomic writes kept the old files
        raise _write_failed(e, out) from None
    finally:
        bar.close()
    note_torch_counters(result.ignored)
    if quiet:
        return 130 if result.stopped == "interrupted" else 0
    if result.classes is not None:
        # Names come from a data file: shown as text, never as markup or escape sequences.
        shown = (printable(n) for n in result.classes)
        mapping = ", ".join(f"{name}={i}" for i, name in enumerate(shown))
        console.print(
            f"note: class names mapped to indices: {mapping}", highlight=False, markup=False
        )
    if result.stopped == "early_stopping":
        console.print(f"early stopping: best epoch {result.best_epoch}", highlight=False)
    if result.stopped == "interrupted":
        console.print(_interrupted(result), highlight=False)
    for path in (result.weights_path, result.history_path, result.checkpoint_path):
        if path != result.checkpoint_path or result.checkpoint_epoch is not None:
            print(path)
    return 130 if result.stopped == "interrupted" else 0


def _interrupted(result: FitResult) -> str:
    """What an interrupted run really left: the checkpoint's epoch, or that there is none."""
    if result.checkpoint_epoch is None:
        return (
            "interrupted: weights saved; no checkpoint was written yet, so --resume cannot "
            "continue this run: train it again"
        )
    return (
        f"interrupted: weights saved; --resume continues from epoch "
        f"{result.checkpoint_epoch}, the last checkpoint"
    )


def _write_failed(e: OSError, out: Path) -> NetspecError:
    from netspec.runs import CHECKPOINT

    kept = out / CHECKPOINT
    return NetspecError.at(
        f"training stopped: cannot write {e.filename or out}: {e.strerror or e}"
        + (f"; {kept} holds the last good epoch" if kept.is_file() else ""),
        hint="free some disk space, then continue with --resume"
        if kept.is_file()
        else "free some disk space or choose another folder with --out",
        exit_code=EXIT_RUNTIME,
    )


def run_eval(args: argparse.Namespace) -> int:
    from netspec import api

    net = api.load(args.file, args.network, allow_outside_imports=args.allow_outside_imports)
    ev = api.evaluate(api.check(net), args.weights, data=args.data, x=args.x, y=args.y)
    note_torch_counters(ev.ignored)
    if args.json:
        out = {"samples": ev.samples, "data": ev.source, **ev.metrics, "confusion": ev.confusion}
        print(json.dumps(out, indent=1))
        return 0
    print(f"{ev.samples} samples from {ev.source}")
    for name, value in ev.metrics.items():
        print(f"{name:>12}  {value:.4f}")
    if ev.confusion is not None:
        _print_confusion(ev.confusion, net.labels)
    return 0


def _print_confusion(counts: list[list[int]], labels: tuple[str, ...] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    k = len(counts)
    from rich.markup import escape

    # Labels are read from files: neither terminal escapes nor rich markup may act.
    given = labels is not None and len(labels) == k
    names = [escape(printable(n)) for n in labels or ()] if given else [str(i) for i in range(k)]
    table = Table(title="confusion (rows: true, columns: predicted)", title_justify="left")
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    for name, row in zip(names, counts, strict=True):
        table.add_row(name, *(str(c) for c in row))
    Console(soft_wrap=True).print(table)


TRAIN = Command("train", "train a network by its `train` section", _train_arguments, run_train)
EVAL = Command("eval", "score trained weights on data", _eval_arguments, run_eval)
