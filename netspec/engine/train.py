"""The training loop: mini-batches, penalties, clipping, schedule, early stopping, checkpoints.

A run is seeded by `spec.seed` and bit-for-bit repeatable: one SeedSequence is split into three
streams, for the initial weights, the validation split and the loop (shuffling, dropout), and
the loop's bit-generator state is checkpointed after every epoch, so `resume` continues exactly
where an interrupted run stopped.

Choices a user may want to know:

- losses and metrics are per-sample means; the epoch's `loss` is the mean over its batches of
  the data loss (without the penalty), weighted by batch size, with the network in training mode;
- `l1` and `l2` add ``l1 * sum|w| + l2 * sum w^2`` (Keras's convention) over weights only: the
  arrays called `weight*` of layers that are not normalisation layers, never biases, batchnorm
  scales or running statistics;
- `clip_norm` rescales the gradient so its global L2 norm (over every trainable array) is at
  most that value;
- the schedule is evaluated before every step at the fractional epoch ``e + k / steps``;
- `bgd` trains on the whole training set as one batch per epoch, whatever `batch` says;
- early stopping watches `monitor` after each epoch; with `restore_best` the best epoch's weights
  are restored when the run ends, whether it stopped early or not;
- checkpoint.npz and history.json are rewritten after each epoch (at most once a second for
  very short epochs; always after the last one), so a resume restarts from an epoch boundary;
- normalization.npz (the training split's statistics) is written with weights.npz when the
  recipe normalises, and a stale one is removed when it does not;
- a non-finite loss stops the run at once; the last checkpoint written is kept;
- Ctrl-C stops the run, writes weights.npz (the weights of that moment) and history.json, and
  leaves the checkpoint of the last saved epoch for `--resume`.

The `step` activation (perceptron): its true derivative is zero, so by default its backward is
the straight-through estimator (the gradient passes unchanged). With ``perceptron_rule = true``,
a network whose only trainable layer feeds `step` is trained by Rosenblatt's rule instead (any
other network is refused): ``w += lr * (y - y_hat) x`` and ``b += lr * (y - y_hat)``, summed
over the batch, with the recipe's learning rate (and schedule) and no optimizer state.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from netspec.engine import checkpoint as ckpt
from netspec.engine.data import (
    Dataset,
    Normalizer,
    batches,
    fit_normalizer,
    load_data,
    prepare_targets,
    split,
)
from netspec.engine.executor import Executor, trainable_names
from netspec.engine.files import atomic_write_text
from netspec.engine.init import init_params
from netspec.engine.losses import LOSSES, Loss
from netspec.engine.metrics import CLASSIFICATION_METRICS, compute_metrics
from netspec.engine.optimizers import Optimizer, make_optimizer
from netspec.engine.schedules import learning_rate
from netspec.errors import EXIT_RUNTIME, EXIT_SPEC, NetspecError, suggest
from netspec.ir import Analysis
from netspec.ops.base import Array, Ctx, Params
from netspec.recipe import BGD, DataSpec, Metric, TrainSpec

EVAL_BATCH = 1024
# Epochs shorter than this share one checkpoint write (the last epoch is always saved): a
# 5,000-epoch XOR run would otherwise spend its time in fsync and in rewriting the history.
CHECKPOINT_INTERVAL_S = 1.0
MAX_METRICS = frozenset({"accuracy", "precision", "recall", "f1", "r2"})


class Progress(Protocol):
    """What the loop reports as it goes (the CLI draws a progress bar from it)."""

    def epoch_start(self, epoch: int, epochs: int, samples: int) -> None: ...

    def batch_end(self, samples_done: int, running_loss: float) -> None: ...

    def epoch_end(self, record: dict[str, Any]) -> None: ...


@dataclass
class FitResult:
    params: Params
    history: list[dict[str, Any]]
    out_dir: Path
    stopped: Literal["completed", "early_stopping", "interrupted"]
    best_epoch: int | None = None
    # (shift, scale) the inputs were normalised with; `api.export(..., normalization=...)`
    # builds it into an ONNX model so that the model takes raw inputs.
    normalization: tuple[Array, Array] | None = None

    @property
    def weights_path(self) -> Path:
        return self.out_dir / ckpt.WEIGHTS

    @property
    def history_path(self) -> Path:
        return self.out_dir / ckpt.HISTORY

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / ckpt.CHECKPOINT


# ---- the network's single input and output ------------------------------------------------------


@dataclass(frozen=True)
class Io:
    """The input and output a trainer feeds and scores (one of each)."""

    input: str
    input_shape: tuple[int, ...]
    input_dtype: str
    output: str
    output_shape: tuple[int, ...]


def io_of(analysis: Analysis) -> Io:
    net = analysis.network
    inputs, outputs = net.inputs, net.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise NetspecError.at(
            f"network {net.name} has {len(inputs)} input(s) and {len(outputs)} output(s); "
            "the trainer handles one of each",
            exit_code=EXIT_SPEC,
        )
    node = inputs[0]
    return Io(
        input=node.name,
        input_shape=analysis.shape(node.name),
        input_dtype=str(getattr(node.op, "dtype", "float32")),
        output=outputs[0],
        output_shape=analysis.shape(outputs[0]),
    )


def require_recipe(analysis: Analysis) -> TrainSpec:
    """The network's train section, or a spec error saying how to write one."""
    spec = analysis.network.train
    if spec is None:
        name = analysis.network.name
        raise NetspecError.at(
            f"network {name} has no train section",
            hint=f'add `train {name} {{ data = "file.npz"  loss = cross_entropy }}` to the spec',
            exit_code=EXIT_SPEC,
        )
    return spec


