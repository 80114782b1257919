"""The training loop: mini-batches, schedule, validation, early stopping, checkpoints, history.

A run is seeded by `spec.seed` and bit-for-bit repeatable: one SeedSequence is split into three
streams, for the initial weights, the validation split and the loop (shuffling, dropout), and
the loop's bit-generator state is checkpointed after every epoch, so `resume` continues exactly
where an interrupted run stopped. The arithmetic (forward, loss, backward, update) is the
engine's `Trainer`; everything else is here, so every engine runs a recipe the same way.

Choices a user may want to know:

- losses and metrics are per-sample means; the epoch's `loss` is the mean over its batches of
  the data loss (without the penalty), weighted by batch size, with the network in training mode;
- the schedule is evaluated before every step at the fractional epoch ``e + k / steps``;
- `bgd` trains on the whole training set as one batch per epoch, whatever `batch` says;
- early stopping watches `monitor` after each epoch; with `restore_best` the best epoch's weights
  are restored when the run ends, whether it stopped early or not;
- checkpoint.npz and history.json are rewritten after each epoch (at most once a second for
  very short epochs, timed from the end of the last save, and so that saving takes at most 1% of
  the run; always after the last one), so a resume restarts from an epoch boundary;
- only checkpoint.npz is fsynced (it holds the weights, the best epoch's, the optimizer and the
  history): weights.npz, history.json and normalization.npz are replaced atomically but may be
  lost to a power cut, and `--resume` on the checkpoint writes them again;
- normalization.npz (the training split's statistics) is written with weights.npz when the
  recipe normalises, and a stale one is removed when it does not;
- a non-finite loss stops the run at once; the last checkpoint written is kept;
- Ctrl-C stops the run, writes weights.npz (the weights of that moment) and history.json, and
  leaves the checkpoint of the last saved epoch for `--resume`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netspec import runs
from netspec.arrays import save_arrays
from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.ir import Analysis
from netspec.losses import LOSSES
from netspec.ops.base import Array
from netspec.recipe import DataSpec, TrainSpec
from netspec.training.batching import Batches
from netspec.training.contracts import (
    EpochHook,
    FitResult,
    Progress,
    Stopped,
    Trainer,
    TrainerFactory,
)
from netspec.training.evaluate import score
from netspec.training.metrics import compute_metrics
from netspec.training.named import Named, concat, named_scores
from netspec.training.plan import (
    Splits,
    check_recipe,
    io_of,
    load_splits,
    metric_task,
    steps_per_epoch,
    streams,
    with_overrides,
)
from netspec.training.resume import (
    check_resumed_freeze,
    check_resumed_optimizer,
    check_resumed_split,
    resumed_seed,
)
from netspec.training.schedules import learning_rate
from netspec.training.starting import Start, refuse_with_resume
from netspec.training.stopping import Stopper, make_stopper

# Epochs shorter than this share one checkpoint write (the last epoch is always saved): a
# 5,000-epoch XOR run would otherwise spend its time in fsync and in rewriting the history.
CHECKPOINT_INTERVAL_S = 1.0
# ... and a slow save (a large model, a busy disk: each fsyncs the checkpoint, 5-15 ms here,
# and rewrites the history) waits longer, so that saving takes at most this share of the run.
SAVE_SHARE = 0.01


@dataclass
class _Run:
    """Everything one run's epochs share."""

    spec: TrainSpec
    trainer: Trainer
    splits: Splits
    rng: np.random.Generator
    stopper: Stopper | None
    record: runs.RunRecord
    out_dir: Path
    keep_best: bool
    writes: bool = True  # False on a data-parallel run's ranks other than 0: only one writes
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    saved_epoch: int | None = None  # the epoch out_dir's checkpoint holds; None: there is none
    batches: Batches | None = None  # see _batches


def _open_run(
    analysis: Analysis,
    spec: TrainSpec,
    out_dir: Path,
    make_trainer: TrainerFactory,
    data: DataSpec | None,
    overrides: dict[str, Any],
    resume_from: Path | None,
    writes: bool,
) -> _Run:
    """The run's recipe, data, trainer and early stopping; a resume's state loaded into them."""
    state, recorded = None, None
    seed = overrides.pop("seed", None)
    if resume_from is not None:
        state = runs.load_checkpoint(resume_from)
        recorded = runs.RunRecord.from_meta(state.meta, resume_from)
        if recorded is not None:
            seed = resumed_seed(recorded, seed, resume_from)
    spec = with_overrides(spec, seed=seed, **overrides)
    record = runs.RunRecord.of(spec, spec.optimizer.name)
    if state is not None and resume_from is not None:
        check_resumed_optimizer(
            state, recorded, spec.optimizer.name, spec.optimizer.slots, resume_from
        )
        check_resumed_split(recorded, record, resume_from)
        check_resumed_freeze(recorded, record, resume_from)
    check_recipe(spec, io_of(analysis))
    init_rng, data_rng, rng = streams(spec.seed)
    splits = load_splits(
        analysis, spec, data, data_rng, None if recorded is None else recorded.classes
    )
    record = dataclasses.replace(record, classes=splits.classes)
    stopper = make_stopper(spec, splits.val is not None)
    es = spec.early_stopping
    keep_best = stopper is not None and es is not None and es.restore_best
    trainer = make_trainer(analysis, spec, init_rng, rng)
    run = _Run(spec, trainer, splits, rng, stopper, record, out_dir, keep_best, writes)
    if writes:
        out_dir.mkdir(parents=True, exist_ok=True)
        runs.remove_stale_temporaries(out_dir)
    if state is not None and resume_from is not None:
        _restore(run, state, resume_from)
    return run


