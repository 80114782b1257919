"""The data file formats: .npz, .npy pairs, CSV (gzipped too) and IDX (MNIST's format, gzipped
too), each read with its header checked against the network's input and against the file's
size before the bulk is read, and never unpickled.
"""

from __future__ import annotations

import csv
import gzip
import math
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from tokenize import TokenError
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.recipe import DataSpec

Array = npt.NDArray[Any]
Shape = tuple[int, ...]
# What numpy's .npy header reader raises on a corrupt header (it tokenizes a Python literal).
_HEADER_ERRORS = (ValueError, SyntaxError, TokenError, EOFError)


def _fail(message: str, hint: str | None = None) -> NetspecError:
    return NetspecError.at(message, hint=hint, exit_code=EXIT_RUNTIME)


# ---- formats -----------------------------------------------------------------------------------

_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def format_of(path: str) -> str | None:
    """The format a file name's extension names, or None when it names none."""
    name = path.lower().removesuffix(".gz")
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    if name.endswith(("ubyte", ".idx")) or ".idx" in name:
        return "idx"
    return None


def _format(spec: DataSpec) -> str:
    if spec.name != "auto":
        return spec.name
    fmt = format_of(spec.path)
    if fmt is not None:
        return fmt
    raise _fail(
        f"cannot tell the format of data file {spec.path} from its extension",
        "name it .npz, .npy, .csv or .idx, or say which: npz(...), npy(...), csv(...), idx(...)",
    )


def _exists(path: Path, what: str) -> None:
    if not path.is_file():
        raise _fail(
            f"{what} {path} does not exist",
            "data paths in a spec are relative to the spec file; --data PATH overrides them",
        )


