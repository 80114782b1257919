"""Loading training data: .npz, .npy pairs, CSV and IDX (MNIST's format), checked against the
network before the bulk of a file is read.

Every file is opened with ``allow_pickle=False``: a data file must never run code. Sizes are
checked from headers (npy, npz members, IDX) so a wrong 10 GB file fails in milliseconds with a
message naming the file, its sample shape and the network's input shape. Samples whose size
matches but whose layout differs (64 features for a [1, 8, 8] input) are reshaped.

Normalisation statistics come from the training split only, never from validation data.
"""

from __future__ import annotations

import csv
import gzip
import math
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from tokenize import TokenError
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt

from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.recipe import DataSpec

Array = npt.NDArray[Any]
Shape = tuple[int, ...]
Task = Literal["classification", "binary", "regression"]
# What numpy's .npy header reader raises on a corrupt header (it tokenizes a Python literal).
_HEADER_ERRORS = (ValueError, SyntaxError, TokenError, EOFError)


@dataclass(frozen=True)
class Dataset:
    """Features (N, *input_shape) and targets (N, ...), aligned on the first axis."""

    x: Array
    y: Array
    source: str = ""

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, index: Array) -> Dataset:
        return Dataset(self.x[index], self.y[index], self.source)


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


def _format_of(path: str) -> str | None:
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
    fmt = _format_of(spec.path)
    if fmt is not None:
        return fmt
    raise _fail(
        f"cannot tell the format of data file {spec.path} from its extension",
        "name it .npz, .npy, .csv or .idx, or say which: npz(...), npy(...), csv(...), idx(...)",
    )


def _features_file(spec: DataSpec) -> Path:
    # npy(...)/idx(...) name the features file as `x`; a plain path names it as `path`.
    return Path(spec.x) if spec.name in ("npy", "idx") else Path(spec.path)


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


def _read_npy(path: Path, check: _Check, role: str) -> Array:
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


