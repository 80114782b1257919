"""Plain arrays on disk: .npz archives read and written without pickles, checked first.

Every archive netspec reads (weights, checkpoints, input arrays, normalisation statistics) goes
through `load_arrays`: each member's header is checked (numeric dtype, a shape that accounts
for exactly its bytes) before anything is inflated, so a truncated or bomb-like file fails in
milliseconds, and nothing is ever unpickled. JSON records travel inside an archive as uint8.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections.abc import Collection, Mapping
from pathlib import Path
from tokenize import TokenError
from typing import IO, Any

import numpy as np

from netspec.errors import EXIT_RUNTIME, EXIT_USAGE, NetspecError
from netspec.files import atomic_write
from netspec.ops.base import Array

_NUMERIC = "biufc"  # numpy dtype kinds: bool, signed, unsigned, float, complex


def save_arrays(path: Path, arrays: Mapping[str, Array], *, durable: bool = True) -> None:
    """An .npz of plain arrays, compressed, replacing `path` atomically (fsynced if `durable`)."""

    def write(f: IO[bytes]) -> None:
        # numpy's stubs type **kwds as its own keyword flags; the arrays are what it saves.
        np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]

    atomic_write(path, write, durable=durable)


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
        name = info.filename.removesuffix(".npy")
        with z.open(info) as member:
            _check_header(member, info.file_size, f"{what} {path}: array '{name}'")


def _check_header(stream: IO[bytes], size: int, where: str, numeric: bool = True) -> None:
    """One .npy header read from `stream` (a file of `size` bytes): numeric (unless the caller
    names the dtype its own way), and a shape that accounts for exactly the bytes after it (a
    header claiming terabytes fails at once)."""
    try:
        version = np.lib.format.read_magic(stream)  # type: ignore[arg-type]
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(stream)  # type: ignore[arg-type]
    except (ValueError, SyntaxError, TokenError, EOFError) as e:  # a corrupt header
        raise _refuse(f"{where} is not an array ({e})") from None
    offset = stream.tell()
    if numeric and dtype.kind not in _NUMERIC:
        raise _refuse(
            f"{where} has dtype {dtype}"
            + (", which would need unpickling" if dtype.hasobject else ", not numbers")
        )
    declared = math.prod(shape) * dtype.itemsize
    if declared != size - offset:
        raise _refuse(
            f"{where} declares shape {list(shape)} ({declared:,} bytes) "
            f"but holds {size - offset:,} bytes"
        )


def load_arrays(path: Path, what: str = "weights file") -> dict[str, Array]:
    """Every array of an .npz; object (pickled) and non-numeric arrays are refused."""
    return read_npz(path, what, None)


def read_npz(path: Path, what: str, names: Collection[str] | None) -> dict[str, Array]:
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


def encode_json(value: Any) -> Array:
    return np.frombuffer(json.dumps(value).encode("utf-8"), dtype=np.uint8)


def decode_json(array: Array) -> Any:
    return json.loads(np.asarray(array, dtype=np.uint8).tobytes().decode("utf-8"))


def read_input_file(path: Path) -> dict[str, Array]:
    """The arrays of one input file: an .npz by name, or an .npy as the one array ''."""
    if path.suffix == ".npz":
        return load_arrays(path, "input file")
    if not path.is_file():
        raise NetspecError.at(f"input file {path} does not exist", exit_code=EXIT_RUNTIME)
    try:
        with path.open("rb") as f:
            # predict names a wrong dtype against the model's input: only the size here.
            _check_header(f, path.stat().st_size, f"input file {path}", numeric=False)
        return {"": np.load(path, allow_pickle=False)}
    except (OSError, ValueError, EOFError) as e:
        raise NetspecError.at(
            f"input file {path} is not a readable .npy array: {e}", exit_code=EXIT_RUNTIME
        ) from None


def save_outputs(path: Path, outputs: Mapping[str, Array]) -> None:
    """Outputs to an .npz by name, or the one output to an .npy, atomically."""
    if path.suffix == ".npz":
        save_arrays(path, outputs)
        return
    if len(outputs) != 1:
        raise NetspecError.at(
            f"the model has {len(outputs)} outputs: save them to an .npz", exit_code=EXIT_USAGE
        )
    (array,) = outputs.values()

    def write(f: IO[bytes]) -> None:
        np.save(f, array)

    atomic_write(path, write)
