"""How much memory a data source takes once read, from its headers, before it is read: the
training memory estimate (netspec.memory) counts it."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from netspec.errors import NetspecError
from netspec.recipe import DataSpec
from netspec.training.formats import _check_size, _format, _gzipped, _npy_header


def _features_file(spec: DataSpec) -> Path:
    # npy(...)/idx(...) name the features file as `x`; a plain path names it as `path`.
    return Path(spec.x) if spec.name in ("npy", "idx") else Path(spec.path)


def _read_bytes(f: IO[bytes], available: int, where: str) -> int:
    """An .npy stream's bytes as stored, plus the float32 copy _as_input makes of any other
    dtype (labels are over-counted); raises, as reading would, where the header lies."""
    shape, dtype = _npy_header(f, where)
    _check_size(shape, dtype, available - f.tell(), where)
    cast = 0 if dtype == np.float32 else 4
    return math.prod(shape) * (dtype.itemsize + cast)


def _file_bytes(spec: DataSpec, fmt: str, path: Path) -> int:
    if fmt == "npz" and not _gzipped(path):
        total = 0
        with zipfile.ZipFile(path) as z:
            for name in (spec.x, str(spec.y)):
                info = z.getinfo(f"{name}.npy")
                with z.open(info) as member:
                    total += _read_bytes(member, info.file_size, str(path))  # type: ignore[arg-type]
        return total
    if fmt == "npy" and not _gzipped(path):
        with path.open("rb") as f:
            return _read_bytes(f, path.stat().st_size, str(path))
    return 4 * path.stat().st_size


def resident_bytes(spec: DataSpec) -> int:
    """About how much memory the data takes once read: each array as stored, plus its float32
    copy where it is stored otherwise, from the .npy headers where there are some (nothing is
    inflated), else 4 bytes per byte of the file (idx's uint8 pixels become float32; CSV text
    needs at least 2 bytes a value). A file that cannot be read counts 0: reading it says why."""
    fmt = _format(spec)
    files = [Path(spec.path)] if fmt in ("npz", "csv") else [_features_file(spec)]
    if fmt not in ("npz", "csv") and spec.labels is not None:
        files.append(Path(spec.labels))
    total = 0
    for path in files:
        try:
            total += _file_bytes(spec, fmt, path)
        except (OSError, KeyError, zipfile.BadZipFile, NotImplementedError, RuntimeError):
            continue
        except NetspecError:  # a header that disagrees with the file's size
            continue
    return total