def _restore(run: _Run, state: runs.Checkpoint, path: Path) -> None:
    """A checked checkpoint's weights, optimizer state, random stream and early stopping."""
    expected = {k: tuple(v.shape) for k, v in run.trainer.params.items()}
    runs.check_weights(state.params, expected, f"checkpoint in {path}")
    if state.best is not None:  # what restore_best writes as weights.npz at the end
        runs.check_weights(state.best, expected, f"best epoch's weights (best/) in {path}")
    dtypes = {k: v.dtype for k, v in run.trainer.params.items()}
    params = {k: np.asarray(v, dtype=dtypes[k]) for k, v in state.params.items()}
    run.trainer.restore(params, state.optimizer)
    run.rng.bit_generator.state = state.meta["rng"]
    es = state.meta.get("early_stopping")
    if run.stopper is not None and es is not None:
        run.stopper.restore(es, state.best, str(path))
    run.start_epoch = int(state.meta["epoch"])
    if runs.checkpoint_file(path).resolve() == (run.out_dir / runs.CHECKPOINT).resolve():
        run.saved_epoch = run.start_epoch
    run.history = list(state.meta.get("history", []))


def _train_epoch(
    run: _Run, epoch: int, progress: Progress | None
) -> tuple[float, Array, Array, float]:
    """One pass over the training set: (mean loss, outputs, their targets, last lr)."""
    spec, trainer, batches = run.spec, run.trainer, _batches(run)
    steps, base_lr = len(batches), spec.optimizer.lr
    pairs, seen = batches.epoch(run.rng if spec.shuffle else None)
    total, done, outs, lr_now = 0.0, 0, [], base_lr
    for k, (x, y) in enumerate(pairs):
        lr_now = learning_rate(spec.schedule, base_lr, epoch + k / steps, spec.epochs)
        value, out = trainer.loss(x, y)
        if not math.isfinite(value):
            raise _diverged(run.out_dir, value, epoch, k, lr_now)
        trainer.update(lr_now)
        size = len(y)
        total += value * size
        done += size
        outs.append(out)
        if progress is not None:
            progress.batch_end(done, total / done)
    return total / done, outs[0] if len(outs) == 1 else concat(outs), seen, lr_now


def _batches(run: _Run) -> Batches:
    """The run's batches, over the training features where the trainer holds them once
    (torch's `resident`: on its device, indexed per batch), else over the arrays themselves."""
    if run.batches is None:
        train, hold = run.splits.train, getattr(run.trainer, "resident", None)
        x = train.x if hold is None else hold(train.x)
        size, _ = steps_per_epoch(run.spec, run.spec.optimizer, len(train))
        run.batches = Batches(x, train.y, size)
    return run.batches


def _diverged(out_dir: Path, value: float, epoch: int, step: int, lr: float) -> NetspecError:
    kept = out_dir / runs.CHECKPOINT
    return NetspecError.at(
        f"the loss became {value} at epoch {epoch + 1}, step {step + 1}; training "
        + (f"stopped; {kept} holds the last good epoch" if kept.is_file() else "stopped"),
        hint=f"lower the learning rate (now {lr:g}) or set clip_norm, e.g. clip_norm = 1.0",
        exit_code=EXIT_RUNTIME,
    )


def _scalars(values: dict[str, Any], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in values.items() if isinstance(v, float | int)}


def _epoch_record(run: _Run, epoch: int, progress: Progress | None) -> dict[str, Any]:
    """Train one epoch and score it: the history's record of it."""
    t0 = time.perf_counter()
    spec, loss = run.spec, LOSSES[run.spec.loss]
    if progress is not None:
        progress.epoch_start(epoch + 1, spec.epochs, len(run.splits.train))
    total, outs, seen, lr_now = _train_epoch(run, epoch, progress)
    record: dict[str, Any] = {"epoch": epoch + 1, "loss": total}
    if isinstance(outs, Named):  # each output's loss and metrics; `loss` is their sum
        record.update(_scalars(named_scores(spec, outs, seen), "") | {"loss": total})
    else:
        task = metric_task(spec, loss)
        record.update(_scalars(compute_metrics(spec.metrics, outs, seen, task), ""))
    record["val_loss"] = None
    val = run.splits.val
    if val is not None:
        record.update(_scalars(score(loss, spec, run.trainer.predict(val.x), val.y), "val_"))
    record["lr"] = lr_now
    record["seconds"] = round(time.perf_counter() - t0, 4)
    record["engine"] = run.trainer.engine
    record["device"] = run.trainer.device
    return record


