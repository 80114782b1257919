"""The error contract, as a user meets it: `netspec` run as a subprocess on broken specs, data,
weights and ONNX files exits non-zero with one paragraph on stderr and never a traceback;
resource guards refuse before allocating; specs run nothing the user did not write."""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from netspec.cli import main
from netspec.errors import EXIT_RUNTIME, EXIT_SPEC, EXIT_USAGE
from tests.subprocess_cli import netspec

SPEC = """
network Tiny {
  input x: [4]
  dense(8) tanh
  dense(3)
}
train Tiny {
  data = "d.npz"
  loss = cross_entropy
  optimizer = adam(lr=0.02)
  epochs = 3
  batch = 16
}
"""


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """The contract: the documented exit code, one paragraph on stderr naming the problem."""
    err = proc.stderr.strip()
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in err and "Traceback" not in proc.stdout
    assert "internal error" not in err, err  # a netspec bug, caught by main's last resort
    assert err and "\n\n" not in err, err  # one paragraph
    assert "error" in err
    for word in words:
        assert word in err, err


@pytest.fixture
def project(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.argmax(x[:, :3], axis=1))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.argmax(x[:, :3], axis=1))
    (tmp_path / "tiny.net").write_text(SPEC, encoding="utf-8")
    return tmp_path


def _spec_with_data(project: Path, data: str) -> str:
    text = SPEC.replace('data = "d.npz"', f"data = {data}")
    (project / "t.net").write_text(text, encoding="utf-8")
    return "t.net"


def _idx(dims: tuple[int, ...], payload: bytes) -> bytes:
    return b"\0\0\x08" + bytes([len(dims)]) + struct.pack(f">{len(dims)}i", *dims) + payload


def _npz_with_lying_header(path: Path) -> None:
    """An archive whose x member claims 10^9 rows in a few bytes (a decompression bomb's
    shape): refused from the zip directory before anything is inflated."""
    import io

    head = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**9, 4)}
    np.lib.format.write_array_header_1_0(head, header)  # type: ignore[arg-type]
    y = io.BytesIO()
    np.save(y, np.zeros(10**9 % 64 + 64, np.int64))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", head.getvalue() + bytes(4096))
        z.writestr("y.npy", y.getvalue())


# ---- broken data files: exit 3 --------------------------------------------------------------

BROKEN_DATA: dict[str, tuple[Callable[[Path], str], str]] = {
    "truncated npy": (
        lambda p: (
            (p / "t.npy").write_bytes((p / "x.npy").read_bytes()[:200]),
            _spec_with_data(p, 'npy(x="t.npy", labels="y.npy")'),
        )[1],
        "truncated or corrupt",
    ),
    "object npz": (
        lambda p: (
            np.savez(p / "o.npz", x=np.array([{}] * 64, dtype=object), y=np.zeros(64)),
            _spec_with_data(p, '"o.npz"'),
        )[1],
        "never unpickles",
    ),
    "npz header claims a billion rows": (
        lambda p: (_npz_with_lying_header(p / "b.npz"), _spec_with_data(p, '"b.npz"'))[1],
        "declares an array of shape",
    ),
    "not a zip": (
        lambda p: ((p / "z.npz").write_bytes(b"PK\x03\x04" * 9), _spec_with_data(p, '"z.npz"'))[1],
        "not a readable .npz archive",
    ),
    "non-UTF-8 csv": (
        lambda p: ((p / "c.csv").write_bytes(b"\xff\xfe1,2\n"), _spec_with_data(p, '"c.csv"'))[1],
        "not UTF-8",
    ),
    "IDX header claims 8 GB": (
        lambda p: (
            (p / "h.idx").write_bytes(_idx((2**31 - 1, 4), b"\0" * 64)),
            _spec_with_data(p, 'idx(x="h.idx", labels="h.idx")'),
        )[1],
        "8,589,934,588 bytes",
    ),
    "IDX negative dimension": (
        lambda p: (
            (p / "n.idx").write_bytes(_idx((-5, 4), b"\0" * 64)),
            _spec_with_data(p, 'idx(x="n.idx", labels="n.idx")'),
        )[1],
        "negative dimension",
    ),
    "missing data": (lambda p: _spec_with_data(p, '"nope.npz"'), "does not exist"),
}