def _read_npz(spec: DataSpec, check: _Check) -> tuple[Array, Array]:
    path = Path(spec.path)
    _exists(path, "data file")
    _refuse_gzip(path, "npz")
    y_name = str(spec.y)
    try:
        with zipfile.ZipFile(path) as z:
            names = [n.removesuffix(".npy") for n in z.namelist()]
            for name, role in ((spec.x, "x"), (y_name, "y")):
                if name not in names:
                    raise _fail(
                        f"{path} has no array '{name}' (it has: {', '.join(names) or 'none'})",
                        f'name the arrays: npz("{path.name}", x="...", y="...")',
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
            return npz[spec.x], npz[y_name]
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


def _read_idx(path: Path, check: _Check, role: str) -> Array:
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
    if not all(_is_number(c) for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
        if not rows:
            raise _fail(
                f"CSV file {path} has a header row ({', '.join(header)[:80]}) but no data rows",
                "write one sample per row below the header: its features and its label",
            )
    width = len(rows[0]) if rows else 0
    if width < 2:
        raise _fail(f"CSV file {path} needs at least one feature column and a label column")
    if isinstance(spec.y, int):
        if not -width <= spec.y < width:
            raise _fail(f"label column {spec.y} is out of range: {path} has {width} columns")
        label = spec.y % width
    elif header is not None and spec.y in header:
        label = header.index(spec.y)
    elif header is None and spec.y == "y":
        label = width - 1  # no header and no choice made: the last column, by convention
    else:
        have = f"columns: {', '.join(header)}" if header else "the file has no header row"
        raise _fail(
            f"CSV file {path} has no label column '{spec.y}' ({have})",
            'choose it by name or by index: csv("file.csv", y="label") or y=0',
        )
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError:
        bad = next(i for i, r in enumerate(rows) if len(r) != width or not all(map(_is_number, r)))
        line = bad + 1 + (header is not None)
        raise _fail(
            f"CSV file {path} line {line} is not {width} numbers: {','.join(rows[bad])[:80]!r}"
        ) from None
    y = table[:, label]
    x = np.delete(table, label, axis=1)
    return x, y


# ---- checks ------------------------------------------------------------------------------------


class _Check:
    """Checks a header's shape against the network before the data is read."""

    def __init__(self, input_shape: Shape) -> None:
        self.input_shape = input_shape
        self.count: int | None = None

    def __call__(self, shape: Shape, where: str, role: str) -> None:
        if len(shape) == 0:
            raise _fail(f"{where} is a scalar, not a set of samples")
        if role == "x":
            _fit(shape, self.input_shape, where)
        if self.count is not None and shape[0] != self.count:
            raise _fail(
                f"{where} has {shape[0]} samples but the features have {self.count}",
                "features and labels must be aligned on the first axis",
            )
        self.count = shape[0]


def _fit(shape: Shape, input_shape: Shape, where: str) -> None:
    sample = shape[1:]
    if math.prod(sample) != math.prod(input_shape):
        raise _fail(
            f"{where} holds {shape[0]} samples of shape {list(sample)} "
            f"({math.prod(sample)} values each), but the network's input is "
            f"{list(input_shape)} ({math.prod(input_shape)} values)",
            "point `data` at the right file, or change the network's `input` declaration",
        )


def _as_input(x: Array, input_shape: Shape, input_dtype: str, where: str) -> Array:
    _fit(x.shape, input_shape, where)
    x = x.reshape((x.shape[0], *input_shape))  # layout only: the sizes already match
    if input_dtype == "int64":
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
    y: Array, output_shape: Shape, task: Task, where: str, *, soft: bool = False
) -> Array:
    """Targets in the loss's layout: class indices (N,) for classification, (N, *out) otherwise.

    classification: integer labels in [0, classes), or (N, classes) rows: one-hot rows become
    indices; rows of probabilities (non-negative, summing to 1) stay (N, classes) float32 when
    `soft` says the loss takes them (cross-entropy), and are refused otherwise; any other row
    (all zeros, negative, summing elsewhere) is refused. A single-output classifier (binary
    hinge) takes 0/1 or -1/1 targets like a binary one.
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
        n_classes = output_shape[-1]
        if y.ndim == 2 and y.shape[1] == n_classes and n_classes > 1:
            y = _class_rows(y, soft, where)
            if y.ndim == 2:
                return y  # probabilities, for the loss as they are
        y = y.reshape(y.shape[0], -1)
        if y.shape[1] != 1:
            raise _fail(
                f"{where}: labels of shape {list(y.shape[1:])} do not fit a classifier with "
                f"{n_classes} outputs",
                "give one integer class per sample, or one-hot rows",
            )
        y = y[:, 0]
        if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
            raise _fail(f"{where}: class labels must be whole numbers")
        labels = y.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise _fail(
                f"{where}: labels range over {int(labels.min())}..{int(labels.max())} but the "
                f"network has {n_classes} outputs, so classes 0..{n_classes - 1}",
                "make the last layer's size the number of classes",
            )
        return labels
    per_sample = math.prod(output_shape)
    if math.prod(y.shape[1:]) != per_sample:
        raise _fail(
            f"{where}: targets of shape {list(y.shape[1:])} do not fit the network's output "
            f"{list(output_shape)}"
        )
    return y.reshape((y.shape[0], *output_shape)).astype(np.float32)


# ---- public API --------------------------------------------------------------------------------


def load_data(spec: DataSpec, input_shape: Sequence[int], input_dtype: str = "float32") -> Dataset:
    """Read one data source; features reshaped to (N, *input_shape), labels as stored.

    Raises NetspecError (exit code 3) naming the file and both shapes when they do not fit.
    """
    shape = tuple(int(d) for d in input_shape)
    check = _Check(shape)
    fmt = _format(spec)
    if fmt == "npz":
        x, y = _read_npz(spec, check)
        where = spec.path
    elif fmt == "csv":
        x, y = _read_csv(spec)
        where = spec.path
        check(x.shape, where, "x")
    else:
        features = _features_file(spec)
        if spec.labels is None:
            raise _fail(
                f"{fmt} data needs a labels file besides {features}",
                f'{fmt}(path="{features.name}", labels="labels{features.suffix}")',
            )
        read = _read_npy if fmt == "npy" else _read_idx
        x = read(features, check, "x")
        y = read(Path(spec.labels), check, "y")
        where = str(features)
    if len(x) != len(y):
        raise _fail(f"{where} has {len(x)} samples but {len(y)} labels")
    if len(x) == 0:
        raise _fail(f"{where} holds no samples")
    return Dataset(_as_input(x, shape, input_dtype, where), y, where)


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


def batches(n: int, batch: int, rng: np.random.Generator | None) -> list[Array]:
    """Index arrays of one epoch; shuffled with `rng` when given. The last batch may be short."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i : i + batch] for i in range(0, n, batch)]


def with_path(spec: DataSpec | None, path: str | Path) -> DataSpec:
    """The recipe's data source read from another file (`--data PATH`).

    - PATH in the recipe's format, or with an extension that names no format, is read as the
      recipe's data with every option kept (array names, label column; for an npy or IDX pair
      PATH replaces the features file and the labels file stays).
    - PATH whose extension names another one-file format (.npz; .csv, .tsv, .txt) is read in
      that format with its defaults, keeping `normalize` and a label chosen by name (`y="label"`
      names an .npz array or a CSV column alike; a column index names no array).
    - One .npy or IDX file cannot replace one-file data: those formats need a labels file too,
      which only the train section can name; that is refused with the line to write.
    """
    where = str(path)
    if spec is None:
        return DataSpec(path=where)
    old = spec.name if spec.name != "auto" else _format_of(spec.path)
    new = _format_of(where)
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
    y = spec.y if isinstance(spec.y, str) and old in ("npz", "csv") else "y"
    return DataSpec(path=where, y=y, normalize=spec.normalize)
