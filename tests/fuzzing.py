"""Input generators shared by the bounded fuzz tests and `make fuzz`'s long mode.

Two sources: mutations of the real specs in specs/ (token deletion, duplication and swaps,
numbers made 0, negative, huge or fractional, truncation, non-UTF-8 bytes) and random
well-formed networks built from each op's attributes.
"""

from __future__ import annotations

import functools
import io
import json
import os
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


# ---- the attacker's input kinds (issue 14) ---------------------------------------------------

BAD_ESCAPES = [r"\x", r"\x4", r"\u12", r"\U0011ffff", r"\N{nope}", r"\q", "\\"]


def attack_spec(rng: random.Random) -> bytes:
    """A spec file an attacker writes: a bad string escape, CRLF line ends around a syntax
    error, or a repetition count far past the layer limit."""
    kind = rng.randrange(3)
    if kind == 0:
        bad = rng.choice(BAD_ESCAPES)
        return f'network N {{ input x: [4]\n relu }}\ntrain N {{ data = "a{bad}b" }}\n'.encode()
    if kind == 1:
        data = mutate(rng.choice(SPECS).read_bytes(), rng) if SPECS else b"network N {\n"
        return data.replace(b"\n", b"\r\n") + rng.choice([b"", b" t = \r\n", b"= \r\n}\r\n"])
    count = rng.choice(["300000000", "3000000000", "1000000000000", "99999999999999999"])
    return f"network N {{ input x: [3]\n dense(3) * {count}\n}}\n".encode()


SECRET = "SECRET_LINE_NEVER_SHOWN"
IR_TARGETS = ["@outside", "@link", "@fifo", "/dev/zero", "@huge-column", "@missing"]


def hostile_ir(rng: random.Random) -> bytes:
    """An IR JSON whose spans (and source) name a file an attacker chose."""
    ir = json.loads(_small_ir())
    target = rng.choice(IR_TARGETS)
    for node in ir["network"]["nodes"]:
        if node.get("span") is not None and rng.random() < 0.7:
            node["span"].update(file=target, line=rng.choice([1, 2, 10**9]))
            if target == "@huge-column":
                node["span"].update(column=300_000_000, end_column=300_000_009)
    ir["network"]["nodes"][1]["op"]["in_features"] = 999  # an error rendered at a span
    ir["network"]["source"] = rng.choice([target, None])
    return json.dumps(ir).encode()


@functools.cache
def _small_ir() -> str:
    text = "network N { input x: [4]\n dense(3) relu\n dense(2) }\n"
    return api.compile_json(api.check(api.load(Path("small.net"), text=text)))


def check_hostile_ir(data: bytes, tmp: Path) -> None:
    """`check` of a hostile IR: located errors, no line of a file outside the IR's folder, no
    hang on a FIFO, no read of /dev/zero, output of bounded size."""
    from netspec.errors import render_all

    root = tmp / "ir-attack"
    ir = root / "ir"
    if not ir.exists():
        ir.mkdir(parents=True)
        (root / "secret.txt").write_text(f"{SECRET}\n{SECRET}\n")
        (ir / "link").symlink_to(root / "secret.txt")
        os.mkfifo(ir / "fifo")
        (ir / "huge.net").write_text("network N {\n  input x: [4]\n}\n")
    names = {
        "@outside": str(root / "secret.txt"),
        "@link": str(ir / "link"),
        "@fifo": str(ir / "fifo"),
        "@huge-column": str(ir / "huge.net"),
        "@missing": str(ir / "missing.net"),
    }
    text = data.decode()
    for key, value in names.items():
        text = text.replace(f'"{key}"', json.dumps(value))
    path = ir / "fuzz.json"
    path.write_text(text)
    try:
        analyse(api.load(path))
    except NetspecError as e:
        shown = render_all(e.diagnostics)
        assert SECRET not in shown and len(shown) < 100_000, shown[:300]


def symlinked_import(rng: random.Random) -> bytes:
    """An import path that climbs through a symlink inside the project."""
    return rng.choice(
        [
            b"d/../../outside/blocks.net",
            b"d/../outside/blocks.net",
            b"d/../../../outside/blocks.net",
            b"e/blocks.net",
            b"d/../../outside/../outside/blocks.net",
        ]
    )


def check_symlinked_import(data: bytes, tmp: Path) -> None:
    """The file read is the file checked: the secret beside the project is never printed."""
    from netspec.errors import render_all

    base = tmp / "import-attack"
    project = base / "project"
    if not project.exists():
        (project / "a" / "b").mkdir(parents=True)
        (project / "outside").mkdir()
        (base / "outside").mkdir()
        (project / "d").symlink_to(project / "a" / "b")
        (project / "e").symlink_to(base / "outside")
        (project / "outside" / "blocks.net").write_text("block B() { relu }\n")
        (base / "outside" / "blocks.net").write_text(f"block B() {{ {SECRET} ( }}\n")
    main = project / "main.net"
    main.write_text(f'import "{data.decode()}"\nnetwork N {{ input x: [4]\n B() }}\n')
    try:
        api.load(main)
    except NetspecError as e:
        assert SECRET not in render_all(e.diagnostics)


def device_output(rng: random.Random) -> bytes:
    return rng.choice([b"fifo", b"null", b"dev-null", b"new.json", b"run/checkpoint.npz"])


def check_device_output(data: bytes, tmp: Path) -> None:
    """An output that is a FIFO or a device is refused and left in place; a new path is not."""
    from netspec.files import atomic_write_text, check_output

    base = tmp / "output-attack"
    if not base.exists():
        base.mkdir()
        os.mkfifo(base / "fifo")
        (base / "null").symlink_to(os.devnull)
    path = Path(os.devnull) if data == b"dev-null" else base / data.decode()
    special = data in (b"fifo", b"null", b"dev-null")
    for write in (lambda: check_output(path, [], "x.json"), lambda: atomic_write_text(path, "")):
        try:
            write()
            assert not special, f"{path} was accepted as an output"
        except NetspecError as e:
            assert special or "cannot write" in str(e), e
    assert not special or not path.is_file()


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
