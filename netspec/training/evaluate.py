"""Scoring outputs: the loss and the recipe's metrics, on a validation split or on saved weights.

The outputs come from an engine's `predict`; nothing here runs a network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.ir import Analysis
from netspec.losses import LOSSES, Loss
from netspec.ops.base import Array, Params
from netspec.recipe import DataSpec, Metric, TrainSpec
from netspec.runs import (
    CHECKPOINT,
    RunRecord,
    check_weights,
    expected_shapes,
    load_meta,
    load_normalization,
    load_weights,
    without_torch_counters,
)
from netspec.training.data import Dataset, Normalizer, split
from netspec.training.metrics import compute_metrics
from netspec.training.named import Named, named_scores
from netspec.training.plan import (
    Classes,
    io_of,
    load_dataset,
    metric_task,
    normalised,
    streams,
)

Scores = dict[str, float | list[list[int]]]
# Raw outputs (logits) of a network in inference mode, for weights and inputs.
Predict = Callable[[Params, Array], Array]


def score(loss: Loss, spec: TrainSpec, outputs: Array, targets: Array) -> Scores:
    """The loss and every metric of the recipe on a set of outputs (of each output, and
    their weighted loss, for a network of several)."""
    if isinstance(outputs, Named):
        return named_scores(spec, outputs, targets)
    value, _ = loss(outputs, targets)
    result: Scores = {"loss": value}
    result.update(compute_metrics(spec.metrics, outputs, targets, metric_task(spec, loss)))
    return result


def _run_of(weights_path: Path) -> RunRecord | None:
    """The record of the run whose folder holds `weights_path`, if it has one."""
    path = weights_path.parent / CHECKPOINT
    if not path.is_file():
        return None
    try:
        return RunRecord.from_meta(load_meta(path), path)
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
    ignored: list[str] = field(default_factory=list)  # PyTorch's num_batches_tracked, dropped


def _evaluation_data(
    analysis: Analysis, spec: TrainSpec, weights_path: Path, data: DataSpec | None
) -> tuple[Dataset, str]:
    """The samples eval scores, normalised with the run's statistics, and how to name them."""
    io = io_of(analysis)
    source = data if data is not None else spec.data
    if source is None:
        raise NetspecError.at(
            f"train {spec.network} names no data to evaluate on",
            hint="pass --data PATH",
            exit_code=EXIT_RUNTIME,
        )
    if data is None and spec.val_data is not None:
        source = spec.val_data
    run = _run_of(weights_path)
    if run is not None and run.classes is not None:
        classes = Classes(run.classes, "the trained run")
    else:
        classes = Classes(spec.labels)
    ds, _ = load_dataset(source, io, spec, classes)
    what = ds.source
    if data is None and spec.val_data is None:
        seed, fraction = (spec.seed, spec.validation) if run is None else (run.seed, run.validation)
        if fraction > 0:
            _, ds = split(ds, fraction, streams(seed)[1])  # the run's own split
            what = f"the validation split ({fraction:g}, seed {seed}) of {ds.source}"
    mode = (spec.data if spec.data is not None else source).normalize
    stats = load_normalization(weights_path.parent, mode, io.input_dtype)
    ds = normalised(ds, None if stats is None else Normalizer(*stats), spec, io)
    return ds, what


def evaluate(
    analysis: Analysis,
    spec: TrainSpec,
    weights_path: Path,
    predict: Predict,
    *,
    data: DataSpec | None = None,
) -> Evaluation:
    """Score `weights_path` on `data` (all of it) or, by default, on the recipe's validation data.

    Normalisation uses the statistics saved beside the weights (normalization.npz), the ones the
    model was trained with. The validation split is the run's: its seed and fraction are read
    from the checkpoint beside the weights (a `--seed` override changes the split); weights
    without one are split by the recipe.
    """
    params, ignored = without_torch_counters(load_weights(weights_path))
    check_weights(params, expected_shapes(analysis), str(weights_path))
    params = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
    loss = LOSSES[spec.loss]
    ds, what = _evaluation_data(analysis, spec, weights_path, data)
    outputs = predict(params, ds.x)
    if isinstance(outputs, Named):
        scores = named_scores(spec, outputs, ds.y)
        numbers = {k: float(v) for k, v in scores.items() if isinstance(v, float | int)}
        return Evaluation(numbers, None, len(ds), what, ignored)
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
        ignored,
    )
