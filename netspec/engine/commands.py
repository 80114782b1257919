"""`netspec train` and `netspec eval`: arguments and printing only; the work is in api/engine.

Registered into netspec.cli through its extension list; heavy modules load inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from netspec import cli
from netspec.cli import _EXTENSIONS, command
from netspec.engine.guards import DEFAULT_SHARE, parse_limit
from netspec.errors import EXIT_RUNTIME, NetspecError

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

    from netspec.ir import Analysis


def _add_parsers(sub: Any, spec_command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    t = spec_command("train", "train a network by its `train` section")
    t.add_argument("--data", metavar="PATH", help="read the training data from PATH instead")
    t.add_argument("--epochs", type=cli.positive_int, metavar="N")
    t.add_argument("--batch", type=cli.positive_int, metavar="N")
    t.add_argument("--lr", type=cli.positive_float, metavar="X", help="base learning rate")
    t.add_argument("--seed", type=cli.non_negative_int, metavar="N")
    t.add_argument("--out", metavar="DIR", help="output folder (default: runs/<network>/)")
    t.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR (or from the checkpoint file DIR names)",
    )
    t.add_argument(
        "--max-memory",
        type=parse_limit,
        default="auto",
        metavar="SIZE",
        help="refuse a run whose memory estimate exceeds SIZE (e.g. 4G; 'none': no limit; "
        f"default: {DEFAULT_SHARE * 100:.0f}%% of the memory available)",  # %% for argparse
    )
    e = spec_command("eval", "score trained weights on data")
    e.add_argument("--weights", required=True, metavar="W", help="a weights.npz from train")
    e.add_argument(
        "--data", metavar="PATH", help="data to score (default: the recipe's validation data)"
    )
    e.add_argument("--json", action="store_true", help="machine-readable output")


_EXTENSIONS.append(_add_parsers)


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
    """A rich progress bar on stderr: samples/s, ETA and the running loss; one line per epoch."""

    def __init__(self, console: Console, live: bool) -> None:
        self.console = console
        self.live = live
        self.epochs = 0
        self.bar: RichProgress | None = None
        self.task: TaskID | None = None
        self.t0 = 0.0

    def epoch_start(self, epoch: int, epochs: int, samples: int) -> None:
        self.epochs = epochs
        self.t0 = time.perf_counter()
        if not self.live:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[rate]} samples/s"),
            TimeRemainingColumn(),
            TextColumn("loss {task.fields[loss]}"),
            console=self.console,
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task(
            "train", total=samples, epoch=f"{epoch}/{epochs}", rate="-", loss="-"
        )

    def batch_end(self, samples_done: int, running_loss: float) -> None:
        if self.bar is None or self.task is None:
            return
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(
            self.task,
            completed=samples_done,
            rate=f"{samples_done / elapsed:,.0f}",
            loss=f"{running_loss:.4g}",
        )

    def epoch_end(self, record: dict[str, Any]) -> None:
        self.close()
        self.console.print(
            f"epoch {record['epoch']}/{self.epochs}  {_fmt(record)}  ({record['seconds']:.2f} s)",
            highlight=False,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from netspec import api

    net = api.load(args.file, args.network, allow_outside_imports=args.allow_outside_imports)
    analysis = api.check(net)
    out, resume = _guard_training(analysis, args)
    console = Console(stderr=True, soft_wrap=True)
    bar = _Bar(console, live=sys.stderr.isatty())
    try:
        result = api.train(
            analysis,
            out,
            data=args.data,
            epochs=args.epochs,
            batch=args.batch,
            lr=args.lr,
            seed=args.seed,
            resume=resume,
            progress=bar,
        )
    except OSError as e:  # disk full, a folder removed mid-run: atomic writes kept the old files
        from netspec.engine.checkpoint import CHECKPOINT

        kept = out / CHECKPOINT
        raise NetspecError.at(
            f"training stopped: cannot write {e.filename or out}: {e.strerror or e}"
            + (f"; {kept} holds the last good epoch" if kept.is_file() else ""),
            hint="free some disk space, then continue with --resume"
            if kept.is_file()
            else "free some disk space or choose another folder with --out",
            exit_code=EXIT_RUNTIME,
        ) from None
    finally:
        bar.close()
    if result.stopped == "early_stopping":
        console.print(f"early stopping: best epoch {result.best_epoch}", highlight=False)
    if result.stopped == "interrupted":
        console.print("interrupted: weights saved; --resume continues from the last epoch")
    for path in (result.weights_path, result.history_path, result.checkpoint_path):
        print(path)
    return 130 if result.stopped == "interrupted" else 0


def _guard_training(analysis: Analysis, args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The run folder, checked writable with room for checkpoints, after the memory estimate
    is checked against --max-memory: all before any array is allocated; and the checkpoint
    --resume names, found before anything is created."""
    from pathlib import Path

    from netspec.engine.guards import check_memory, check_output_dir, checkpoint_bytes, estimate
    from netspec.engine.optimizers import make_optimizer

    spec = analysis.network.train
    default = Path(f"runs/{analysis.network.name}")
    if spec is None:  # api.train says how to write a train section
        return Path(args.out) if args.out is not None else default, None
    from netspec.engine.checkpoint import resume_checkpoint

    resume = None if args.resume is None else resume_checkpoint(Path(args.resume), default)
    out = Path(args.out) if args.out is not None else resume.parent if resume else default
    slots = len(make_optimizer(spec.optimizer).slots)
    batch = args.batch if args.batch is not None else spec.batch
    check_memory(estimate(analysis, batch, slots), args.max_memory)
    check_output_dir(out, checkpoint_bytes(analysis, slots))
    return out, resume


@command("eval")
def cmd_eval(args: argparse.Namespace) -> int:
    from netspec import api

    net = api.load(args.file, args.network, allow_outside_imports=args.allow_outside_imports)
    analysis = api.check(net)
    from netspec.engine.checkpoint import weights_file

    ev = api.evaluate(analysis, weights_file(args.weights), data=args.data)
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
    names = list(labels) if labels is not None and len(labels) == k else [str(i) for i in range(k)]
    table = Table(title="confusion (rows: true, columns: predicted)", title_justify="left")
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    for name, row in zip(names, counts, strict=True):
        table.add_row(name, *(str(c) for c in row))
    Console(soft_wrap=True).print(table)