# ---- data --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Splits:
    train: Dataset
    val: Dataset | None
    normalizer: Normalizer | None


def load_splits(
    analysis: Analysis, spec: TrainSpec, data: DataSpec | None, rng: np.random.Generator
) -> Splits:
    """Training and validation data as the network and the loss want them, normalised."""
    io = io_of(analysis)
    source = data if data is not None else spec.data
    if source is None:
        raise NetspecError.at(
            f"train {spec.network} names no data",
            hint='add `data = "file.npz"` to the train section, or pass --data PATH',
            exit_code=EXIT_RUNTIME,
        )
    loss = LOSSES[spec.loss]

    def load(s: DataSpec) -> Dataset:
        d = load_data(s, io.input_shape, io.input_dtype)
        y = prepare_targets(d.y, io.output_shape, loss.task, d.source, soft=loss.soft_targets)
        return Dataset(d.x, y, d.source)

    train = load(source)
    val: Dataset | None = None
    if spec.val_data is not None:
        val = load(spec.val_data)
    elif spec.validation > 0:
        train, val = split(train, spec.validation, rng)
    normalizer = fit_normalizer(train.x, source.normalize)
    if normalizer is not None:
        train = Dataset(normalizer(train.x), train.y, train.source)
        if val is not None:
            val = Dataset(normalizer(val.x), val.y, val.source)
    return Splits(train, val, normalizer)


# ---- evaluation ----------------------------------------------------------------------------------


def predict(executor: Executor, io: Io, params: Params, x: Array) -> Array:
    """Raw outputs (logits) in inference mode, in batches."""
    ctx = Ctx(train=False)
    outs = [
        executor.forward({io.input: x[i : i + EVAL_BATCH]}, params, ctx)[0][io.output]
        for i in range(0, len(x), EVAL_BATCH)
    ]
    return np.concatenate(outs)


def score(
    loss: Loss, spec: TrainSpec, outputs: Array, targets: Array
) -> dict[str, float | list[list[int]]]:
    """The loss and every metric of the recipe on a set of outputs."""
    value, _ = loss(outputs, targets)
    result: dict[str, float | list[list[int]]] = {"loss": value}
    result.update(compute_metrics(spec.metrics, outputs, targets, metric_task(spec, loss)))
    return result


def metric_task(spec: TrainSpec, loss: Loss) -> str:
    """What the outputs are to the metrics: the loss's task, or a perceptron's 0/1 threshold."""
    return "threshold" if spec.perceptron_rule else loss.task