def _npy_header(f: IO[bytes], where: str) -> tuple[Shape, np.dtype[Any]]:
    """Shape and dtype of an .npy stream, leaving it positioned at the data."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except _HEADER_ERRORS as e:  # numpy parses the header as a Python literal
        raise _fail(f"{where} is not a valid .npy array: {e}") from None
    if dtype.hasobject:
        raise _fail(
            f"{where} holds Python objects (dtype {dtype}); netspec never unpickles data",
            "save plain numeric arrays: np.savez(path, x=x.astype(np.float32), y=y.astype(int))",
        )
    return tuple(int(d) for d in shape), dtype


def _check_size(shape: Shape, dtype: np.dtype[Any], available: int, where: str) -> None:
    """The header's shape must account for exactly the bytes that follow it: a truncated file,
    or a header that claims terabytes, is refused before anything is read or allocated."""
    declared = math.prod(shape) * dtype.itemsize
    if declared != available:
        raise _fail(
            f"{where} declares an array of shape {list(shape)} ({declared:,} bytes of "
            f"{dtype}) but holds {available:,} bytes of data",
            "the file is truncated or corrupt: write it again",
        )


def _read_npy(path: Path, check: Check, role: str) -> Array:
    _exists(path, "data file")
    _refuse_gzip(path, "npy")
    with path.open("rb") as f:
        shape, dtype = _npy_header(f, str(path))
        offset = f.tell()
    check(shape, str(path), role)
    _check_size(shape, dtype, path.stat().st_size - offset, str(path))
    try:
        return np.load(path, allow_pickle=False)  # type: ignore[no-any-return]
    except (OSError, ValueError) as e:
        raise _fail(f"cannot read {path}: {e}") from None


def read_npz_arrays(
    path: Path, wanted: Sequence[tuple[str, str]], check: Callable[[Shape, str, str], None]
) -> dict[str, Array]:
    """The arrays `wanted` (name, role) of an .npz, each header passed to `check(shape,
    where, role)` and its size checked before anything is inflated."""
    _exists(path, "data file")
    _refuse_gzip(path, "npz")
    try:
        with zipfile.ZipFile(path) as z:
            names = [n.removesuffix(".npy") for n in z.namelist()]
            for name, role in wanted:
                if name not in names:
                    raise _fail(
                        f"{path} has no array '{name}' (it has: {', '.join(names) or 'none'})",
                        f'name the arrays: npz("{path.name}", x="...", y="...")'
                        if role in ("x", "y")
                        else "give one array per input and output, named like it",
                    )
                info = z.getinfo(f"{name}.npy")
                with z.open(info) as member:
                    shape, dtype = _npy_header(member, f"{path}:{name}")  # type: ignore[arg-type]
                    offset = member.tell()
                check(shape, f"{path}:{name}", role)
                # The zip directory states each member's unpacked size: checked before
                # inflating, so a small archive cannot expand into a huge allocation.
                _check_size(shape, dtype, info.file_size - offset, f"{path}:{name}")
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name, _ in wanted}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise _fail(f"{path} is not a readable .npz archive: {e}") from None
    except (NotImplementedError, RuntimeError) as e:  # zipfile: encrypted, unknown compression
        raise _fail(f"{path} is an archive numpy cannot read: {e}") from None
    except (OSError, ValueError) as e:  # zlib errors, a CRC mismatch, a corrupt member
        raise _fail(f"cannot read {path}: {e}") from None


# What reading a damaged gzip stream raises: BadGzipFile (an OSError) for a bad header or CRC,
# EOFError for a cut stream, zlib.error (no OSError) for corrupt deflate data.
_GZIP_ERRORS = (OSError, EOFError, zlib.error)
_CHUNK = 1 << 24


def _gzipped(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _refuse_gzip(path: Path, fmt: str) -> None:
    if _gzipped(path):
        raise _fail(
            f"{path} is gzip-compressed; gzip is read for IDX and CSV files, not .{fmt}",
            f"gunzip {path.name} first"
            + (", or save with np.savez_compressed, which netspec reads" if fmt == "npz" else ""),
        )


def _open_maybe_gz(path: Path) -> IO[bytes]:
    if _gzipped(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile reads bytes
    return path.open("rb")


def _read_at_most(f: IO[bytes], size: int) -> bytearray:
    """Up to `size` bytes, in chunks: a gzip stream's length is known only by reading it, and
    one read of a header's claimed size would allocate it (terabytes) before finding less."""
    out = bytearray()
    while len(out) < size:
        chunk = f.read(min(_CHUNK, size - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def _read_idx(path: Path, check: Check, role: str) -> Array:
    """IDX: two zero bytes, a dtype code, the rank, then big-endian int32 dims and the data."""
    _exists(path, "IDX file")
    with _open_maybe_gz(path) as f:
        try:
            head = f.read(4)
        except _GZIP_ERRORS as e:
            raise _fail(f"cannot read IDX file {path}: {e}") from None
        if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_DTYPES:
            raise _fail(
                f"{path} is not an IDX file (magic bytes {head.hex() or 'missing'})",
                "IDX files start 00 00, a type code (08 for unsigned bytes) and the rank",
            )
        rank = head[3]
        raw_dims = f.read(4 * rank)
        if len(raw_dims) != 4 * rank:
            raise _fail(f"IDX file {path} ends inside its header")
        dims = np.frombuffer(raw_dims, dtype=">i4")
        shape = tuple(int(d) for d in dims)
        if any(d < 0 for d in shape):
            raise _fail(f"IDX file {path} declares a negative dimension: {list(shape)}")
        check(shape, str(path), role)
        dtype = np.dtype(_IDX_DTYPES[head[2]])
        size = math.prod(shape) * dtype.itemsize
        if not isinstance(f, gzip.GzipFile):  # a gzip stream's length is known only by reading
            _check_size(shape, dtype, path.stat().st_size - f.tell(), str(path))
        try:
            raw = _read_at_most(f, size)
            more = len(raw) == size and f.read(1) != b""
        except _GZIP_ERRORS as e:  # a corrupt gzip stream
            raise _fail(f"cannot read IDX file {path}: {e}") from None
    hint = "the file is truncated or corrupt: write it again"
    if len(raw) != size:
        raise _fail(
            f"IDX file {path} is truncated: its header declares {list(shape)} "
            f"({size:,} bytes) but {len(raw):,} bytes follow",
            hint,
        )
    if more:
        raise _fail(
            f"IDX file {path} declares {list(shape)} ({size:,} bytes) but more data follows",
            "the header and the data disagree: write the file again",
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(spec: DataSpec) -> tuple[Array, Array]:
    """A CSV with one sample per row; a first row with any non-numeric cell is the header.

    Read as utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark, which would otherwise
    become part of the first header cell (or turn a first row of numbers into a header).
    """
    path = Path(spec.path)
    _exists(path, "data file")
    delimiter = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    try:
        opener = gzip.open if _gzipped(path) else open
        with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f, delimiter=delimiter) if r]
    except UnicodeDecodeError as e:
        raise _fail(f"CSV file {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x})") from None
    except csv.Error as e:
        raise _fail(f"CSV file {path} cannot be parsed: {e}") from None
    except _GZIP_ERRORS as e:
        raise _fail(f"cannot read CSV file {path}: {e}") from None
    if not rows:
        raise _fail(f"CSV file {path} is empty")
    header: list[str] | None = None
    if _is_header(rows):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
        if not rows:
            raise _fail(
                f"CSV file {path} has a header row ({', '.join(header)[:80]}) but no data rows",
                "write one sample per row below the header: its features and its label",
            )
    width = len(rows[0]) if rows else 0
    if width < 2:
        raise _fail(f"CSV file {path} needs at least one feature column and a label column")
    label = _label_column(spec.y, header, width, path)
    first = header is not None
    short = next((i for i, r in enumerate(rows) if len(r) != width), None)
    if short is not None:
        raise _fail(
            f"CSV file {path} line {short + 1 + first} has {len(rows[short])} cells, not {width}: "
            f"{','.join(rows[short])[:80]!r}"
        )
    names = [r[label].strip() for r in rows]
    if all(map(_is_number, names)):
        return _numbers(rows, path, first)[:, [i for i in range(width) if i != label]], np.array(
            names, dtype=np.float64
        )
    # Class names (`setosa`): kept as text, mapped to class indices by training.data.
    features = [r[:label] + r[label + 1 :] for r in rows]
    return _numbers(features, path, first), np.array(names, dtype=str)


def _label_column(y: str | int, header: list[str] | None, width: int, path: Path) -> int:
    if isinstance(y, int):
        if not -width <= y < width:
            raise _fail(f"label column {y} is out of range: {path} has {width} columns")
        return y % width
    if header is not None and y in header:
        return header.index(y)
    if header is None and y == "y":
        return width - 1  # no header and no choice made: the last column, by convention
    have = f"columns: {', '.join(header)}" if header else "the file has no header row"
    raise _fail(
        f"CSV file {path} has no label column '{y}' ({have})",
        'choose it by name or by index: csv("file.csv", y="label") or y=0',
    )


def _is_header(rows: list[list[str]]) -> bool:
    """The first row is a header when a cell of it is text over a number: a column of class
    names (`setosa` in every row) is data, not a header."""
    text = [i for i, c in enumerate(rows[0]) if not _is_number(c)]
    if not text:
        return False
    below = rows[1] if len(rows) > 1 else []
    return len(below) != len(rows[0]) or any(_is_number(below[i]) for i in text)


def _numbers(rows: list[list[str]], path: Path, header: bool) -> Array:
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        bad = next(i for i, r in enumerate(rows) if not all(map(_is_number, r)))
        raise _fail(
            f"CSV file {path} line {bad + 1 + header} holds a feature that is not a number: "
            f"{','.join(rows[bad])[:80]!r}",
            "every column but the label must be numbers; a text label column names classes",
        ) from None


# ---- checks ------------------------------------------------------------------------------------


class Check:
    """Checks a header's shape against the network's inputs (by role: "x", or an input's
    name) before the data is read, and every array's sample count against the first's."""

    def __init__(self, shapes: dict[str, Shape]) -> None:
        self.shapes = shapes
        self.count: int | None = None

    def __call__(self, shape: Shape, where: str, role: str) -> None:
        if len(shape) == 0:
            raise _fail(f"{where} is a scalar, not a set of samples")
        if role in self.shapes:
            fit_input(shape, self.shapes[role], where)
        if self.count is not None and shape[0] != self.count:
            raise _fail(
                f"{where} has {shape[0]} samples but the features have {self.count}",
                "features and labels must be aligned on the first axis",
            )
        self.count = shape[0]


def fit_input(shape: Shape, input_shape: Shape, where: str) -> None:
    sample = shape[1:]
    if math.prod(sample) != math.prod(input_shape):
        raise _fail(
            f"{where} holds {shape[0]} samples of shape {list(sample)} "
            f"({math.prod(sample)} values each), but the network's input is "
            f"{list(input_shape)} ({math.prod(input_shape)} values)",
            "point `data` at the right file, or change the network's `input` declaration",
        )


def read(spec: DataSpec, input_shape: Shape) -> tuple[Array, Array, str]:
    """Features and labels of one data source as stored, and the file to name in messages;
    each header is checked against the network's input before its data is read."""
    check = Check({"x": input_shape})
    fmt = _format(spec)
    if fmt == "npz":
        arrays = read_npz_arrays(Path(spec.path), ((spec.x, "x"), (str(spec.y), "y")), check)
        x, y, where = arrays[spec.x], arrays[str(spec.y)], spec.path
    elif fmt == "csv":
        x, y = _read_csv(spec)
        where = spec.path
        check(x.shape, where, "x")
    else:
        # npy(...)/idx(...) name the features file as `x`; a plain path names it as `path`.
        features = Path(spec.x) if spec.name in ("npy", "idx") else Path(spec.path)
        if spec.labels is None:
            raise _fail(
                f"{fmt} data needs a labels file besides {features}",
                f'{fmt}(path="{features.name}", labels="labels{features.suffix}")',
            )
        reader = _read_npy if fmt == "npy" else _read_idx
        x = reader(features, check, "x")
        y = reader(Path(spec.labels), check, "y")
        where = str(features)
    return x, y, where
