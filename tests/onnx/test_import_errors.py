"""Issue 17, criterion 4: a model `netspec import` cannot use is one clear error, exit 3, no
traceback and no output file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.fuzzing import onnx_original
from tests.subprocess_cli import netspec


def _refused(model: Path, tmp: Path, *needles: str) -> None:
    out = tmp / "out.net"
    r = netspec("import", model, "-o", out, "--weights-out", tmp / "out.npz")
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr
    assert not out.exists() and not (tmp / "out.npz").exists()


def _graph(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto] = ()) -> onnx.ModelProto:  # type: ignore[assignment]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    g = helper.make_graph(nodes, "g", [x], [y], initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_a_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(onnx_original()[:200])
    _refused(path, tmp_path, "not an ONNX model")


def test_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_text("network X {\n  input x: [4]\n}\n")
    _refused(path, tmp_path, "not an ONNX model")


def test_external_data_outside_the_model_s_folder(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(np.ones(16, np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "64")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    model = _graph([helper.make_node("MatMul", ["x", "w"], ["y"], "mm")], [w])
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    _refused(path, tmp_path, "not a file inside the model's folder")


def test_a_cycle(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], "first"),
        helper.make_node("Relu", ["a"], ["b"], "second"),
        helper.make_node("Relu", ["a"], ["y"], "third"),
    ]
    path = tmp_path / "m.onnx"
    path.write_bytes(_graph(nodes).SerializeToString())  # onnx.save would check it
    _refused(path, tmp_path, "cycle", "first")


def test_a_dangling_input(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    nodes = [helper.make_node("Add", ["x", "nowhere"], ["y"], "adder")]
    path.write_bytes(_graph(nodes).SerializeToString())
    _refused(path, tmp_path, "nowhere", "adder")


def test_unsupported_ops_are_listed_in_one_error(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Cos", ["x"], ["a"], "cos1"),
        helper.make_node("Sin", ["a"], ["b"], "sin1"),
        helper.make_node("Cos", ["b"], ["y"], "cos2"),
    ]
    path = tmp_path / "m.onnx"
    onnx.save(_graph(nodes), path)
    _refused(path, tmp_path, "Cos x2 (first: cos1, cos2)", "Sin x1 (first: sin1)")


def test_a_good_model_imports_and_checks(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(onnx_original())
    r = netspec("import", path, "-o", tmp_path / "m.net", "--weights-out", tmp_path / "m.npz")
    assert r.returncode == 0, r.stderr
    assert netspec("check", tmp_path / "m.net").returncode == 0
    assert set(np.load(tmp_path / "m.npz")) >= {"c.weight", "c.bias", "fc.weight"}