# ---- penalties, clipping, the perceptron -------------------------------------------------------


def penalised_names(analysis: Analysis) -> list[str]:
    """Trainable weights (not biases, not normalisation parameters) that l1/l2 apply to.

    Walked per node: a global name cannot be split back into node and local name, as both may
    hold dots (a block's `stage1.0.conv1`, bidirectional's `fwd.weight_ih`).
    """
    ops = {n.name: n.op for n in analysis.network.nodes}
    return sorted(
        f"{name}.{local}"
        for name, info in analysis.layers.items()
        if ops[name].category != "norm"
        for local in info.param_shapes
        if local.rpartition(".")[2].startswith("weight")
    )


def _penalty(params: Params, grads: Params, names: Sequence[str], l1: float, l2: float) -> float:
    total = 0.0
    for name in names:
        w = params[name]
        if l1:
            total += l1 * float(np.abs(w).sum())
            grads[name] = grads[name] + l1 * np.sign(w)
        if l2:
            total += l2 * float((w * w).sum())
            grads[name] = grads[name] + 2 * l2 * w
    return total


def _clip(grads: Params, max_norm: float) -> None:
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    if norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for name in grads:
            grads[name] = grads[name] * np.asarray(scale, dtype=grads[name].dtype)


def perceptron_layer(analysis: Analysis) -> str | None:
    """The layer a perceptron rule trains: the only trainable one, feeding a threshold unit.

    A threshold unit is an op without a useful derivative (`step`); no op is named here.
    """
    trainable = {name for name, info in analysis.layers.items() if info.param_shapes}
    if len(trainable) != 1:
        return None
    (layer,) = trainable
    consumers = [n for n in analysis.network.nodes if layer in n.inputs]
    if len(consumers) == 1 and not consumers[0].op.differentiable:
        return layer
    return None


