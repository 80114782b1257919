"""Data of a network with several inputs or outputs: one array per input and per output, read
from an .npz by the input's or output's name, each output scored by its own loss and weight.

A network of one input and one output never comes here: its data stay plain arrays.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.losses import LOSSES
from netspec.ops.base import Array
from netspec.recipe import DataSpec, TrainSpec
from netspec.training.data import Dataset, as_input, prepare_targets
from netspec.training.formats import Check, format_of, read_npz_arrays
from netspec.training.metrics import CLASSIFICATION_METRICS, compute_metrics


@dataclass(frozen=True)
class Named:
    """Arrays by input or output name, aligned on the first axis; indexed like one array."""

    arrays: dict[str, Array]

    @property
    def shape(self) -> tuple[int]:
        return (len(next(iter(self.arrays.values()))),)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> Named:
        return Named({k: v[index] for k, v in self.arrays.items()})


def concat(parts: list[Any]) -> Any:
    """Batches of outputs joined along the first axis: arrays, or Named of arrays."""
    if parts and isinstance(parts[0], Named):
        return Named({k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays})
    return np.concatenate(parts)


def map_first(x: Any, f: Callable[[Array], Array]) -> Any:
    """`f` applied to the first input (the one normalisation applies to, as in export)."""
    if not isinstance(x, Named):
        return f(x)
    first = next(iter(x.arrays))
    return Named({k: f(v) if k == first else v for k, v in x.arrays.items()})


def first(x: Any) -> Array:
    return next(iter(x.arrays.values())) if isinstance(x, Named) else x  # type: ignore[no-any-return]


def _fail(message: str, hint: str | None = None) -> NetspecError:
    return NetspecError.at(message, hint=hint, exit_code=EXIT_RUNTIME)


def _names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return [n.removesuffix(".npy") for n in z.namelist()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
        raise _fail(f"{path} is not a readable .npz archive: {e}") from None


def load_named(source: DataSpec, io: Any, spec: TrainSpec) -> Dataset:
    """The .npz arrays of every input and output (by name; a lone input or output may also
    be the recipe's `x` or `y`), typed for the inputs and shaped for each output's loss."""
    path = Path(source.path)
    fmt = source.name if source.name != "auto" else format_of(source.path)
    if fmt != "npz" or not path.is_file():
        if fmt == "npz":
            read_npz_arrays(path, (), Check({}))  # says the file is missing
        ins = ", ".join(p.name for p in io.inputs)
        outs = ", ".join(p.name for p in io.outputs)
        raise _fail(
            f"a network of several inputs or outputs reads an .npz, not {fmt or 'this'} data "
            f"({source.path or source.x})",
            f"save one array per input ({ins}) and output ({outs}): np.savez(path, name=array)",
        )
    have = _names(path)

    def array_of(name: str, fallback: str, alone: bool) -> str:
        return fallback if name not in have and alone and fallback in have else name

    alone_in, alone_out = len(io.inputs) == 1, len(io.outputs) == 1
    wanted = [(array_of(p.name, source.x, alone_in), p.name) for p in io.inputs]
    wanted += [(array_of(p.name, str(source.y), alone_out), p.name) for p in io.outputs]
    arrays = read_npz_arrays(path, wanted, Check({p.name: p.shape for p in io.inputs}))
    chosen = spec.output_losses(tuple(p.name for p in io.outputs))
    x = {
        p.name: as_input(arrays[a], p.shape, p.dtype, f"{path}:{a}")
        for (a, _), p in zip(wanted, io.inputs, strict=False)
    }
    y = {}
    for (a, _), p in zip(wanted[len(io.inputs) :], io.outputs, strict=True):
        loss = LOSSES[chosen[p.name][0]]
        where = f"{path}:{a}"
        ignore = spec.ignore_index if loss.per_position else None
        y[p.name] = prepare_targets(
            arrays[a], p.shape, loss.task, where, soft=loss.soft_targets, ignore_index=ignore
        )
    xs = x[io.input] if alone_in else Named(x)
    ys = y[io.output] if alone_out else Named(y)
    return Dataset(xs, ys, str(path))


def named_scores(spec: TrainSpec, outputs: Named, targets: Any) -> dict[str, Any]:
    """`loss`, the weighted sum of every output's loss, and each output's loss and metrics
    (those its loss's task can give) as `<output>.<name>`."""
    outs, tgts = outputs.arrays, targets.arrays
    chosen = spec.output_losses(tuple(outs))
    total, scores = 0.0, dict[str, Any]()
    for name, y in outs.items():
        loss_name, weight = chosen[name]
        loss = LOSSES[loss_name]
        value, _ = loss(y, tgts[name])
        total += weight * value
        fitting = [
            m
            for m in spec.metrics
            if loss.task != "regression" or m.name not in CLASSIFICATION_METRICS
        ]
        got = {"loss": value} | compute_metrics(fitting, y, tgts[name], loss.task)
        scores |= {f"{name}.{k}": v for k, v in got.items()}
    return {"loss": total} | scores