@pytest.mark.parametrize("case", list(BROKEN_DATA))
def test_broken_data_files_exit_3_with_one_paragraph_and_no_traceback(
    project: Path, case: str
) -> None:
    make, words = BROKEN_DATA[case]
    spec = make(project)
    proc = netspec("train", spec, "--out", "run", cwd=project)
    assert_clean_failure(proc, EXIT_RUNTIME, words)
    assert not (project / "run" / "weights.npz").exists()


# ---- broken weights, checkpoints and models: exit 3 ------------------------------------------


def _weights_cases(p: Path) -> dict[str, tuple[list[str], str]]:
    np.savez(p / "obj.npz", **{"dense_1.weight": np.array([None] * 32, dtype=object)})
    np.savez(p / "str.npz", **{"dense_1.weight": np.array([["a"] * 4] * 8)})
    (p / "pickle.npz").write_bytes(b"\x80\x04\x95" + b"\0" * 20)  # a pickle's opening bytes
    (p / "empty.npz").write_bytes(b"")
    ck = p / "ck"
    ck.mkdir()
    np.savez(ck / "checkpoint.npz", meta=np.frombuffer(b"\xff{", np.uint8))
    (p / "garbage.onnx").write_bytes(b"\x08\x07 not protobuf \xff")
    (p / "empty.onnx").write_bytes(b"")
    _invalid_onnx(p / "invalid.onnx")
    return {
        "object arrays": (["eval", "tiny.net", "--weights", "obj.npz"], "unpickling"),
        "string arrays": (["eval", "tiny.net", "--weights", "str.npz"], "not numbers"),
        "a pickle": (["eval", "tiny.net", "--weights", "pickle.npz"], "not a readable .npz"),
        "empty weights": (["export", "tiny.net", "--weights", "empty.npz"], "not a readable"),
        "checkpoint meta": (["train", "tiny.net", "--resume", "ck"], "not a netspec checkpoint"),
        "garbage onnx": (["predict", "garbage.onnx", "--input", "x.npy"], "not a readable ONNX"),
        "empty onnx": (["predict", "empty.onnx", "--input", "x.npy"], "not a valid ONNX"),
        "onnx the checker refuses": (
            ["predict", "invalid.onnx", "--input", "x.npy"],
            "not a valid ONNX model",
        ),
    }


