"""Inputs a hostile user found: each gets its documented exit code and a message, no traceback."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from netspec.arrays import save_arrays
from netspec.cli import COMMANDS, main
from netspec.errors import EXIT_RUNTIME, EXIT_SPEC, EXIT_USAGE

XOR = """
network Xor {
  input x: [2]
  dense(2) tanh
  dense(1)
}
train Xor { data = "xor.npz"  loss = binary_cross_entropy  optimizer = sgd(lr=0.5)  epochs = 2 }
"""


@pytest.fixture
def xor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    np.savez(tmp_path / "xor.npz", x=x, y=np.array([[0], [1], [1], [0]], np.float32))
    (tmp_path / "xor.net").write_text(XOR)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return code, err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_prints_its_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    assert "usage: netspec" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["train", "xor.net", "--seed", "-1"],
        ["export", "xor.net", "--seed", "-1"],
        ["train", "xor.net", "--lr", "inf"],
        ["export", "xor.net", "--batch", "99999999999999999999"],
    ],
)
def test_out_of_range_numbers_are_usage_errors(
    xor: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, *args)[0] == EXIT_USAGE


@pytest.mark.parametrize("command", ["compile", "export"])
def test_an_output_path_that_is_a_folder_is_refused(
    xor: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (xor / "out").mkdir()
    code, err = run(capsys, command, "xor.net", "-o", "out")
    assert code == EXIT_RUNTIME and "cannot write out: it is a folder" in err


def test_specs_that_are_not_regular_files_are_refused_at_once(
    xor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(xor / "pipe.net")  # reading it would block forever
    code, err = run(capsys, "check", "pipe.net")
    assert code == EXIT_SPEC and "not a regular file" in err
    code, err = run(capsys, "check", "/dev/zero")  # endless
    assert code == EXIT_SPEC and "not a regular file" in err


def test_plot_refuses_missing_or_empty_histories_and_unknown_formats(
    xor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = xor / "run"
    run_dir.mkdir()
    os.mkfifo(run_dir / "history.json")
    assert run(capsys, "plot", "run")[0] == EXIT_RUNTIME
    (run_dir / "history.json").unlink()
    (run_dir / "history.json").write_text('[{"epoch": 1}]')
    code, err = run(capsys, "plot", "run")
    assert code == EXIT_RUNTIME and "no epochs with numbers" in err
    (run_dir / "history.json").write_text('[{"epoch": 1, "loss": 0.5}]')
    code, err = run(capsys, "plot", "run", "-o", "curves.foo")
    assert code == EXIT_USAGE and "use .png, .svg or .pdf" in err


def test_binary_targets_outside_0_1_are_refused(
    xor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.savez(xor / "bad.npz", x=np.zeros((4, 2), np.float32), y=np.array([[0], [1], [2], [-1]]))
    code, err = run(capsys, "train", "xor.net", "--data", "bad.npz", "--out", "r")
    assert code == EXIT_RUNTIME and "binary targets must lie in [0, 1], got -1..2" in err


@pytest.mark.parametrize(
    ("x", "y", "words"),
    [
        (np.full((4, 2), np.nan, np.float32), np.zeros((4, 1)), "features hold NaN"),
        (np.zeros((4, 2), np.float32), np.array([[0], [np.inf], [1], [0]]), "targets hold NaN"),
        (np.zeros((4, 2), np.float32), np.zeros((4, 1), np.complex64), "dtype complex64"),
    ],
)
def test_non_finite_or_complex_data_is_refused_at_load(
    xor: Path, x: np.ndarray, y: np.ndarray, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    np.savez(xor / "bad.npz", x=x, y=y)
    code, err = run(capsys, "train", "xor.net", "--data", "bad.npz", "--out", "r")
    assert code == EXIT_RUNTIME and words in err


def test_weights_that_are_not_floats_are_refused(
    xor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = {
        "dense_1.weight": np.zeros((2, 2), np.complex64),
        "dense_1.bias": np.zeros(2, np.float32),
        "dense_2.weight": np.zeros((1, 2), np.float32),
        "dense_2.bias": np.zeros(1, np.float32),
    }
    save_arrays(xor / "w.npz", weights)
    np.save(xor / "x.npy", np.zeros((1, 2), np.float32))
    code, err = run(capsys, "predict", "xor.net", "--weights", "w.npz", "--input", "x.npy")
    assert code == EXIT_RUNTIME and "has dtype complex64; weights are floats" in err


def test_eval_accepts_a_run_folder_like_export_and_predict(
    xor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "xor.net", "--out", "run"]) == 0
    assert main(["eval", "xor.net", "--weights", "run"]) == 0
    assert "loss" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["compile", "xor.net", "-o", "xor.net"],
        ["export", "xor.net", "-o", "./xor.net"],
        ["export", "xor.net", "--weights", "run", "-o", "run/weights.npz"],
        ["export", "xor.net", "--weights", "run", "-o", "run/normalization.npz"],
        ["predict", "xor.net", "--weights", "run", "--input", "x.npy", "-o", "x.npy"],
        ["predict", "xor.net", "--weights", "run", "--input", "x=x.npy", "-o", "link.npy"],
        ["predict", "xor.net", "--weights", "run", "--input", "x.npy", "-o", "hard.npy"],
        ["predict", "xor.net", "--weights", "run/weights.npz", "--input", "x.npy", "-o", "xor.net"],
        ["predict", "m.onnx", "--input", "x.npy", "-o", "m.onnx"],
        ["graph", "xor.net", "-o", "sub/../xor.net"],
        ["plot", "run", "-o", "run/history.json"],
    ],
)
def test_an_output_that_is_one_of_the_commands_inputs_is_refused_and_left_untouched(
    xor: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from netspec import api
    from netspec.initializers import init_params

    (xor / "run").mkdir()
    (xor / "sub").mkdir()
    analysis = api.check(api.load("xor.net"))
    save_arrays(xor / "run" / "weights.npz", init_params(analysis, np.random.default_rng(0)))
    save_arrays(xor / "run" / "normalization.npz", {"shift": np.zeros(2), "scale": np.ones(2)})
    (xor / "run" / "history.json").write_text('[{"epoch": 1, "loss": 0.5}]')
    np.save(xor / "x.npy", np.ones((4, 2), np.float32))
    (xor / "link.npy").symlink_to(xor / "x.npy")
    os.link(xor / "x.npy", xor / "hard.npy")
    assert main(["export", "xor.net", "-o", "m.onnx"]) == 0
    capsys.readouterr()
    files = {p: p.read_bytes() for p in xor.rglob("*") if p.is_file()}
    code, err = run(capsys, *args)
    assert code == EXIT_USAGE, err
    assert f"the output {Path(args[-1])} is this command's input" in err
    assert "choose another output file" in err
    assert {p: p.read_bytes() for p in xor.rglob("*") if p.is_file()} == files


@pytest.mark.parametrize("command", ["compile", "export", "graph"])
def test_an_output_that_is_a_device_or_a_pipe_is_refused_and_left_in_place(
    xor: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The atomic rename would replace it with a regular file and exit 0 (as root, /dev/null)."""
    os.mkfifo(xor / "pipe")
    (xor / "null").symlink_to("/dev/null")  # the rename would replace the link, not the device
    for name, what in (("pipe", "not a regular file"), ("null", "a device")):
        code, err = run(capsys, command, "xor.net", "-o", name)
        assert code == EXIT_USAGE and f"cannot write {name}: it is {what}" in err, err
    assert (xor / "pipe").is_fifo() and (xor / "null").is_symlink()


