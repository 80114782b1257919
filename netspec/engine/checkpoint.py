"""Weights and checkpoints as plain .npz archives: arrays only, never pickles, written atomically.

``weights.npz`` is the flat dict ``node.local -> array`` (trainable and state arrays together).
``checkpoint.npz`` adds what an exact resume needs, under prefixed keys:

- ``params/<name>``: the weights after the last completed epoch;
- ``optimizer/<key>``: the optimizer's state_dict (moments, step counter);
- ``best/<name>``: early stopping's best weights, when it keeps them;
- ``meta``: JSON text as a uint8 array (epoch, step, the numpy bit-generator state, early-stopping
  counters, the history so far, and ``run``: what the run was made with that the recipe may not
  say, such as a ``--seed`` override): JSON rather than a pickled object, so loading runs no code.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from tokenize import TokenError
from typing import IO, Any

import numpy as np

from netspec.engine.files import atomic_write
from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.ops.base import Array

WEIGHTS = "weights.npz"
CHECKPOINT = "checkpoint.npz"
HISTORY = "history.json"
NORMALIZATION = "normalization.npz"
_NUMERIC = "biufc"  # numpy dtype kinds: bool, signed, unsigned, float, complex


def save_arrays(path: Path, arrays: Mapping[str, Array]) -> None:
    """An .npz of plain arrays, compressed, replacing `path` atomically."""

    def write(f: IO[bytes]) -> None:
        # numpy's stubs type **kwds as its own keyword flags; the arrays are what it saves.
        np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]

    atomic_write(path, write)


def _refuse(message: str) -> NetspecError:
    return NetspecError.at(
        message,
        hint="netspec stores and reads plain numeric arrays only, as written by np.savez",
        exit_code=EXIT_RUNTIME,
    )


def _scan(z: zipfile.ZipFile, path: Path, what: str) -> None:
    """Every member's header, before any data is inflated: numeric dtypes only, and a shape
    that accounts for exactly the member's unpacked size (a truncated or bomb-like archive
    is refused before it allocates)."""
    for info in z.infolist():
        with z.open(info) as member:
            try:
                version = np.lib.format.read_magic(member)  # type: ignore[arg-type]
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(member)  # type: ignore[arg-type]
            except (ValueError, SyntaxError, TokenError, EOFError) as e:  # a corrupt header
                raise _refuse(
                    f"{what} {path}: member {info.filename} is not an array ({e})"
                ) from None
            offset = member.tell()
        name = info.filename.removesuffix(".npy")
        if dtype.kind not in _NUMERIC:
            raise _refuse(
                f"{what} {path}: array '{name}' has dtype {dtype}"
                + (", which would need unpickling" if dtype.hasobject else ", not numbers")
            )
        declared = math.prod(shape) * dtype.itemsize
        if declared != info.file_size - offset:
            raise _refuse(
                f"{what} {path}: array '{name}' declares shape {list(shape)} "
                f"({declared:,} bytes) but holds {info.file_size - offset:,} bytes"
            )


def load_arrays(path: Path, what: str = "weights file") -> dict[str, Array]:
    """Every array of an .npz; object (pickled) and non-numeric arrays are refused."""
    return _read_npz(path, what, None)


def _read_npz(path: Path, what: str, names: Collection[str] | None) -> dict[str, Array]:
    """The arrays `names` (None: all) of an .npz whose every header was checked first; each
    way an archive can be unreadable becomes one message."""
    if not path.is_file():
        raise NetspecError.at(f"{what} {path} does not exist", exit_code=EXIT_RUNTIME)
    try:
        with zipfile.ZipFile(path) as z:
            _scan(z, path, what)
        with np.load(path, allow_pickle=False) as npz:
            wanted = npz.files if names is None else [k for k in npz.files if k in names]
            return {k: npz[k] for k in wanted}
    except ValueError as e:  # numpy's refusal of object arrays, and malformed headers
        raise _refuse(f"{what} {path} cannot be read without unpickling ({e})") from None
    except (
        OSError,
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        zlib.error,
        NotImplementedError,  # zipfile: an unknown compression
        RuntimeError,  # zipfile: encrypted
    ) as e:
        raise NetspecError.at(
            f"{what} {path} is not a readable .npz archive: {e}", exit_code=EXIT_RUNTIME
        ) from None


def load_weights(path: Path) -> dict[str, Array]:
    """The arrays of a weights file; a training checkpoint given instead is named as such
    (its arrays are prefixed params/, optimizer/, so it would read as weights for no network)."""
    params = load_arrays(path)
    if "meta" in params and any(k.startswith("params/") for k in params):
        raise NetspecError.at(
            f"{path} is a training checkpoint, not a weights file",
            hint=f"pass the {WEIGHTS} beside it, or the run folder {path.parent}",
            exit_code=EXIT_RUNTIME,
        )
    return params


def load_normalization(folder: Path, mode: str, input_dtype: str) -> tuple[Array, Array] | None:
    """The (shift, scale) a run saved beside its weights, when its recipe normalises (`mode`)
    float inputs; None otherwise (training fits no statistics for token ids), so a file left
    by another recipe's run is never applied. Read by eval, predict and export alike."""
    if mode == "none" or input_dtype != "float32":
        return None
    path = folder / NORMALIZATION
    if not path.is_file():
        raise NetspecError.at(
            f"the recipe normalises its data ({mode}) but {path} is missing",
            hint="keep normalization.npz beside weights.npz: it holds the training statistics",
            exit_code=EXIT_RUNTIME,
        )
    stats = load_arrays(path, "normalization file")
    if "shift" not in stats or "scale" not in stats:
        raise NetspecError.at(
            f"{path} holds {sorted(stats)}, not the arrays 'shift' and 'scale'",
            hint="train again to rewrite it: it holds the training statistics",
            exit_code=EXIT_RUNTIME,
        )
    return stats["shift"], stats["scale"]


