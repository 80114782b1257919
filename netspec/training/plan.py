"""What a run is made of before its first step: the network's input and output, the recipe with
its command-line overrides, the seeded random streams, and the data split and normalised."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from netspec.errors import EXIT_RUNTIME, EXIT_SPEC, EXIT_USAGE, NetspecError
from netspec.ir import Analysis
from netspec.losses import LOSSES, Loss
from netspec.recipe import DataSpec, Optimizer, TrainSpec
from netspec.training.data import (
    Dataset,
    Normalizer,
    class_indices,
    fit_normalizer,
    load_data,
    prepare_targets,
    split,
)
from netspec.training.metrics import CLASSIFICATION_METRICS
from netspec.training.named import first, load_named, map_first


@dataclass(frozen=True)
class Port:
    """One input or output of the network: its name, sample shape and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class Io:
    """The inputs and outputs a trainer feeds and scores; `input`..`output_shape` are the
    first of each, which is all a network of one input and one output has."""

    input: str
    input_shape: tuple[int, ...]
    input_dtype: str
    output: str
    output_shape: tuple[int, ...]
    inputs: tuple[Port, ...] = ()
    outputs: tuple[Port, ...] = ()

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.outputs)

    @property
    def several(self) -> bool:
        """More than one input or output: data are named arrays, one per port."""
        return len(self.inputs) > 1 or len(self.outputs) > 1


def io_of(analysis: Analysis) -> Io:
    net = analysis.network
    inputs = tuple(
        Port(n.name, analysis.shape(n.name), str(getattr(n.op, "dtype", "float32")))
        for n in net.inputs
    )
    outputs = tuple(Port(o, analysis.shape(o)) for o in net.outputs)
    first, out = inputs[0], outputs[0]
    return Io(first.name, first.shape, first.dtype, out.name, out.shape, inputs, outputs)


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


def with_overrides(
    spec: TrainSpec,
    *,
    epochs: int | None = None,
    batch: int | None = None,
    seed: int | None = None,
    lr: float | None = None,
) -> TrainSpec:
    """The recipe with the command line's values in place of its own (validated again)."""
    given: dict[str, Any] = {
        k: v for k, v in (("epochs", epochs), ("batch", batch), ("seed", seed)) if v is not None
    }
    if lr is not None:
        given["optimizer"] = spec.optimizer.model_dump() | {"lr": lr}
    if not given:
        return spec
    return TrainSpec.model_validate(spec.model_dump() | given)


def streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Three independent generators from one seed: initial weights, validation split, loop."""
    init, data, loop = np.random.SeedSequence(seed).spawn(3)
    return (np.random.default_rng(init), np.random.default_rng(data), np.random.default_rng(loop))


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


def check_engine(
    engine: str, device: str | None, nproc: int = 1, precision: str = "fp32", compile: bool = False
) -> None:
    """Refuse an unknown engine, and a device, processes or speed options the NumPy engine
    (one CPU process, float32) does not have."""
    if engine not in ("numpy", "torch"):
        raise NetspecError.at(
            f"unknown engine '{engine}'", hint="use numpy or torch", exit_code=EXIT_USAGE
        )
    if engine == "numpy" and device not in (None, "auto", "cpu"):
        raise NetspecError.at(
            f"the NumPy engine runs on the CPU only, not on '{device}'",
            hint="train on a GPU with --engine torch --device cuda",
            exit_code=EXIT_USAGE,
        )
    if engine == "numpy" and (precision != "fp32" or compile):
        flag = "--compile" if compile else f"--precision {precision}"
        raise NetspecError.at(
            f"{flag} is the torch engine's", hint="add --engine torch", exit_code=EXIT_USAGE
        )
    place = launched()
    if engine == "numpy" and (nproc > 1 or place is not None):
        where = f"--nproc {nproc}" if place is None else "under torchrun"
        raise NetspecError.at(
            f"the NumPy engine trains in one process ({where})",
            hint="train data-parallel with --engine torch",
            exit_code=EXIT_USAGE,
        )
    if nproc < 1 or (nproc > 1 and place is not None):
        raise NetspecError.at(
            f"--nproc {nproc}: "
            + ("at least 1" if nproc < 1 else "torchrun started the processes"),
            hint="drop --nproc" if place is not None else "use --nproc 1 or more",
            exit_code=EXIT_USAGE,
        )


@dataclass(frozen=True)
class Launched:
    """This process's place in a job an external launcher (torchrun) started."""

    rank: int
    world: int
    local_rank: int


LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched(environ: Mapping[str, str] = os.environ) -> Launched | None:
    """The launcher's rank and world size when torchrun (or any launcher that sets its
    environment) started this process; None for a plain `netspec train`."""
    if not all(k in environ for k in LAUNCHER_ENV):
        return None
    try:
        return Launched(
            int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ["LOCAL_RANK"])
        )
    except ValueError:
        raise NetspecError.at(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers, as torchrun sets them",
            exit_code=EXIT_USAGE,
        ) from None