def _invalid_onnx(path: Path) -> None:
    """Well-formed protobuf, invalid graph: a node reads a tensor nothing defines."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["undefined"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    onnx.save(helper.make_model(graph), str(path))


WEIGHT_CASES = [
    "object arrays",
    "string arrays",
    "a pickle",
    "empty weights",
    "checkpoint meta",
    "garbage onnx",
    "empty onnx",
    "onnx the checker refuses",
]


@pytest.mark.parametrize("case", WEIGHT_CASES)
def test_broken_weights_checkpoints_and_models_exit_3(project: Path, case: str) -> None:
    args, words = _weights_cases(project)[case]
    assert_clean_failure(netspec(*args, cwd=project), EXIT_RUNTIME, words)


def test_the_onnx_checker_runs_before_onnxruntime_sees_a_model(project: Path) -> None:
    from netspec.onnx import runtime

    _invalid_onnx(project / "invalid.onnx")
    with pytest.raises(runtime.NetspecError, match="not a valid ONNX model"):
        runtime.run_onnx(project / "invalid.onnx", {"x": np.zeros((1, 4), np.float32)})


# ---- broken specs and usage ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"network N { input x: [4]\n  dense(3)\xff\n}", "not UTF-8"),
        (b"network N { input x: [4]\n  dense(" + b"[" * 20000 + b"\n}", "error"),
        (b"network N { input x: [4]\n relu * 300000 }", "200,000 layers"),
    ],
)
def test_broken_specs_exit_1_in_bounded_time(project: Path, content: bytes, words: str) -> None:
    (project / "bad.net").write_bytes(content)
    proc = netspec("check", "bad.net", cwd=project)
    assert proc.returncode == EXIT_SPEC and "Traceback" not in proc.stderr, proc.stderr
    assert words in proc.stderr


def test_astronomical_sizes_are_checked_in_bounded_time_and_refused_for_training(
    project: Path,
) -> None:
    text = SPEC.replace("input x: [4]", "input x: [99999999999, 99999999999]\n  flatten")
    (project / "huge.net").write_text(text.replace("dense(8)", "dense(99999999)"))
    check = netspec("check", "huge.net", cwd=project)
    assert check.returncode == 0 and "PiB of activations" in check.stdout
    proc = netspec("train", "huge.net", "--out", "run", cwd=project)
    assert_clean_failure(proc, EXIT_RUNTIME, "needs an estimated", "EiB")


def test_a_spec_of_100000_layers_is_checked_without_hitting_the_recursion_limit(
    project: Path,
) -> None:
    (project / "long.net").write_text("network N { input x: [4]\n relu * 100000\n}\n")
    proc = netspec("check", "long.net", "--json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["layers"]) == 100001


@pytest.mark.parametrize(
    "args",
    [
        ["train", "tiny.net", "--max-memory", "lots"],
        ["predict", "x.onnx", "--max-memory", "-1G"],
        ["train", "tiny.net", "--epochs", "0"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2_without_a_traceback(project: Path, args: list[str]) -> None:
    proc = netspec(*args, cwd=project)
    assert proc.returncode == EXIT_USAGE and "Traceback" not in proc.stderr
    assert "error:" in proc.stderr


# ---- resource guards ---------------------------------------------------------------------------


def test_train_refuses_a_network_over_max_memory_naming_the_estimate_and_largest_layers(
    project: Path,
) -> None:
    proc = netspec("train", "tiny.net", "--out", "run", "--max-memory", "2K", cwd=project)
    assert_clean_failure(proc, EXIT_RUNTIME, "needs an estimated", "dense_1", "limit of 2.0 KiB")
    assert not (project / "run").exists()  # refused before anything was written


def test_the_default_limit_refuses_a_network_bigger_than_the_machine(project: Path) -> None:
    (project / "big.net").write_text(
        SPEC.replace("dense(8) tanh", "dense(4000000) tanh"), encoding="utf-8"
    )
    proc = netspec("train", "big.net", "--batch", "100000", cwd=project)
    assert_clean_failure(proc, EXIT_RUNTIME, "needs an estimated", "TiB", "dense_1")


def test_predict_refuses_over_max_memory_for_specs_and_onnx_models(project: Path) -> None:
    from netspec import api

    analysis = api.check(api.load(project / "tiny.net"))
    api.export(analysis, project / "tiny.onnx", None)
    for model in (["tiny.onnx"], ["tiny.net", "--weights", "w.npz"]):
        if model[0] == "tiny.net":
            from netspec.initializers import init_params

            params = init_params(analysis, np.random.default_rng(0), np.float32)
            np.savez(project / "w.npz", **params)  # type: ignore[arg-type]
        proc = netspec("predict", *model, "--input", "x.npy", "--max-memory", "1K", cwd=project)
        assert_clean_failure(proc, EXIT_RUNTIME, "needs an estimated", "(batch 64)")
        ok = netspec("predict", *model, "--input", "x.npy", "--max-memory", "1M", cwd=project)
        assert ok.returncode == 0, ok.stderr


def test_an_unwritable_output_folder_fails_before_training(project: Path) -> None:
    (project / "a_file").write_text("")
    proc = netspec("train", "tiny.net", "--out", "a_file/run", cwd=project)
    assert_clean_failure(proc, EXIT_RUNTIME, "a_file/run is not writable", "--out")


def test_too_little_free_disk_fails_before_training(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 100))  # type: ignore[attr-defined]
    code = main(["train", str(project / "tiny.net"), "--out", str(project / "run")])
    assert code == EXIT_RUNTIME
    assert "has 100 B free" in capsys.readouterr().err
    assert list((project / "run").iterdir()) == []


def test_a_disk_that_fills_mid_run_keeps_the_last_good_checkpoint(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from netspec import files
    from netspec.runs import load_checkpoint
    from netspec.training import loop as train

    monkeypatch.setattr(train, "CHECKPOINT_INTERVAL_S", 0.0)  # a checkpoint every epoch
    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] >= 3:  # epochs 1 and 2 fsync their checkpoint; epoch 3's fails
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    run = project / "run"
    code = main(["train", str(project / "tiny.net"), "--out", str(run), "--epochs", "5"])
    err = capsys.readouterr().err
    assert code == EXIT_RUNTIME
    assert "No space left on device" in err and "holds the last good epoch" in err
    assert load_checkpoint(run).meta["epoch"] == 2
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


# ---- nothing run that the user did not write -----------------------------------------------------


def test_an_import_outside_the_project_is_refused_unless_allowed(tmp_path: Path) -> None:
    outside = tmp_path / "lib.net"
    outside.write_text("block B() { relu }\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.net").write_text(
        'import "../lib.net"\nnetwork N { input x: [4]\n B() }\n', encoding="utf-8"
    )
    proc = netspec("check", "main.net", cwd=project)
    assert_clean_failure(proc, EXIT_SPEC, "leaves the project folder", "main.net:1:")
    allowed = netspec("check", "main.net", "--allow-outside-imports", cwd=project)
    assert allowed.returncode == 0, allowed.stderr


def test_an_import_through_a_symlink_loads_the_path_it_checked(tmp_path: Path) -> None:
    """`d/../../outside` with `d` a symlink two folders deep: resolved, it is inside the project;
    collapsed textually (os.path.normpath), it is a file beside the project. The file checked
    must be the file read, and the one outside is never read nor printed."""
    project = tmp_path / "project"
    (project / "a" / "b").mkdir(parents=True)
    (project / "outside").mkdir()
    (project / "d").symlink_to(project / "a" / "b")
    (project / "outside" / "blocks.net").write_text("block B() { relu }\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "blocks.net").write_text("block B() { SECRET_LINE ( }\n")
    (project / "main.net").write_text(
        'import "d/../../outside/blocks.net"\nnetwork N { input x: [4]\n B() }\n'
    )
    proc = netspec("check", "main.net", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "SECRET_LINE" not in proc.stdout + proc.stderr
    # The other way round: resolved outside, textually inside: refused, and nothing printed.
    (project / "d").unlink()
    (project / "d").symlink_to(project)
    (project / "main.net").write_text(
        'import "d/../outside/blocks.net"\nnetwork N { input x: [4]\n B() }\n'
    )
    proc = netspec("check", "main.net", cwd=project)
    assert_clean_failure(proc, EXIT_SPEC, "leaves the project folder")
    assert "SECRET_LINE" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("command", ["check", "compile", "export", "graph", "predict"])
def test_every_command_that_loads_a_spec_takes_the_flag_its_refusal_names(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    from netspec import api
    from netspec.arrays import save_arrays
    from netspec.initializers import init_params

    (tmp_path / "lib.net").write_text("block B() { relu }\n")
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    Path("main.net").write_text(
        'import "../lib.net"\nnetwork N { input x: [4]\n B()\n dense(2) }\n'
    )
    analysis = api.check(api.load("main.net", allow_outside_imports=True))
    save_arrays(Path("weights.npz"), init_params(analysis, np.random.default_rng(0)))
    np.save("x.npy", np.ones((2, 4), np.float32))
    extra = {
        "compile": ["-o", "n.json"],
        "export": ["-o", "n.onnx"],
        "graph": ["-o", "n.dot"],
        "predict": ["--weights", "weights.npz", "--input", "x.npy"],
    }.get(command, [])
    assert main([command, "main.net", *extra]) == EXIT_SPEC
    assert "pass --allow-outside-imports" in capsys.readouterr().err
    assert main([command, "main.net", *extra, "--allow-outside-imports"]) == 0


def _ir_naming(project: Path, file: str, column: int = 3, source: str | None = None) -> Path:
    """tiny.net compiled to ir/tiny.json, its first dense's span moved to `file` and made an
    error there (in_features that do not fit), so that `check` renders that span."""
    ir = project / "ir"
    ir.mkdir(exist_ok=True)
    proc = netspec("compile", "tiny.net", "-o", "ir/tiny.json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((ir / "tiny.json").read_text())
    node = data["network"]["nodes"][1]
    node["op"]["in_features"] = 5
    node["span"].update(file=file, line=1, column=column, end_line=1, end_column=column + 5)
    if source is not None:
        data["network"]["source"] = source
    (ir / "bad.json").write_text(json.dumps(data))
    return ir / "bad.json"


@pytest.mark.parametrize("kind", ["outside", "symlink", "fifo", "dev-zero", "huge-column"])
def test_spans_in_ir_json_open_no_file_outside_its_folder_nor_any_special_file(
    project: Path, kind: str
) -> None:
    """An IR's span once printed a line of any file it named (/etc/shadow), blocked forever on
    a FIFO, read /dev/zero until memory ran out, and wrote column 300000000 as that many
    spaces. The error is still located; the source line shows only for files beside the IR."""
    (project / "secret.txt").write_text("SECRET_LINE\n")
    ir = project / "ir"
    ir.mkdir()
    file, column = {
        "outside": (str(project / "secret.txt"), 3),
        "symlink": ("ir/link.txt", 3),
        "fifo": ("ir/fifo", 3),
        "dev-zero": ("/dev/zero", 3),
        "huge-column": ("tiny.net", 300_000_000),
    }[kind]
    (ir / "link.txt").symlink_to(project / "secret.txt")
    os.mkfifo(ir / "fifo")
    if kind == "huge-column":  # the spec beside the IR: its line is shown, the caret clamped
        (ir / "tiny.net").write_text(SPEC.lstrip(), encoding="utf-8")
        file = str(ir / "tiny.net")
    bad = _ir_naming(project, file, column)
    proc = netspec("check", bad, cwd=project)
    assert_clean_failure(proc, EXIT_SPEC, f"{file}:1:{column}: error: dense", "in_features=5")
    assert "SECRET_LINE" not in proc.stdout + proc.stderr
    assert len(proc.stderr) < 2000, len(proc.stderr)
    if kind == "huge-column":
        assert "network Tiny {" in proc.stderr


@pytest.mark.parametrize("source", ["/dev/zero", "ir/fifo", "secret.txt"])
def test_an_ir_source_that_is_special_or_outside_its_folder_is_neither_hashed_nor_kept(
    project: Path, source: str
) -> None:
    (project / "secret.txt").write_text("SECRET_LINE\n")
    (project / "ir").mkdir()
    os.mkfifo(project / "ir" / "fifo")
    bad = _ir_naming(project, "tiny.net", source=str(project / source))
    data = json.loads(bad.read_text())
    data["network"]["nodes"][1]["op"]["in_features"] = None
    bad.write_text(json.dumps(data))
    proc = netspec("export", bad, "-o", "m.onnx", cwd=project)
    assert proc.returncode == 0, proc.stderr
    import onnx

    meta = {p.key: p.value for p in onnx.load(project / "m.onnx").metadata_props}
    assert "source" not in meta and "source_sha256" not in meta


AUDIT = """
import sys
opened, forbidden = [], []
def hook(event, args):
    if event == "open" and isinstance(args[0], str):
        opened.append(args[0])
    elif event == "subprocess.Popen" and list(args[1])[:4] == [sys.executable, "-m", "netspec",
                                                              "plot"]:
        pass  # train's curves drawer (--curves auto): this interpreter, netspec's own command
    elif event.startswith(("socket.", "subprocess.", "os.system", "os.exec", "os.spawn",
                           "os.posix_spawn", "pickle.")):
        forbidden.append(event)