def resume_checkpoint(path: Path, example: Path | None = None) -> Path:
    """The checkpoint a resume means: PATH/checkpoint.npz for a run folder, or PATH itself
    when it names a file (the run then continues in that file's folder). `example` is a run
    folder for the hint."""
    hint = f"--resume takes the folder of an earlier run (the one holding {CHECKPOINT})" + (
        f", e.g. --resume {example}" if example is not None else ""
    )
    if path.is_dir():
        if not (path / CHECKPOINT).is_file():
            raise NetspecError.at(
                f"{path} holds no {CHECKPOINT} to resume from", hint=hint, exit_code=EXIT_RUNTIME
            )
        return path / CHECKPOINT
    if path.is_file():
        return path
    raise NetspecError.at(
        f"no run to resume at {path}: it does not exist", hint=hint, exit_code=EXIT_RUNTIME
    )


def weights_file(path: str | Path) -> Path:
    """`--weights` may name the weights file or the run folder that holds it."""
    p = Path(path)
    return p / WEIGHTS if p.is_dir() else p


def check_weights(
    weights: Mapping[str, Array], expected: Mapping[str, tuple[int, ...]], source: str
) -> None:
    """Every expected array present with its shape; extra arrays are an error too."""
    for name, shape in expected.items():
        if name not in weights:
            raise NetspecError.at(
                f"the network needs tensor '{name}' (shape {list(shape)}), missing in {source}",
                hint="were these weights trained for another network or version of the spec?",
                exit_code=EXIT_RUNTIME,
            )
        if weights[name].dtype.kind != "f":
            raise NetspecError.at(
                f"{source}: tensor '{name}' has dtype {weights[name].dtype}; weights are floats",
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
            f"{source}: tensors the network does not have: {', '.join(extra[:5])}"
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
    _check_optimizer(groups["optimizer"], groups["params"], path)
    return Checkpoint(
        params=groups["params"],
        optimizer=groups["optimizer"],
        meta=_meta(arrays["meta"], path),
        best=groups["best"] or None,
    )


def load_meta(path: Path) -> dict[str, Any]:
    """Only the JSON record of checkpoint `path`: its arrays' headers are checked, but no
    weights or optimizer moments are read."""
    arrays = _read_npz(path, "checkpoint", ("meta",))
    if "meta" not in arrays:
        raise NetspecError.at(f"{path} is not a netspec checkpoint", exit_code=EXIT_RUNTIME)
    return _meta(arrays["meta"], path)


def _check_optimizer(state: dict[str, Array], params: dict[str, Array], path: Path) -> None:
    """A step counter, and every moment shaped like the parameter it belongs to."""
    if "step" not in state or state["step"].size != 1:
        raise NetspecError.at(
            f"{path} is not a netspec checkpoint: it has no optimizer step counter",
            exit_code=EXIT_RUNTIME,
        )
    for key, value in state.items():
        _, _, name = key.partition(".")
        if name and (name not in params or params[name].shape != value.shape):
            raise NetspecError.at(
                f"{path}: optimizer state '{key}' does not match a parameter of the checkpoint",
                exit_code=EXIT_RUNTIME,
            )


def _meta(array: Array, path: Path) -> dict[str, Any]:
    """The checkpoint's JSON record, with the fields a resume reads checked."""
    try:
        meta = decode_json(array)
    except (UnicodeDecodeError, ValueError) as e:
        raise NetspecError.at(
            f"{path} is not a netspec checkpoint: its meta record is not JSON ({e})",
            exit_code=EXIT_RUNTIME,
        ) from None
    ok = (
        isinstance(meta, dict)
        and isinstance(meta.get("epoch"), int)
        and meta["epoch"] >= 0
        and isinstance(meta.get("rng"), dict)
        and isinstance(meta.get("history", []), list)
    )
    if ok:
        try:  # the loop's bit-generator state, as resume will restore it
            np.random.default_rng().bit_generator.state = meta["rng"]
        except (KeyError, TypeError, ValueError):
            ok = False
    if not ok:
        raise NetspecError.at(
            f"{path} is not a netspec checkpoint: its meta record lacks a valid epoch, "
            "rng state or history",
            exit_code=EXIT_RUNTIME,
        )
    return meta  # type: ignore[no-any-return]
