"""The command line contract: exit codes, JSON, and no traceback for any bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netspec.cli import main

LENET = """
network Small {
  input x: [64]
  dense(32) tanh
  dense(10)
}
"""


def write(tmp_path: Path, text: str, name: str = "t.net") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_prints_a_table_and_totals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", write(tmp_path, LENET)]) == 0
    out = capsys.readouterr().out
    assert "dense_1" in out and "[32]" in out
    assert "parameters: 2,410 trainable" in out
    assert "1 MAC = one multiply-accumulate" in out


def test_check_json_has_the_documented_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", write(tmp_path, LENET), "--json", "--batch", "8"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_params"] == data["trainable_params"] == 2410
    assert data["macs"] == 64 * 32 + 32 * 10
    assert data["activation_bytes"] == 8 * 4 * (64 + 32 + 32 + 10)
    assert data["layers"][1]["output_shape"] == [32]


def test_a_spec_error_exits_1_with_a_located_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "network N { input x: [4]\n  dense(3, bais=false)\n}")
    assert main(["check", path]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2:12: error:" in err and "did you mean 'bias'?" in err


def test_warnings_fail_only_with_strict(tmp_path: Path) -> None:
    path = write(tmp_path, "network N { input x: [4]\n side = x -> dense(2)\n x -> relu }")
    assert main(["check", path]) == 0
    assert main(["check", path, "--strict"]) == 1


def test_compile_writes_json_that_check_accepts(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    assert main(["compile", write(tmp_path, LENET), "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["layers"]["dense_1"]["output_shape"] == [32]
    assert main(["check", str(out)]) == 0
    from netspec import api

    assert api.load(out) == api.load(Path(tmp_path / "t.net"))


def test_schema_prints_the_ir_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Network" and "nodes" in schema["properties"]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert main(["check"]) == 2


def test_missing_file_and_bad_json_are_clean_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(tmp_path / "nope.net")]) == 1
    assert main(["check", write(tmp_path, "{not json", "x.json")]) == 1
    assert main(["check", write(tmp_path, '{"name": 3}', "y.json")]) == 1
    err = capsys.readouterr().err
    assert "no such file" in err and "is not a valid netspec IR" in err


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe network", b"network N { input x: [4]\n" + b"(" * 5000, b"", b"network"],
)
def test_hostile_files_never_show_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.net"
    path.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "netspec", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "error" in proc.stderr
    assert "internal error" not in proc.stderr


def test_a_bug_in_netspec_is_one_line_naming_it_and_debug_shows_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from netspec import api

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(api, "check_file", broken)
    spec = write(tmp_path, LENET)
    assert main(["check", spec]) == 3
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError: a bug" in err and "--debug" in err
    for args in (["--debug", "check", spec], ["check", spec, "--debug"]):  # before or after
        with pytest.raises(ZeroDivisionError):
            main(args)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("network N { input x: [4]\n  dense(3 }", "expected"),  # a parse error
        (
            "network N { input x: [4]\n  dense(3, bais=false)\n}",
            "did you mean 'bias'?",
        ),  # expansion
        ("network N { input x: [4]\n  conv2d(3, 3)\n}", "conv2d"),  # shapes
    ],
    ids=["parse", "expansion", "shape"],
)
def test_check_json_answers_every_spec_error_with_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, words: str
) -> None:
    assert main(["check", write(tmp_path, text), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is False
    errors = [d for d in data["diagnostics"] if d["severity"] == "error"]
    assert errors and words in json.dumps(errors)
    assert errors[0]["location"]["file"].endswith("t.net")


@pytest.mark.parametrize("command", ["compile", "graph", "export", "predict"])
def test_commands_refuse_to_overwrite_their_own_spec_or_an_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    (tmp_path / "lib.net").write_text("block B() { dense(W) relu }\n")
    (tmp_path / "consts.net").write_text("const W = 3\n")  # no layer of its own comes from here
    spec = write(
        tmp_path, 'import "lib.net"\nimport "consts.net"\nnetwork N { input x: [4]\n B() }\n'
    )
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    np.savez(tmp_path / "w.npz", **{"dense_1.weight": np.zeros((3, 4), np.float32)})
    extra = ["--weights", str(tmp_path / "w.npz"), "--input", str(tmp_path / "x.npy")]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    targets = ("t.net", "./t.net", "lib.net", "consts.net")
    for target in (str(tmp_path / t) for t in targets):
        args = [command, spec, "-o", target, *(extra if command == "predict" else [])]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"the output {target} is this command's input" in err
        assert "choose another output file" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize(
    ("command", "name"), [("compile", "m.json"), ("graph", "n.svg"), ("export", "m.onnx")]
)
def test_an_output_under_a_file_is_a_clear_error_not_an_internal_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, name: str
) -> None:
    spec = write(tmp_path, "network N { input x: [4]\n dense(2) }\n")
    (tmp_path / "data.npz").write_bytes(b"not a folder")
    target = tmp_path / "data.npz" / name
    assert main([command, spec, "-o", str(target)]) == 3
    err = capsys.readouterr().err
    assert f"cannot write {target}" in err and "data.npz is a file, not a folder" in err
    assert "internal error" not in err
    assert (tmp_path / "data.npz").read_bytes() == b"not a folder"


def test_an_embedding_into_conv1d_fails_under_strict_with_the_transpose_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "network N { input t: int64[20]\n embedding(50, 32)\n conv1d(64, 3) }")
    assert main(["check", path]) == 0
    assert main(["check", path, "--strict"]) == 1
    assert "transpose(perm=[1, 0])" in capsys.readouterr().err


def test_the_totals_line_names_the_non_trainable_count_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", write(tmp_path, "network N { input x: [3, 8]\n batchnorm }")]) == 0
    out = capsys.readouterr().out
    assert "6 non-trainable (running statistics" in out and "+N" not in out