# ---- early stopping ------------------------------------------------------------------------------


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
        finite never counts as best (NaN compares false with everything after it)."""
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


def _stopper(spec: TrainSpec, has_val: bool) -> Stopper | None:
    es = spec.early_stopping
    if es is None:
        return None
    if es.monitor.startswith("val_") and not has_val:
        raise NetspecError.at(
            f"early stopping monitors {es.monitor} but there is no validation data",
            hint="hold some out with `validation = 0.2`, give `val_data`, or monitor `loss`",
            exit_code=EXIT_SPEC,
        )
    known = _monitorable(spec, has_val)
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


def _monitorable(spec: TrainSpec, has_val: bool) -> list[str]:
    """The per-epoch numbers a run records that early stopping may watch."""
    names = ["loss"] + [
        f"top_{m.k}_accuracy" if m.name == "top_k" else m.name
        for m in spec.metrics
        if m.name != "confusion"  # a matrix, not a number
    ]
    return names + [f"val_{n}" for n in names] if has_val else names


# ---- the loop ------------------------------------------------------------------------------------


def _check_recipe(spec: TrainSpec, loss: Loss, io: Io) -> None:
    if metric_task(spec, loss) == "regression":
        bad = [m.name for m in spec.metrics if m.name in CLASSIFICATION_METRICS]
        if bad:
            raise NetspecError.at(
                f"metrics {', '.join(bad)} need a classification loss, not {spec.loss}",
                hint="use mse, mae or r2 for regression",
                exit_code=EXIT_SPEC,
            )
        return
    units = io.output_shape[-1] if io.output_shape else 1
    classes = 2 if units == 1 else units  # one sigmoid unit: two classes
    for m in spec.metrics:
        if m.name == "top_k" and m.k >= classes:
            raise NetspecError.at(
                f"top_k(k={m.k}) on {classes} classes is always 1: every class is in the top "
                f"{m.k} (output shape {list(io.output_shape)})",
                hint=f"use k < {classes}"
                + (", e.g. top_k(k=2)" if classes > 2 else " or accuracy"),
                exit_code=EXIT_SPEC,
            )


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    init, data, loop = np.random.SeedSequence(seed).spawn(3)
    return (np.random.default_rng(init), np.random.default_rng(data), np.random.default_rng(loop))


def _scalars(values: dict[str, Any], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in values.items() if isinstance(v, float | int)}


def fit(
    analysis: Analysis,
    spec: TrainSpec,
    out_dir: Path,
    *,
    data: DataSpec | None = None,
    epochs: int | None = None,
    batch: int | None = None,
    lr: float | None = None,
    seed: int | None = None,
    resume_from: Path | None = None,
    progress: Progress | None = None,
) -> FitResult:
    """Train `analysis` by `spec` (overrides win), writing weights, history and checkpoints.

    A resumed run keeps the seed it was started with (its validation split must not change);
    `seed` may only repeat it. Its optimizer must be the one that wrote the checkpoint.
    """
    state, recorded = None, None
    if resume_from is not None:
        state = ckpt.load_checkpoint(resume_from)
        recorded = RunRecord.from_meta(state.meta, resume_from)
        if recorded is not None:
            seed = _resumed_seed(recorded, seed, resume_from)
    if epochs is not None or batch is not None or seed is not None:
        spec = TrainSpec.model_validate(
            spec.model_dump()
            | {
                k: v
                for k, v in (("epochs", epochs), ("batch", batch), ("seed", seed))
                if v is not None
            }
        )
    opt_spec = spec.optimizer
    if lr is not None:
        opt_spec = type(opt_spec).model_validate(opt_spec.model_dump() | {"lr": lr})
    optimizer = make_optimizer(opt_spec)
    run = RunRecord.of(spec, opt_spec.name)
    if state is not None and resume_from is not None:
        _check_resumed_optimizer(state, recorded, opt_spec.name, optimizer.slots, resume_from)
        _check_resumed_split(recorded, run, resume_from)
    loss = LOSSES[spec.loss]
    io = io_of(analysis)
    _check_recipe(spec, loss, io)
    init_rng, data_rng, rng = _streams(spec.seed)
    splits = load_splits(analysis, spec, data, data_rng)
    train, val = splits.train, splits.val
    stopper = _stopper(spec, val is not None)
    keep_best = stopper is not None and spec.early_stopping is not None
    keep_best = keep_best and spec.early_stopping.restore_best  # type: ignore[union-attr]

    executor = Executor(analysis, np.float32)
    params = init_params(analysis, init_rng, np.float32)
    names = trainable_names(analysis)
    penalised = penalised_names(analysis)
    perceptron = perceptron_layer(analysis) if spec.perceptron_rule else None
    if spec.perceptron_rule and perceptron is None:
        raise NetspecError.at(
            "perceptron_rule = true needs a network whose only trainable layer feeds a "
            "threshold unit (e.g. `dense(1) step`)",
            hint="remove perceptron_rule to train by gradient descent (step's backward is "
            "straight-through)",
        )
    history: list[dict[str, Any]] = []
    start_epoch = 0
    out_dir.mkdir(parents=True, exist_ok=True)

    if state is not None and resume_from is not None:
        params = _restore(state, resume_from, params, optimizer, rng, stopper)
        start_epoch = int(state.meta["epoch"])
        history = list(state.meta.get("history", []))

    n = len(train)
    size = n if isinstance(opt_spec, BGD) else min(spec.batch, n)
    steps = math.ceil(n / size)
    stopped: Literal["completed", "early_stopping", "interrupted"] = "completed"
    ctx = Ctx(train=True, rng=rng)
    last_save = -math.inf

    def step_epoch(epoch: int) -> tuple[float, Array, Array, float]:
        """One pass over the training set: (mean loss, outputs, their targets, last lr)."""
        order = batches(n, size, rng if spec.shuffle else None)
        total, done, outs, lr_now = 0.0, 0, [], opt_spec.lr
        for k, index in enumerate(order):
            lr_now = learning_rate(spec.schedule, opt_spec.lr, epoch + k / steps, spec.epochs)
            xb, yb = train.x[index], train.y[index]
            out, tape = executor.forward({io.input: xb}, params, ctx)
            value, dout = loss(out[io.output], yb)
            if not math.isfinite(value):
                kept = out_dir / ckpt.CHECKPOINT
                raise NetspecError.at(
                    f"the loss became {value} at epoch {epoch + 1}, step {k + 1}; training "
                    + (
                        f"stopped; {kept} holds the last good epoch"
                        if kept.is_file()
                        else "stopped"
                    ),
                    hint=f"lower the learning rate (now {lr_now:g}) or set clip_norm, "
                    "e.g. clip_norm = 1.0",
                    exit_code=EXIT_RUNTIME,
                )
            if perceptron is not None:
                _perceptron_step(executor, tape, params, io.output, out[io.output], yb, lr_now)
            else:
                grads = executor.backward(tape, {io.output: dout}, params)
                if spec.l1 or spec.l2:
                    _penalty(params, grads, penalised, spec.l1, spec.l2)
                if spec.clip_norm is not None:
                    _clip(grads, spec.clip_norm)
                optimizer.step(params, {name: grads[name] for name in names}, lr_now)
            del tape
            total += value * len(index)
            done += len(index)
            outs.append(out[io.output])
            if progress is not None:
                progress.batch_end(done, total / done)
        seen = train.y[np.concatenate(order)]  # targets in the order the batches ran
        return total / done, np.concatenate(outs), seen, lr_now

    # A non-finite loss is caught below with a better message than numpy overflow warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            for epoch in range(start_epoch, spec.epochs):
                t0 = time.perf_counter()
                if progress is not None:
                    progress.epoch_start(epoch + 1, spec.epochs, n)
                total, outs, seen, lr_now = step_epoch(epoch)
                record: dict[str, Any] = {"epoch": epoch + 1, "loss": total}
                train_scores = compute_metrics(spec.metrics, outs, seen, metric_task(spec, loss))
                record.update(_scalars(train_scores, ""))
                record["val_loss"] = None
                if val is not None:
                    val_scores = score(loss, spec, predict(executor, io, params, val.x), val.y)
                    record.update(_scalars(val_scores, "val_"))
                record["lr"] = lr_now
                record["seconds"] = round(time.perf_counter() - t0, 4)
                history.append(record)
                finished = False
                if stopper is not None:
                    watched = record.get(stopper.monitor)
                    if not isinstance(watched, float | int):
                        raise NetspecError.at(
                            f"early stopping monitors '{stopper.monitor}', which this run does not "
                            f"compute",
                            hint="choose one of: "
                            + ", ".join(k for k, v in record.items() if isinstance(v, float)),
                            exit_code=EXIT_SPEC,
                        )
                    finished = stopper.update(epoch + 1, float(watched), params, keep_best)
                now = time.perf_counter()
                if finished or epoch + 1 == spec.epochs or now - last_save >= CHECKPOINT_INTERVAL_S:
                    _save_epoch(
                        out_dir,
                        params,
                        optimizer.state_dict(),
                        rng,
                        epoch + 1,
                        steps,
                        history,
                        stopper,
                        run,
                    )
                    last_save = now
                if progress is not None:
                    progress.epoch_end(record)
                if finished:
                    stopped = "early_stopping"
                    break
        except KeyboardInterrupt:
            stopped = "interrupted"
            atomic_write_text(out_dir / ckpt.HISTORY, _json(history))
    restore = stopped != "interrupted" and keep_best
    if restore and stopper is not None and stopper.best_params is not None:
        params = stopper.best_params
    norm = splits.normalizer
    _save_normalization(out_dir, norm)
    ckpt.save_arrays(out_dir / ckpt.WEIGHTS, params)
    return FitResult(
        params,
        history,
        out_dir,
        stopped,
        None if stopper is None else stopper.best_epoch,
        None if norm is None else (np.asarray(norm.shift), np.asarray(norm.scale)),
    )


@dataclass(frozen=True)
class RunRecord:
    """What a run was made with that its recipe may not say (a `--seed` override), kept in
    each checkpoint's meta under "run": eval rebuilds the run's validation split from it, and
    resume refuses an optimizer whose state would be misread (Adam's `v` is not momentum's)."""

    seed: int
    validation: float  # the fraction split off the training data; 0 with val_data
    optimizer: str | None = None  # the recipe's optimizer name; None in older checkpoints

    @classmethod
    def of(cls, spec: TrainSpec, optimizer: str) -> RunRecord:
        """The record of a run made by `spec` (its overrides applied)."""
        return cls(spec.seed, 0.0 if spec.val_data is not None else spec.validation, optimizer)

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "validation": self.validation, "optimizer": self.optimizer}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], path: Path) -> RunRecord | None:
        """The record of a checkpoint's meta; None for checkpoints written before it existed."""
        run = meta.get("run")
        if run is None:
            return None
        seed, fraction, optimizer = (
            (run.get("seed"), run.get("validation"), run.get("optimizer"))
            if isinstance(run, dict)
            else (None, None, None)
        )
        if not (
            isinstance(seed, int)
            and not isinstance(seed, bool)
            and seed >= 0
            and isinstance(fraction, float | int)
            and 0 <= fraction < 1
            and (optimizer is None or isinstance(optimizer, str))
        ):
            raise NetspecError.at(
                f"{path} is not a netspec checkpoint: its run record {json.dumps(run)[:80]} "
                "lacks a valid seed, validation fraction or optimizer name",
                exit_code=EXIT_RUNTIME,
            )
        return cls(seed, float(fraction), optimizer)