@pytest.mark.parametrize(
    "args",
    [
        ["export", "xor.net", "-o", "run/checkpoint.npz"],
        ["compile", "xor.net", "-o", "run/history.json"],
        ["graph", "xor.net", "-o", "run/normalization.npz"],
        ["export", "xor.net", "-o", "run/weights.npz"],
    ],
)
def test_an_output_that_is_a_file_of_a_training_run_is_refused_and_left_untouched(
    xor: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`export -o run/checkpoint.npz` once overwrote the run, and `--resume` and `eval` failed."""
    assert main(["train", "xor.net", "--out", "run", "--curves", "never"]) == 0  # no drawer
    capsys.readouterr()
    files = {p: p.read_bytes() for p in (xor / "run").iterdir()}
    code, err = run(capsys, *args)
    assert code == EXIT_USAGE and "is a file of the training run in run" in err, err
    assert {p: p.read_bytes() for p in (xor / "run").iterdir()} == files


@pytest.mark.parametrize(
    ("args", "example"),
    [
        (["compile", "xor.net"], "out/model.json"),
        (["export", "xor.net"], "out/model.onnx"),
        (["graph", "xor.net"], "out.svg/network.svg"),
    ],
)
def test_an_output_folder_gets_a_hint_in_the_commands_own_format(
    xor: Path, args: list[str], example: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = example.rpartition("/")[0]
    (xor / folder).mkdir()
    code, err = run(capsys, *args, "-o", folder)
    assert code == EXIT_RUNTIME
    assert f"cannot write {folder}: it is a folder" in err
    assert f"hint: name a file, e.g. -o {example}" in err


def test_an_input_with_no_rows_is_bad_data(xor: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "xor.net", "-o", "m.onnx"]) == 0
    np.save(xor / "empty.npy", np.ones((0, 2), np.float32))
    code, err = run(capsys, "predict", "m.onnx", "--input", "empty.npy")
    assert code == EXIT_RUNTIME and "the input has no rows" in err


def test_strings_read_from_files_are_escaped_before_they_reach_the_terminal(
    xor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels in an ONNX model's metadata, layer names in IR JSON and names quoted in messages
    could hold ESC sequences that drive the terminal; each is printed escaped."""
    import json

    import onnx

    from netspec.errors import Diagnostic, Severity, render

    (xor / "xor.net").write_text(XOR.replace("dense(1)", "dense(2)").replace("binary_", ""))
    assert main(["export", "xor.net", "-o", "m.onnx"]) == 0
    model = onnx.load("m.onnx")
    model.metadata_props.add(key="labels", value=json.dumps(["a\x1b[31mred", "b\x07"]))
    onnx.save(model, "esc.onnx")
    np.save(xor / "x.npy", np.ones((2, 2), np.float32))
    capsys.readouterr()
    assert main(["predict", "esc.onnx", "--input", "x.npy"]) == 0
    out = capsys.readouterr().out
    assert "a\\x1b[31mred" in out and "b\\x07" in out and "\x1b" not in out and "\x07" not in out

    assert main(["compile", "xor.net", "-o", "n.json"]) == 0
    ir = json.loads(Path("n.json").read_text())
    net = ir["network"]
    net["name"] = "X\x1b]0;owned\x07"
    net["nodes"][1]["name"] = "d\x1b[2J"
    net["nodes"][2]["inputs"] = ["d\x1b[2J"]
    Path("n.json").write_text(json.dumps(ir))
    capsys.readouterr()
    code = main(["check", "n.json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "d\\x1b[2J" in captured.out and "\x1b" not in captured.out + captured.err

    shown = render(Diagnostic(Severity.ERROR, "no input 'x\x1b[2J'\nsecond line", hint="h\x1b"))
    assert "\x1b" not in shown and "x\\x1b[2J" in shown and "\nsecond line" in shown