def check_world(spec: TrainSpec, batch: int | None, nproc: int) -> None:
    """A global batch that the processes (`nproc`, or the launcher's world) cannot share
    equally is refused before start, with the nearest batch sizes that work (bgd's whole-set
    batch may split unevenly)."""
    place = launched()
    world = nproc if place is None else place.world
    flag = f"--nproc {nproc}" if place is None else f"WORLD_SIZE={world}"
    size = spec.batch if batch is None else batch
    if world <= 1 or spec.optimizer.name == "bgd" or size % world == 0:
        return
    below, above = size - size % world, size - size % world + world
    near = f"batch = {below} or {above}" if below else f"batch = {above}"
    raise NetspecError.at(
        f"the global batch of {size} samples does not split into {world} equal shards ({flag})",
        hint=f"use {near} (a multiple of {world}), e.g. --batch {below or above}",
        exit_code=EXIT_USAGE,
    )


def steps_per_epoch(spec: TrainSpec, optimizer: Optimizer, n: int) -> tuple[int, int]:
    """(batch size, steps per epoch): `bgd` takes the whole training set as one batch."""
    size = n if optimizer.name == "bgd" else min(spec.batch, n)
    return size, -(-n // size)


def metric_task(spec: TrainSpec, loss: Loss) -> str:
    """What the outputs are to the metrics: the loss's task, or a perceptron's 0/1 threshold."""
    return "threshold" if spec.perceptron_rule else loss.task


def check_recipe(spec: TrainSpec, io: Io) -> None:
    """Metrics the loss and the output can give, before the first epoch is spent."""
    tasks: set[str] = {LOSSES[n].task for n, _ in spec.output_losses(io.output_names).values()}
    if spec.perceptron_rule:
        tasks = {"threshold"}
    if tasks == {"regression"}:  # several outputs: each is scored by the metrics it can give
        bad = [m.name for m in spec.metrics if m.name in CLASSIFICATION_METRICS]
        if bad:
            raise NetspecError.at(
                f"metrics {', '.join(bad)} need a classification loss, not {spec.loss}",
                hint="use mse, mae or r2 for regression",
                exit_code=EXIT_SPEC,
            )
        return
    if len(io.outputs) > 1:
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


@dataclass(frozen=True)
class Splits:
    train: Dataset
    val: Dataset | None
    normalizer: Normalizer | None
    # The class names text labels were mapped from, index by index; None for numeric labels.
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Classes:
    """The class names text labels map to (None: the sorted set of the data's), and whose."""

    names: tuple[str, ...] | None
    origin: str = "the recipe's labels"


def load_dataset(
    source: DataSpec, io: Io, spec: TrainSpec, classes: Classes | None = None
) -> tuple[Dataset, tuple[str, ...] | None]:
    """One data source as the network and the loss want it (not normalised), and the class
    names its text labels were mapped from (None when its labels are numbers)."""
    if io.several:
        return load_named(source, io, spec), None
    loss = LOSSES[spec.loss]
    d = load_data(source, io.input_shape, io.input_dtype)
    if spec.targets == "inputs":  # made the normalised features by `normalised`
        return normalised(d, None, spec, io), None
    y, names = d.y, None
    if y.dtype.kind == "U":
        given = classes if classes is not None else Classes(None)
        y, names = class_indices(y, given.names, d.source, given.origin)
    ignore = spec.ignore_index if loss.per_position else None
    y = prepare_targets(
        y, io.output_shape, loss.task, d.source, soft=loss.soft_targets, ignore_index=ignore
    )
    return Dataset(d.x, y, d.source), names


def load_splits(
    analysis: Analysis,
    spec: TrainSpec,
    data: DataSpec | None,
    rng: np.random.Generator,
    classes: tuple[str, ...] | None = None,
) -> Splits:
    """Training and validation data as the network and the loss want them, normalised; text
    labels are mapped by `classes` (a resumed run's), else the recipe's labels, else by the
    sorted set of the training data's."""
    io = io_of(analysis)
    source = data if data is not None else spec.data
    if source is None:
        raise NetspecError.at(
            f"train {spec.network} names no data",
            hint='add `data = "file.npz"` to the train section, or pass --data PATH',
            exit_code=EXIT_RUNTIME,
        )
    given = Classes(spec.labels) if classes is None else Classes(classes, "the resumed run")
    train, names = load_dataset(source, io, spec, given)
    val: Dataset | None = None
    if spec.val_data is not None:
        # The training data's classes, so that a name means the same index in both.
        if names is not None and given.names is None:
            given = Classes(names, "the training data")
        val, _ = load_dataset(spec.val_data, io, spec, given)
    elif spec.validation > 0:
        train, val = split(train, spec.validation, rng)
    normalizer = fit_normalizer(first(train.x), source.normalize)
    train = normalised(train, normalizer, spec, io)
    val = None if val is None else normalised(val, normalizer, spec, io)
    return Splits(train, val, normalizer, names)


def normalised(ds: Dataset, normalizer: Normalizer | None, spec: TrainSpec, io: Io) -> Dataset:
    """The first input normalised, as export and predict apply it; with `targets = inputs` the
    targets are those normalised features, so an autoencoder learns to give back what it sees."""
    x = ds.x if normalizer is None else map_first(ds.x, normalizer)
    y = ds.y
    if spec.targets == "inputs":
        y = prepare_targets(x, io.output_shape, LOSSES[spec.loss].task, ds.source)
    return Dataset(x, y, ds.source)