def _resumed_seed(run: RunRecord, seed: int | None, path: Path) -> int:
    """The seed a resumed run continues with: its own, recorded in the checkpoint (an older
    checkpoint has no record: the caller's seed or the recipe's then, as before)."""
    if seed is not None and seed != run.seed:
        raise NetspecError.at(
            f"the run in {path} was seeded with {run.seed}, not {seed}: another seed would "
            "split off another validation set and train on samples it validated on",
            hint=f"resume without --seed (or with --seed {run.seed}), or start a fresh run "
            "with --out",
            exit_code=EXIT_RUNTIME,
        )
    return run.seed


def _restore(
    state: ckpt.Checkpoint,
    path: Path,
    params: Params,
    optimizer: Optimizer,
    rng: np.random.Generator,
    stopper: Stopper | None,
) -> Params:
    """Load a checked checkpoint's weights, optimizer state, random stream and early-stopping
    state into a fresh run; returns the weights."""
    expected = {k: tuple(v.shape) for k, v in params.items()}
    ckpt.check_weights(state.params, expected, f"checkpoint in {path}")
    restored = {k: np.asarray(v, dtype=params[k].dtype) for k, v in state.params.items()}
    optimizer.load_state_dict(state.optimizer)
    rng.bit_generator.state = state.meta["rng"]
    es = state.meta.get("early_stopping")
    if stopper is not None and es is not None:
        watched = es.get("monitor", stopper.monitor)  # recorded since stop 12
        if watched != stopper.monitor:  # its best is of another quantity
            raise NetspecError.at(
                f"the run in {path} stopped early on {watched}; the recipe now monitors "
                f"{stopper.monitor}, whose values its best cannot be compared with",
                hint=f'resume with early_stopping(monitor="{watched}", ...), or start a fresh '
                "run with --out",
                exit_code=EXIT_RUNTIME,
            )
        stopper.best, stopper.best_epoch, stopper.wait = es["best"], es["best_epoch"], es["wait"]
        stopper.best_params = state.best
    return restored


