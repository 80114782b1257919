"""What a run is made of before its first step: the network's input and output, the recipe with
its command-line overrides, the seeded random streams, and the data split and normalised."""

from __future__ import annotations

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
    fit_normalizer,
    load_data,
    prepare_targets,
    split,
)
from netspec.training.metrics import CLASSIFICATION_METRICS


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


def check_engine(engine: str, device: str | None) -> None:
    """Refuse an unknown engine, and a device the NumPy engine (CPU only) cannot run on."""
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


def steps_per_epoch(spec: TrainSpec, optimizer: Optimizer, n: int) -> tuple[int, int]:
    """(batch size, steps per epoch): `bgd` takes the whole training set as one batch."""
    size = n if optimizer.name == "bgd" else min(spec.batch, n)
    return size, -(-n // size)


def metric_task(spec: TrainSpec, loss: Loss) -> str:
    """What the outputs are to the metrics: the loss's task, or a perceptron's 0/1 threshold."""
    return "threshold" if spec.perceptron_rule else loss.task


def check_recipe(spec: TrainSpec, io: Io) -> None:
    """Metrics the loss and the output can give, before the first epoch is spent."""
    loss = LOSSES[spec.loss]
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


@dataclass(frozen=True)
class Splits:
    train: Dataset
    val: Dataset | None
    normalizer: Normalizer | None


def load_dataset(source: DataSpec, io: Io, loss: Loss) -> Dataset:
    """One data source as the network and the loss want it (not normalised)."""
    d = load_data(source, io.input_shape, io.input_dtype)
    y = prepare_targets(d.y, io.output_shape, loss.task, d.source, soft=loss.soft_targets)
    return Dataset(d.x, y, d.source)


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
    train = load_dataset(source, io, loss)
    val: Dataset | None = None
    if spec.val_data is not None:
        val = load_dataset(spec.val_data, io, loss)
    elif spec.validation > 0:
        train, val = split(train, spec.validation, rng)
    normalizer = fit_normalizer(train.x, source.normalize)
    if normalizer is not None:
        train = Dataset(normalizer(train.x), train.y, train.source)
        if val is not None:
            val = Dataset(normalizer(val.x), val.y, val.source)
    return Splits(train, val, normalizer)
