"""Training data as the network and the loss want it: features shaped and typed for the input,
targets in the loss's layout, the validation split, normalisation and batches.

The files are read by formats.py (.npz, .npy pairs, CSV and IDX), never unpickled, with sizes
checked from headers so a wrong 10 GB file fails in milliseconds with a message naming the
file, its sample shape and the network's input shape. Samples whose size matches but whose
layout differs (64 features for a [1, 8, 8] input) are reshaped.

Normalisation statistics come from the training split only, never from validation data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.losses import IGNORED, Task
from netspec.recipe import DataSpec
from netspec.training.formats import fit_input, format_of, read

Array = npt.NDArray[Any]
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Dataset:
    """Features (N, *input_shape) and targets (N, ...), aligned on the first axis; for a
    network of several inputs or outputs, training.named.Named arrays by name."""

    x: Any
    y: Any
    source: str = ""

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, index: Array) -> Dataset:
        return Dataset(self.x[index], self.y[index], self.source)


def _fail(message: str, hint: str | None = None) -> NetspecError:
    return NetspecError.at(message, hint=hint, exit_code=EXIT_RUNTIME)


def as_input(x: Array, input_shape: Shape, input_dtype: str, where: str) -> Array:
    fit_input(x.shape, input_shape, where)
    x = x.reshape((x.shape[0], *input_shape))  # layout only: the sizes already match
    if input_dtype == "int64":
        # Only numbers are ids: bool, complex, datetime and text would be cast silently into
        # integers (True -> 1, a date -> nanoseconds) and trained on as tokens.
        if x.dtype.kind not in "iuf":
            raise _fail(
                f"{where} has dtype {x.dtype}, but the network's input is int64 token ids",
                "save the ids as integers: x.astype(np.int64), after mapping text to a vocabulary",
            )
        if x.dtype.kind == "f" and not np.all(np.mod(x, 1) == 0):
            raise _fail(f"{where} holds fractional values but the network's input is int64")
        return x.astype(np.int64)
    if x.dtype.kind not in "biuf":
        raise _fail(f"{where} has dtype {x.dtype}; netspec reads numbers only")
    _finite(x, where, "features")
    return x.astype(np.float32)


def _finite(a: Array, where: str, what: str) -> None:
    """NaN or inf in the data would surface later as a NaN loss blamed on the learning rate."""
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        row = int(np.argwhere(~np.isfinite(a.reshape(a.shape[0], -1)))[0][0])
        raise _fail(
            f"{where}: the {what} hold NaN or infinite values (first at row {row})",
            "clean or impute the data before training",
        )


# How far a row of probabilities may sum from 1: float32 softmax outputs over hundreds of
# classes, or probabilities printed with 6 decimals, are off by well under this.
_SUM_TOLERANCE = 1e-4


def _class_rows(y: Array, soft: bool, where: str) -> Array:
    """(N, K) targets: class indices (N,) when every row is one-hot, the rows as float32 when
    they are probability distributions and `soft` allows it; anything else is refused by row."""
    rows = y.astype(np.float64)
    sums = rows.sum(axis=1)
    bad = (rows < 0).any(axis=1) | (rows == 0).all(axis=1) | (np.abs(sums - 1) > _SUM_TOLERANCE)
    if bad.any():
        i = int(np.argmax(bad))
        row = rows[i]
        if (row < 0).any():
            why = f"has a negative value ({row[row < 0][0]:g})"
        elif (row == 0).all():
            why = "is all zeros, so it names no class"
        else:
            why = f"sums to {sums[i]:g}, not 1"
        kinds = "one-hot rows, or rows of probabilities" if soft else "or one-hot rows"
        raise _fail(f"{where}: target row {i} {why}", f"give one integer class per sample, {kinds}")
    one_hot = ((rows == 0) | (rows == 1)).all(axis=1)
    if one_hot.all():
        return np.argmax(rows, axis=1)
    if soft:
        return rows.astype(np.float32)
    i = int(np.argmin(one_hot))
    shown = ", ".join(f"{v:g}" for v in rows[i][:8]) + (", ..." if rows.shape[1] > 8 else "")
    raise _fail(
        f"{where}: target row {i} holds probabilities [{shown}], not a one-hot class, "
        "and this loss needs one class per sample",
        "cross_entropy takes probability rows; for this loss give one integer class per "
        "sample or one-hot rows",
    )


def prepare_targets(
    y: Array,
    output_shape: Shape,
    task: Task,
    where: str,
    *,
    soft: bool = False,
    ignore_index: int | None = None,
) -> Array:
    """Targets in the loss's layout: class indices (N,) for classification ((N, T) for a
    [T, K] output: one class per position), (N, *out) otherwise.

    classification: integer labels in [0, classes), or one row per sample (or position) of
    `classes` values: one-hot rows become indices; rows of probabilities (non-negative, summing
    to 1) stay float32 when `soft` says the loss takes them (cross-entropy), and are refused
    otherwise; any other row (all zeros, negative, summing elsewhere) is refused. Labels equal
    to `ignore_index` (None: none) become losses.IGNORED, whatever their range. A
    single-output classifier (binary hinge) takes 0/1 or -1/1 targets like a binary one.
    """
    if y.dtype.kind not in "biuf":
        raise _fail(f"{where}: the targets have dtype {y.dtype}; netspec reads numbers only")
    _finite(y, where, "targets")
    if task == "binary" and y.size and (y.min() < 0 or y.max() > 1):
        raise _fail(
            f"{where}: binary targets must lie in [0, 1], got {y.min():g}..{y.max():g}",
            "binary_cross_entropy takes 0/1 labels (or probabilities)",
        )
    if task == "classification" and math.prod(output_shape) > 1:
        return _class_targets(y, output_shape, where, soft, ignore_index)
    per_sample = math.prod(output_shape)
    if math.prod(y.shape[1:]) != per_sample:
        raise _fail(
            f"{where}: targets of shape {list(y.shape[1:])} do not fit the network's output "
            f"{list(output_shape)}"
        )
    return y.reshape((y.shape[0], *output_shape)).astype(np.float32)


def _class_targets(
    y: Array, output_shape: Shape, where: str, soft: bool, ignore_index: int | None
) -> Array:
    """prepare_targets for a classifier of output [K] or [T, K]."""
    n, n_classes, positions = len(y), output_shape[-1], output_shape[:-1]
    if y.shape[1:] == output_shape and n_classes > 1:
        rows = _class_rows(y.reshape(-1, n_classes), soft, where)
        if rows.ndim == 2:
            return rows.reshape(y.shape)  # probabilities, for the loss as they are
        y = rows
    given = list(y.shape[1:])
    y = y.reshape(n, -1)
    if y.shape[1] != math.prod(positions):
        each = "sample" if not positions else f"position, {list(positions)} per sample,"
        raise _fail(
            f"{where}: labels of shape {given} do not fit a classifier with output "
            f"{list(output_shape)} ({n_classes} classes)",
            f"give one integer class per {each} or one-hot rows",
        )
    if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
        raise _fail(f"{where}: class labels must be whole numbers")
    labels = y.astype(np.int64)
    ignored = labels == ignore_index if ignore_index is not None else np.zeros_like(labels, bool)
    kept = labels[~ignored]
    if kept.size and (kept.min() < 0 or kept.max() >= n_classes):
        skip = "" if ignore_index is None else f" (ignore_index = {ignore_index} aside)"
        raise _fail(
            f"{where}: labels range over {int(kept.min())}..{int(kept.max())}{skip} but the "
            f"network has {n_classes} outputs, so classes 0..{n_classes - 1}",
            "make the last layer's size the number of classes"
            + ("" if ignore_index is None else ", or set ignore_index to the padding label"),
        )
    return np.where(ignored, IGNORED, labels).reshape(n, *positions)


def class_indices(
    y: Array, classes: Sequence[str] | None, where: str, origin: str = "the recipe's labels"
) -> tuple[Array, tuple[str, ...]]:
    """Class names (`setosa`) as indices into `classes` (the recipe's labels, or the run's), or
    into the sorted set of names when none are given; returns the indices and the classes."""
    given = [str(v).strip() for v in y.reshape(-1)]
    names = tuple(sorted(set(given))) if classes is None else tuple(classes)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(given) - set(index))
    if unknown:
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise _fail(
            f"{where}: label '{unknown[0]}' is not one of the classes of {origin} ({shown})",
            "add every class name to the train section's labels = [...], in index order"
            if origin == "the recipe's labels"
            else "the classes are the ones the weights were trained on",
        )
    return np.array([index[g] for g in given], dtype=np.int64), names


# ---- public API --------------------------------------------------------------------------------


def load_data(spec: DataSpec, input_shape: Sequence[int], input_dtype: str = "float32") -> Dataset:
    """Read one data source; features reshaped to (N, *input_shape), labels as stored.

    Raises NetspecError (exit code 3) naming the file and both shapes when they do not fit.
    """
    shape = tuple(int(d) for d in input_shape)
    x, y, where = read(spec, shape)
    if len(x) != len(y):
        raise _fail(f"{where} has {len(x)} samples but {len(y)} labels")
    if len(x) == 0:
        raise _fail(f"{where} holds no samples")
    return Dataset(as_input(x, shape, input_dtype, where), y, where)


def split(data: Dataset, fraction: float, rng: np.random.Generator) -> tuple[Dataset, Dataset]:
    """(train, validation): a seeded shuffle, then the last `fraction` of it held out."""
    order = rng.permutation(len(data))
    n_val = round(len(data) * fraction)
    if fraction > 0 and not 0 < n_val < len(data):
        raise _fail(
            f"validation={fraction} of {len(data)} samples leaves "
            f"{len(data) - n_val} to train on and {n_val} to validate"
        )
    cut = len(data) - n_val
    return data.take(order[:cut]), data.take(order[cut:])


@dataclass(frozen=True)
class Normalizer:
    """x -> (x - shift) / scale, with statistics fitted on the training split."""

    shift: Array
    scale: Array

    def __call__(self, x: Array) -> Array:
        return ((x - self.shift) / self.scale).astype(x.dtype)


def fit_normalizer(x: Array, mode: str) -> Normalizer | None:
    """Per-feature statistics (over the batch axis) for `standard` and `minmax`."""
    if mode == "none" or x.dtype.kind != "f":
        return None
    if mode == "scale255":
        return Normalizer(np.zeros((), np.float32), np.full((), 255, np.float32))
    if mode == "standard":
        shift, scale = x.mean(axis=0), x.std(axis=0)
    elif mode == "minmax":
        shift, scale = x.min(axis=0), x.max(axis=0) - x.min(axis=0)
    else:
        raise ValueError(mode)
    # A constant feature would divide by zero; leave it centred and unscaled.
    scale = np.where(scale > 0, scale, 1).astype(x.dtype)
    return Normalizer(shift.astype(x.dtype), scale)


def with_path(spec: DataSpec | None, path: str | Path) -> DataSpec:
    """The recipe's data source read from another file (`--data PATH`).

    - PATH in the recipe's format, or with an extension that names no format, is read as the
      recipe's data with every option kept (array names, label column; for an npy or IDX pair
      PATH replaces the features file and the labels file stays).
    - PATH whose extension names another one-file format (.npz; .csv, .tsv, .txt) is read in
      that format with its defaults (an .npz's arrays `x` and `y`, a CSV's column `y` or its
      last), keeping `normalize`: a CSV's column name is no .npz array's (`with_names` names
      them, as `--x`/`--y` do).
    - One .npy or IDX file cannot replace one-file data: those formats need a labels file too,
      which only the train section can name; that is refused with the line to write.
    """
    where = str(path)
    if spec is None:
        return DataSpec(path=where)
    old = spec.name if spec.name != "auto" else format_of(spec.path)
    new = format_of(where)
    if new is None or new == old:
        fields = spec.model_dump()
        if new is None and old is not None:
            fields["name"] = old  # `data = "d.npz"` with --data d.bin: still npz
        # npy(...) and idx(...) name their features file `x`; a plain path names it `path`.
        fields["x" if fields["name"] in ("npy", "idx") else "path"] = where
        return DataSpec.model_validate(fields)
    if new in ("npy", "idx"):
        name = Path(where).name
        raise _fail(
            f"--data {where} names one .{new} file, but {new} data is a pair of files: "
            "features and labels",
            f'name both in the train section, data = {new}("{name}", "labels.{new}"), '
            'or pack them into one archive: np.savez("data.npz", x=x, y=y)',
        )
    return DataSpec(path=where, normalize=spec.normalize)


def with_names(spec: DataSpec, x: str | None, y: str | None) -> DataSpec:
    """The data source with other array names (`--x`, `--y`): an .npz's features and labels
    arrays, or a CSV's label column (by name, or by index when `y` is an integer)."""
    fmt = spec.name if spec.name != "auto" else format_of(spec.path)
    fields = spec.model_dump()
    if x is not None:
        if fmt != "npz":
            raise _fail(
                f"--x names the features array of an .npz; {spec.path or spec.x} is {fmt} data",
                "a CSV's features are every column but the label: choose that with --y"
                if fmt == "csv"
                else "name the features file in the train section, or pass an .npz with --data",
            )
        fields["x"] = x
    if y is not None:
        if fmt not in ("npz", "csv"):
            raise _fail(
                f"--y names an .npz array or a CSV column; {fmt} data has a labels file",
                "name the labels file in the train section, or pass an .npz with --data",
            )
        is_index = fmt == "csv" and y.lstrip("-").isdigit()
        fields["y"] = int(y) if is_index else y
    return DataSpec.model_validate(fields)


def override(
    recipe: DataSpec | None, path: str | Path | None, x: str | None, y: str | None
) -> DataSpec | None:
    """The data that `--data PATH`, `--x` and `--y` mean; None when none is given (the
    recipe's own) or when the recipe names none to rename (the caller then says so)."""
    if path is None and x is None and y is None:
        return None
    source = with_path(recipe, path) if path is not None else recipe
    return None if source is None else with_names(source, x, y)