def _check_resumed_split(recorded: RunRecord | None, run: RunRecord, path: Path) -> None:
    """Refuse a resume whose held-out fraction changed: the split holds out the end of one
    seeded permutation, so another fraction would validate on samples the run trained on."""
    held_out = run.validation
    if recorded is None or recorded.validation == held_out:
        return
    was = f"validation = {recorded.validation:g}" if recorded.validation else "val_data"
    now = f"validation = {held_out:g}" if held_out else "val_data"
    raise NetspecError.at(
        f"the run in {path} held out its validation data with {was}; the recipe now says "
        f"{now}, which would validate on samples the run trained on",
        hint=f"resume with {was} in the recipe, or start a fresh run with --out",
        exit_code=EXIT_RUNTIME,
    )


def _check_resumed_optimizer(
    state: ckpt.Checkpoint,
    run: RunRecord | None,
    name: str,
    slots: Sequence[str],
    path: Path,
) -> None:
    """Refuse to load another optimizer's state: the names of the per-parameter arrays overlap
    (Adam's and momentum's `v`, AdaGrad's and RMSProp's `r`), so it would load without error
    and be applied as something else. Checkpoints without the record are told by those names."""
    hint = "resume with the same optimizer or start a fresh run with --out"
    if run is not None and run.optimizer is not None:
        if run.optimizer != name:
            raise NetspecError.at(
                f"the checkpoint in {path} was written by {run.optimizer}; the recipe now uses "
                f"{name}",
                hint=f"{hint} (optimizer = {run.optimizer}(...) continues this run)",
                exit_code=EXIT_RUNTIME,
            )
        return
    saved = {key.partition(".")[0] for key in state.optimizer if "." in key}
    # Equal sets, not a subset: momentum's {v} fits inside Adam's {m, v}, and loading it
    # would hand Adam a velocity as its second moment.
    if saved and saved != set(slots):
        keeps = f"which keeps {', '.join(slots)}" if slots else "which keeps no state"
        raise NetspecError.at(
            f"the checkpoint in {path} holds optimizer state {', '.join(sorted(saved))}, "
            f"written by another optimizer; the recipe now uses {name}, {keeps}",
            hint=hint,
            exit_code=EXIT_RUNTIME,
        )