sys.addaudithook(hook)
from netspec.cli import main
code = main(sys.argv[1:])
sys.addaudithook(lambda e, a: None)
import json, os
print(json.dumps({"code": code, "opened": sorted(set(opened)), "forbidden": forbidden}))
"""


def _audited(args: list[str], cwd: Path) -> tuple[int, set[Path], list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", AUDIT, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # Files of the interpreter, the libraries and netspec itself are not the spec's doing.
    ignore = (
        sys.prefix,
        sys.base_prefix,
        str(Path(__file__).resolve().parent.parent / "netspec"),
        str(Path.home() / ".cache"),  # libraries' own caches (matplotlib's font list)
    )
    user = {
        (cwd / p).resolve()
        for p in result["opened"]
        if not os.path.abspath(p).startswith(ignore)
        and not p.startswith(("/proc", "/sys", "/dev"))
        and "__editable__" not in p  # setuptools' import hook, not a file
    }
    return result["code"], user, result["forbidden"]


def test_check_and_train_read_only_the_spec_its_imports_and_its_data(project: Path) -> None:
    (project / "blocks.net").write_text("block B() { dense(8) tanh }\n")
    (project / "secret.txt").write_text("not for netspec")
    text = 'import "blocks.net"\n' + SPEC.replace("dense(8) tanh", "B()")
    (project / "main.net").write_text(text, encoding="utf-8")
    code, opened, forbidden = _audited(["check", "main.net"], project)
    assert code == 0 and forbidden == []
    assert opened <= {project / "main.net", project / "blocks.net"}, opened
    code, opened, forbidden = _audited(["train", "main.net", "--out", "run"], project)
    assert code == 0 and forbidden == []
    run = project / "run"
    reads = {p for p in opened if run not in (p, p.parent)}  # run/: its own outputs
    assert reads <= {project / "main.net", project / "blocks.net", project / "d.npz"}, reads