def _save_epoch(run: _Run, epoch: int) -> None:
    """checkpoint.npz and history.json after `epoch` epochs, each replaced atomically."""
    n = len(run.splits.train)
    _, steps = steps_per_epoch(run.spec, run.spec.optimizer, n)
    stopper = run.stopper
    meta = {
        "run": run.record.to_json(),
        "epoch": epoch,
        "step": epoch * steps,
        "rng": run.rng.bit_generator.state,
        "history": run.history,
        "early_stopping": None if stopper is None else stopper.state(),
    }
    best = None if stopper is None else stopper.best_params
    checkpoint = runs.Checkpoint(run.trainer.params, run.trainer.optimizer_state(), meta, best)
    runs.save_checkpoint(run.out_dir / runs.CHECKPOINT, checkpoint)
    run.saved_epoch = epoch
    runs.write_history(run.out_dir, run.history)


def _save_wait(cost: float) -> float:
    """Seconds from the end of a save that took `cost` to the next; an interval of 0 asks for
    every epoch (the fault-injection and resume tests do), however slow the save."""
    if CHECKPOINT_INTERVAL_S <= 0:
        return 0.0
    return max(CHECKPOINT_INTERVAL_S, cost * (1 - SAVE_SHARE) / SAVE_SHARE)


def _epochs(run: _Run, progress: Progress | None, on_epoch: EpochHook | None) -> Stopped:
    """Every remaining epoch, until the last, early stopping, or Ctrl-C."""
    # From the run's start: a run shorter than the interval saves once, after its last epoch.
    last_save, save_cost = time.perf_counter(), 0.0
    if progress is not None:
        progress.run_start(run.trainer.engine, run.trainer.device)
    try:
        for epoch in range(run.start_epoch, run.spec.epochs):
            record = _epoch_record(run, epoch, progress)
            run.history.append(record)
            finished = False
            if run.stopper is not None:
                value = run.stopper.watched(record)
                finished = run.stopper.update(epoch + 1, value, run.trainer.params, run.keep_best)
            last = finished or epoch + 1 == run.spec.epochs
            wait = _save_wait(save_cost)
            if run.writes and (last or time.perf_counter() - last_save >= wait):
                start = time.perf_counter()
                _save_epoch(run, epoch + 1)
                last_save = time.perf_counter()  # from the end of the save: a slow save
                save_cost = last_save - start
                if on_epoch is not None and not last:  # must not make every later epoch save;
                    on_epoch(run.out_dir, run.history, run.stopper, False)  # fit draws the last
            if progress is not None:
                progress.epoch_end(record)
            if finished:
                return "early_stopping"
    except KeyboardInterrupt:
        if run.writes:
            runs.write_history(run.out_dir, run.history)
        return "interrupted"
    return "completed"


def fit(
    analysis: Analysis,
    spec: TrainSpec,
    out_dir: Path,
    make_trainer: TrainerFactory,
    *,
    data: DataSpec | None = None,
    epochs: int | None = None,
    batch: int | None = None,
    lr: float | None = None,
    seed: int | None = None,
    resume_from: Path | None = None,
    start: Start | None = None,
    progress: Progress | None = None,
    on_epoch: EpochHook | None = None,
    writes: bool = True,
) -> FitResult:
    """Train `analysis` by `spec` (overrides win), writing weights, history and checkpoints
    (unless not `writes`: a data-parallel rank other than 0 runs the same loop silently).

    A resumed run keeps the seed it was started with (its validation split must not change);
    `seed` may only repeat it. Its optimizer must be the one that wrote the checkpoint.
    `start` (training.starting: --init-weights) replaces the initial weights of a fresh run.
    """
    refuse_with_resume(start, resume_from)
    overrides = {"epochs": epochs, "batch": batch, "lr": lr, "seed": seed}
    run = _open_run(analysis, spec, out_dir, make_trainer, data, overrides, resume_from, writes)
    if start is not None:
        start.load_into(run.trainer)
    # A non-finite loss is caught with a better message than numpy's overflow warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        stopped = _epochs(run, progress, on_epoch)
    params = run.trainer.params
    stopper = run.stopper
    if stopped != "interrupted" and run.keep_best and stopper and stopper.best_params is not None:
        params = stopper.best_params
    norm = run.splits.normalizer
    stats = None if norm is None else (np.asarray(norm.shift), np.asarray(norm.scale))
    if writes:
        runs.save_normalization(out_dir, stats)
        save_arrays(out_dir / runs.WEIGHTS, params, durable=False)  # the checkpoint is
    if writes and on_epoch is not None and stopped != "interrupted":
        on_epoch(out_dir, run.history, stopper, True)
    best = None if stopper is None else stopper.best_epoch
    classes, ignored = run.splits.classes, [] if start is None else start.ignored
    return FitResult(
        params, run.history, out_dir, stopped, best, run.saved_epoch, stats, classes, ignored
    )