def _save_normalization(out_dir: Path, normalizer: Normalizer | None) -> None:
    """Make normalization.npz describe the weights.npz written next: predict and export apply
    the statistics beside the weights, so a run that does not normalise removes a file left by
    an earlier run into the same folder (that file only; a folder of that name is not ours).

    Called just before the weights are written, so that a run that fails midway leaves the
    previous weights with their own statistics.
    """
    path = out_dir / ckpt.NORMALIZATION
    if normalizer is not None:
        ckpt.save_arrays(
            path, {"shift": np.asarray(normalizer.shift), "scale": np.asarray(normalizer.scale)}
        )
    elif path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)  # one atomic unlink; a link goes, never its target


def _perceptron_step(
    executor: Executor,
    tape: Any,
    params: Params,
    output: str,
    y_hat: Array,
    target: Array,
    lr: float,
) -> None:
    """Rosenblatt's rule, w += lr (y - y_hat) x, as one plain gradient step.

    The threshold unit's backward is straight-through, so backpropagating (y_hat - y) gives the
    layer exactly (y_hat - y)^T x for its weights and the summed error for its bias.
    """
    err = (y_hat - target.reshape(y_hat.shape)).astype(y_hat.dtype)
    for name, grad in executor.backward(tape, {output: err}, params).items():
        params[name] -= np.asarray(lr, dtype=grad.dtype) * grad


def _save_epoch(
    out_dir: Path,
    params: Params,
    optimizer: dict[str, Array],
    rng: np.random.Generator,
    epoch: int,
    steps: int,
    history: list[dict[str, Any]],
    stopper: Stopper | None,
    run: RunRecord,
) -> None:
    meta = {
        "run": run.to_json(),
        "epoch": epoch,
        "step": epoch * steps,
        "rng": rng.bit_generator.state,
        "history": history,
        "early_stopping": None if stopper is None else stopper.state(),
    }
    best = None if stopper is None else stopper.best_params
    ckpt.save_checkpoint(out_dir / ckpt.CHECKPOINT, ckpt.Checkpoint(params, optimizer, meta, best))
    atomic_write_text(out_dir / ckpt.HISTORY, _json(history))
    from netspec.viz.curves import after_epoch  # matplotlib itself only loads when installed

    after_epoch(
        out_dir,
        history,
        None if stopper is None else stopper.best_epoch,
        None if stopper is None else stopper.monitor,
        stopper is not None and stopper.wait > stopper.patience,
    )


