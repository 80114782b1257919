"""Input generators shared by the bounded fuzz tests and `make fuzz`'s long mode.

Two sources: mutations of the real specs in specs/ (token deletion, duplication and swaps,
numbers made 0, negative, huge or fractional, truncation, non-UTF-8 bytes) and random
well-formed networks built from each op's attributes.
"""

from __future__ import annotations

import functools
import io
import random
import re
import struct
from pathlib import Path

import numpy as np

from netspec import api
from netspec.errors import NetspecError
from netspec.graph import analyse
from netspec.ops import OP_CLASSES

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.net"))
TOKEN = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?(?:e-?\d+)?|\S")
NUMBER = re.compile(rb"\b\d+(?:\.\d+)?\b")
WEIRD_NUMBERS = [b"0", b"-1", b"-7", b"99999999999", b"1e308", b"0.5", b"3.7", b"2147483648"]


def mutate(source: bytes, rng: random.Random) -> bytes:
    """One random corruption of a spec file."""
    tokens = [m.span() for m in TOKEN.finditer(source)]
    kind = rng.randrange(7)
    if not tokens or kind == 0:  # truncate
        return source[: rng.randrange(len(source) + 1)]
    a, b = tokens[rng.randrange(len(tokens))]
    if kind == 1:  # delete a token
        return source[:a] + source[b:]
    if kind == 2:  # duplicate a token
        return source[:b] + b" " + source[a:b] + source[b:]
    if kind == 3:  # swap two tokens
        c, d = tokens[rng.randrange(len(tokens))]
        if c < a:
            a, b, c, d = c, d, a, b
        if b > c:
            return source
        return source[:a] + source[c:d] + source[b:c] + source[a:b] + source[d:]
    if kind == 4:  # change a number
        numbers = [m.span() for m in NUMBER.finditer(source)]
        if not numbers:
            return source
        a, b = numbers[rng.randrange(len(numbers))]
        return source[:a] + rng.choice(WEIRD_NUMBERS) + source[b:]
    if kind == 5:  # insert bytes that are not UTF-8
        return source[:a] + bytes([rng.choice([0xFF, 0xC3, 0x80, 0xFE])]) + source[a:]
    return source[:a] + source[a:b] * rng.randrange(2, 50) + source[b:]  # stutter a token


def random_value(rng: random.Random) -> str:
    return rng.choice(
        [
            "0",
            "1",
            "2",
            "3",
            "-1",
            "7",
            "0.5",
            "1e-3",
            "true",
            "false",
            "same",
            "valid",
            "[1, 2]",
            "[2, 2, 1, 1]",
            '"x"',
            "relu",
            "lstm(3)",
            "[]",
        ]
    )


def random_network(rng: random.Random) -> str:
    """A syntactically valid network of random ops with random attribute values."""
    ops = [cls for cls in OP_CLASSES if cls.kind() != "input"]
    rank = rng.choice([1, 2, 3])
    dims = ", ".join(str(rng.randrange(1, 9)) for _ in range(rank))
    dtype = "int64" if rng.random() < 0.1 else ""
    lines = [f"  input x: {dtype}[{dims}]"]
    for i in range(rng.randrange(1, 6)):
        cls = rng.choice(ops)
        fields = [f for f in cls.model_fields if f != "op"]
        args = []
        if cls.arity is None:
            args = ["x"]
        for name in rng.sample(fields, k=min(len(fields), rng.randrange(0, 3))):
            args.append(f"{name}={random_value(rng)}")
        for _ in cls.positional[: rng.randrange(0, len(cls.positional) + 1)]:
            args.insert(0, random_value(rng))
        lines.append(f"  t{i} = {cls.kind()}({', '.join(args)})")
    return "network Fuzz {\n" + "\n".join(lines) + "\n}\n"


def check_bytes(data: bytes, tmp: Path) -> None:
    """Run the front end on one input; only NetspecError (with a location) may escape."""
    path = tmp / "fuzz.net"
    path.write_bytes(data)
    try:
        net = api.load(path)
        analyse(net)
    except NetspecError as e:
        assert e.diagnostics, "a NetspecError without diagnostics"
        assert all(d.span is not None for d in e.diagnostics), [d.message for d in e.diagnostics]


def check_json_bytes(data: bytes, tmp: Path) -> None:
    """The same contract for IR JSON (what `compile` writes and `check` reads back)."""
    path = tmp / "fuzz.json"
    path.write_bytes(data)
    try:
        analyse(api.load(path))
    except NetspecError as e:
        assert e.diagnostics, "a NetspecError without diagnostics"


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """A binary file's corruption: truncation, a flipped byte, or bytes inserted."""
    if not data:
        return data
    at = rng.randrange(len(data))
    kind = rng.randrange(3)
    if kind == 0:
        return data[:at]
    if kind == 1:
        return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]
    return data[:at] + rng.randbytes(rng.randrange(1, 16)) + data[at:]


def check_binary_bytes(data: bytes, suffix: str, tmp: Path) -> None:
    """Data (.npz, .npy pair, .idx, .csv) and weight files: loaded, or a NetspecError."""
    from netspec.arrays import load_arrays
    from netspec.recipe import DataSpec
    from netspec.runs import load_checkpoint
    from netspec.training.data import load_data

    path = tmp / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        if suffix == ".npz":
            load_arrays(path)
            load_checkpoint(path)
        labels = None if suffix in (".npz", ".csv") else str(path)
        load_data(DataSpec(path=str(path), labels=labels), (4,))
    except NetspecError as e:
        assert e.diagnostics and e.exit_code == 3, e


@functools.cache
def binary_originals() -> dict[str, bytes]:
    """One valid file per format the loaders read: 16 samples of 4 features."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = np.arange(16) % 3
    out = {}
    for suffix, save in (
        (".npz", lambda f: np.savez(f, x=x, y=y)),
        (".npy", lambda f: np.save(f, x)),
    ):
        buf = io.BytesIO()
        save(buf)
        out[suffix] = buf.getvalue()
    out[".idx"] = b"\0\0\x0d\x02" + struct.pack(">ii", 16, 4) + x.astype(">f4").tobytes()
    out[".csv"] = "".join(
        f"{','.join(map(str, r))},{c}\n" for r, c in zip(x, y, strict=True)
    ).encode()
    return out


def check_onnx_bytes(data: bytes, tmp: Path) -> None:
    """`netspec import`'s contract on any file: a spec and weights, or a NetspecError (exit 3)
    and no output file."""
    path = tmp / "fuzz.onnx"
    path.write_bytes(data)
    out = tmp / "fuzz_imported.net"
    out.unlink(missing_ok=True)
    try:
        api.import_onnx(path, out, None)
    except NetspecError as e:
        assert e.diagnostics and e.exit_code == 3, e
        assert not out.exists()


@functools.cache
def onnx_original() -> bytes:
    """A small model with a conv, batchnorm, pool, flatten, dense and softmax to corrupt."""
    from netspec.onnx.export import to_onnx_model

    text = (
        "network Small {\n  input x: [1, 6, 6]\n  c = conv2d(2, 3, padding=1)\n  batchnorm\n"
        "  relu\n  maxpool2d(2)\n  flatten\n  fc = dense(3)\n}\n"
    )
    analysis = api.check(api.load("small.net", text=text))
    from netspec.initializers import init_params

    params = init_params(analysis, np.random.default_rng(0))
    return to_onnx_model(analysis, params, fold_batchnorm=False).SerializeToString()
