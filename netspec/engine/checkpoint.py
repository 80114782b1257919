"""Weights and checkpoints as plain .npz archives: arrays only, never pickles, written atomically.

``weights.npz`` is the flat dict ``node.local -> array`` (trainable and state arrays together).
``checkpoint.npz`` adds what an exact resume needs, under prefixed keys:

- ``params/<name>``: the weights after the last completed epoch;
- ``optimizer/<key>``: the optimizer's state_dict (moments, step counter);
- ``best/<name>``: early stopping's best weights, when it keeps them;
- ``meta``: JSON text as a uint8 array (epoch, step, the numpy bit-generator state, early-stopping
  counters, the history so far): JSON rather than a pickled object, so loading runs no code.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from netspec.engine.files import atomic_write
from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.ops.base import Array

WEIGHTS = "weights.npz"
CHECKPOINT = "checkpoint.npz"
HISTORY = "history.json"
NORMALIZATION = "normalization.npz"


def save_arrays(path: Path, arrays: Mapping[str, Array]) -> None:
    """An .npz of plain arrays, compressed, replacing `path` atomically."""

    def write(f: IO[bytes]) -> None:
        # numpy's stubs type **kwds as its own keyword flags; the arrays are what it saves.
        np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]

    atomic_write(path, write)


def load_arrays(path: Path, what: str = "weights file") -> dict[str, Array]:
    """Every array of an .npz; object arrays are refused (they would need unpickling)."""
    if not path.is_file():
        raise NetspecError.at(f"{what} {path} does not exist", exit_code=EXIT_RUNTIME)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:  # numpy's refusal of object arrays, and malformed headers
        raise NetspecError.at(
            f"{what} {path} cannot be read without unpickling ({e})",
            hint="netspec stores and reads plain numeric arrays only",
            exit_code=EXIT_RUNTIME,
        ) from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise NetspecError.at(
            f"{what} {path} is not a readable .npz archive: {e}", exit_code=EXIT_RUNTIME
        ) from None


def check_weights(
    weights: Mapping[str, Array], expected: Mapping[str, tuple[int, ...]], source: str
) -> None:
    """Every expected array present with its shape; extra arrays are an error too."""
    for name, shape in expected.items():
        if name not in weights:
            raise NetspecError.at(
                f"{source} has no tensor '{name}' (shape {list(shape)}) that the network needs",
                hint="were these weights trained for another network or version of the spec?",
                exit_code=EXIT_RUNTIME,
            )
        got = tuple(weights[name].shape)
        if got != tuple(shape):
            raise NetspecError.at(
                f"{source}: tensor '{name}' has shape {list(got)} but the network expects "
                f"{list(shape)}",
                hint="were these weights trained for another network or version of the spec?",
                exit_code=EXIT_RUNTIME,
            )
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise NetspecError.at(
            f"{source} has tensors the network does not have: {', '.join(extra[:5])}"
            + (f" and {len(extra) - 5} more" if len(extra) > 5 else ""),
            exit_code=EXIT_RUNTIME,
        )


def encode_json(value: Any) -> Array:
    return np.frombuffer(json.dumps(value).encode("utf-8"), dtype=np.uint8)


def decode_json(array: Array) -> Any:
    return json.loads(np.asarray(array, dtype=np.uint8).tobytes().decode("utf-8"))


@dataclass
class Checkpoint:
    """The training state after a completed epoch."""

    params: dict[str, Array]
    optimizer: dict[str, Array]
    meta: dict[str, Any]
    best: dict[str, Array] | None = field(default=None)


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    arrays: dict[str, Array] = {"meta": encode_json(ckpt.meta)}
    arrays.update({f"params/{k}": v for k, v in ckpt.params.items()})
    arrays.update({f"optimizer/{k}": v for k, v in ckpt.optimizer.items()})
    if ckpt.best is not None:
        arrays.update({f"best/{k}": v for k, v in ckpt.best.items()})

    def write(f: IO[bytes]) -> None:
        # Uncompressed: checkpoints are rewritten every epoch and read back rarely.
        np.savez(f, **arrays)  # type: ignore[arg-type]

    atomic_write(path, write)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read `path`, or `path/checkpoint.npz` when given a run folder."""
    if path.is_dir():
        path = path / CHECKPOINT
    arrays = load_arrays(path, "checkpoint")
    if "meta" not in arrays:
        raise NetspecError.at(f"{path} is not a netspec checkpoint", exit_code=EXIT_RUNTIME)
    groups: dict[str, dict[str, Array]] = {"params": {}, "optimizer": {}, "best": {}}
    for key, value in arrays.items():
        prefix, _, name = key.partition("/")
        if prefix in groups:
            groups[prefix][name] = value
    return Checkpoint(
        params=groups["params"],
        optimizer=groups["optimizer"],
        meta=decode_json(arrays["meta"]),
        best=groups["best"] or None,
    )