def _json(history: list[dict[str, Any]]) -> str:
    """history.json: a value that is not finite (a validation loss that overflowed) is null,
    as JSON has no NaN; readers already take null for "not measured" (val_loss without
    validation data)."""
    clean = [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()}
        for r in history
    ]
    return json.dumps(clean, indent=1, allow_nan=False) + "\n"


# ---- evaluation of saved weights -----------------------------------------------------------------


def _run_of(weights_path: Path) -> RunRecord | None:
    """The record of the run whose folder holds `weights_path`, if it has one."""
    path = weights_path.parent / ckpt.CHECKPOINT
    if not path.is_file():
        return None
    try:
        return RunRecord.from_meta(ckpt.load_meta(path), path)
    except NetspecError as e:
        raise NetspecError.at(
            f"cannot read the run's seed from {path}: {e}",
            hint="eval rebuilds the run's validation split from it; move the broken checkpoint "
            "away to split by the recipe's seed instead, or pass --data",
            exit_code=EXIT_RUNTIME,
        ) from None


@dataclass(frozen=True)
class Evaluation:
    """Metrics of saved weights on one data set."""

    metrics: dict[str, float]
    confusion: list[list[int]] | None
    samples: int
    source: str


def expected_shapes(analysis: Analysis) -> dict[str, tuple[int, ...]]:
    """Every trainable and state array of the network by global name, with its shape."""
    out: dict[str, tuple[int, ...]] = {}
    for name, info in analysis.layers.items():
        for local, shape in (*info.param_shapes.items(), *info.state_shapes.items()):
            out[f"{name}.{local}"] = tuple(shape)
    return out


def evaluate(
    analysis: Analysis, spec: TrainSpec, weights_path: Path, *, data: DataSpec | None = None
) -> Evaluation:
    """Score `weights_path` on `data` (all of it) or, by default, on the recipe's validation data.

    Normalisation uses the statistics saved beside the weights (normalization.npz), the ones the
    model was trained with. The validation split is the run's: its seed and fraction are read
    from the checkpoint beside the weights (a `--seed` override changes the split); weights
    without one are split by the recipe.
    """
    params = ckpt.load_weights(weights_path)
    ckpt.check_weights(params, expected_shapes(analysis), str(weights_path))
    params = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
    io = io_of(analysis)
    loss = LOSSES[spec.loss]
    source = data if data is not None else spec.data
    if source is None:
        raise NetspecError.at(
            f"train {spec.network} names no data to evaluate on",
            hint="pass --data PATH",
            exit_code=EXIT_RUNTIME,
        )
    if data is None and spec.val_data is not None:
        source = spec.val_data
    ds = load_data(source, io.input_shape, io.input_dtype)
    y = prepare_targets(ds.y, io.output_shape, loss.task, ds.source, soft=loss.soft_targets)
    ds = Dataset(ds.x, y, ds.source)
    what = ds.source
    if data is None and spec.val_data is None:
        run = _run_of(weights_path)
        seed, fraction = (spec.seed, spec.validation) if run is None else (run.seed, run.validation)
        if fraction > 0:
            _, ds = split(ds, fraction, _streams(seed)[1])  # the run's own split
            what = f"the validation split ({fraction:g}, seed {seed}) of {ds.source}"
    mode = (spec.data if spec.data is not None else source).normalize
    stats = ckpt.load_normalization(weights_path.parent, mode, io.input_dtype)
    if stats is not None:
        ds = Dataset(Normalizer(*stats)(ds.x), ds.y, ds.source)
    outputs = predict(Executor(analysis, np.float32), io, params, ds.x)
    wanted = list(spec.metrics)
    names = {m.name for m in wanted}
    task = metric_task(spec, loss)
    if task != "regression":
        wanted += [Metric(name=n) for n in ("accuracy", "confusion") if n not in names]
    # `wanted` includes the recipe's metrics: computing `score` too would do them twice.
    scores = {"loss": loss(outputs, ds.y)[0]} | compute_metrics(wanted, outputs, ds.y, task)
    confusion = scores.pop("confusion", None)
    return Evaluation(
        {k: float(v) for k, v in scores.items() if isinstance(v, float | int)},
        confusion if isinstance(confusion, list) else None,
        len(ds),
        what,
    )
