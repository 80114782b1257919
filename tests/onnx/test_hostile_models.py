"""`predict` on hostile input files: an .npy whose header claims terabytes, ONNX models whose
external data lies outside their folder (or is a FIFO, a folder, a link, missing), whose
strings are not UTF-8, or whose `labels` metadata is not a JSON list. Each is exit 3 with a
message, never "internal error"."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.external_data_helper import convert_model_to_external_data

from netspec import cli
from netspec.errors import EXIT_RUNTIME

SPEC = """network Pair { input x: [2]
  dense(2) }
train Pair { loss = cross_entropy }
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.net").write_text(SPEC)
    assert cli.main(["export", "p.net", "-o", "m.onnx"]) == 0
    np.save(tmp_path / "x.npy", np.ones((2, 2), np.float32))
    return tmp_path


def predict(capsys: pytest.CaptureFixture[str], model: str, inputs: str = "x.npy") -> str:
    capsys.readouterr()
    code = cli.main(["predict", model, "--input", inputs])
    err = capsys.readouterr().err
    assert code == EXIT_RUNTIME, err
    assert "internal error" not in err and "Traceback" not in err, err
    return err


def test_an_npy_input_whose_header_claims_terabytes_is_refused_before_reading(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (400000000000, 2), }"
    header += " " * (117 - len(header)) + "\n"
    (folder / "huge.npy").write_bytes(
        b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 64
    )
    err = predict(capsys, "m.onnx", "huge.npy")
    assert "declares shape [400000000000, 2]" in err and "but holds 64 bytes" in err


def _external(folder: Path, location: str, make: Callable[[Path], None]) -> str:
    """m.onnx with its weights in external data at `location`, made by `make`."""
    model = onnx.load(folder / "m.onnx")
    convert_model_to_external_data(model, location="w.bin", size_threshold=0)
    onnx.save(model, folder / "ext.onnx")
    model = onnx.load(folder / "ext.onnx", load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, folder / "bad.onnx")
    make(folder)
    return "bad.onnx"


EXTERNAL: dict[str, tuple[str, Callable[[Path], None]]] = {
    "outside": ("../w.bin", lambda f: (f.parent / "w.bin").write_bytes((f / "w.bin").read_bytes())),
    "absolute": ("/etc/hostname", lambda f: None),
    "fifo": ("fifo", lambda f: os.mkfifo(f / "fifo")),
    "folder": ("sub", lambda f: (f / "sub").mkdir()),
    "missing": ("nowhere.bin", lambda f: None),
    "link": ("link.bin", lambda f: (f / "link.bin").symlink_to(f / "w.bin")),
}


@pytest.mark.parametrize("case", sorted(EXTERNAL))
def test_external_data_that_is_not_a_regular_file_beside_the_model_is_refused(
    folder: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    location, make = EXTERNAL[case]
    err = predict(capsys, _external(folder, location, make))
    assert "its external data cannot be read" in err, err


def test_a_model_whose_strings_are_not_utf8_is_refused(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = onnx.load(folder / "m.onnx")
    model.metadata_props.add(key="labels", value=json.dumps(["aXYZ", "b"]))
    data = model.SerializeToString().replace(b"XYZ", b"\xff\xfe\xfd")
    (folder / "bad.onnx").write_bytes(data)
    err = predict(capsys, "bad.onnx")
    assert "metadata is not UTF-8 text" in err


@pytest.mark.parametrize("labels", ['{"a": 1}', "not json", "[[1], 2]", '"cat"'])
def test_labels_metadata_that_is_not_a_json_list_of_names_is_refused(
    folder: Path, capsys: pytest.CaptureFixture[str], labels: str
) -> None:
    model = onnx.load(folder / "m.onnx")
    model.metadata_props.add(key="labels", value=labels)
    onnx.save(model, folder / "bad.onnx")
    err = predict(capsys, "bad.onnx")
    assert "its `labels` metadata is not a JSON list of class names" in err
