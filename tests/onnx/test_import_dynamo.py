"""The forms torch's dynamo exporter (torch.onnx.export(dynamo=True)) writes, each in a small
hand-built graph: ReduceMean over the spatial axes (its adaptive average pool), a Reshape to
the traced batch size ([1, C], its flatten), CastLike of every literal and, unoptimised, a conv
without bias as an all-zero bias it computes. Each imports as netspec's layers, and the
re-export gives onnxruntime's output of the original."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from netspec import api
from netspec.errors import NetspecError
from netspec.importer import Imported, import_model
from netspec.ir import Analysis
from netspec.onnx.export import to_onnx_model
from tests.onnx.test_import_ops import _ort

SHAPE = [1, 4, 3, 5]  # the dynamo exporter traces a static batch of 1
RNG = np.random.default_rng(0)


def _model(
    nodes: list[onnx.NodeProto],
    out: list[int],
    inits: dict[str, np.ndarray] | None = None,
    opset: int = 18,
) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out)
    tensors = [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()]
    g = helper.make_graph(nodes, "g", [x], [y], initializer=tensors)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _import(model: onnx.ModelProto, tmp: Path) -> tuple[Imported, Analysis, list[str]]:
    """Import, check, and compare the re-export's output with the original's."""
    path = tmp / "m.onnx"
    onnx.save(model, path)
    imported = import_model(path)
    analysis = api.check(api.load(tmp / "m.net", text=imported.text))
    ops = [analysis.network.node(n).op.op for n in analysis.order][1:]
    x = RNG.standard_normal(SHAPE).astype(np.float32)
    (name,) = (n.name for n in analysis.network.inputs)
    back = to_onnx_model(analysis, imported.weights)
    want, got = _ort(model, {"x": x}), _ort(back, {name: x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return imported, analysis, ops


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


@pytest.mark.parametrize(
    ("axes", "opset"), [([2, 3], 18), ([-1, -2], 18), ([3, 2], 13)], ids=["18", "negative", "13"]
)
def test_a_mean_over_the_spatial_axes_is_the_global_average_pool(
    axes: list[int], opset: int, tmp_path: Path
) -> None:
    """Opset 18 gives the axes as an input, earlier opsets as an attribute."""
    if opset >= 18:
        node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1)
        inits = {"axes": _i64(*axes)}
    else:
        node = helper.make_node("ReduceMean", ["x"], ["y"], axes=axes, keepdims=1)
        inits = {}
    _, _, ops = _import(_model([node], [1, 4, 1, 1], inits, opset), tmp_path)
    assert ops == ["global_avgpool"]


def test_a_spatial_mean_without_keepdims_is_the_pool_then_a_flatten(tmp_path: Path) -> None:
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)
    _, _, ops = _import(_model([node], [1, 4], {"axes": _i64(2, 3)}), tmp_path)
    assert ops == ["global_avgpool", "flatten"]


def test_a_mean_over_the_channels_and_keeping_them_is_still_refused(tmp_path: Path) -> None:
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1)
    path = tmp_path / "m.onnx"
    onnx.save(_model([node], [1, 1, 3, 5], {"axes": _i64(1)}), path)
    with pytest.raises(NetspecError, match="ReduceMean"):
        import_model(path)


@pytest.mark.parametrize(
    ("target", "op"),
    [((1, 60), "flatten"), ((1, 4, 15), "reshape"), ((0, -1), "flatten"), ((-1, 60), "flatten")],
    ids=["1-60", "1-4-15", "0-minus1", "minus1-60"],
)
def test_a_reshape_to_the_traced_batch_size_keeps_the_batch_axis(
    target: tuple[int, ...], op: str, tmp_path: Path
) -> None:
    """view(1, 60) of a [1, 4, 3, 5] tensor is written [1, 60]: the rest is one sample."""
    out = [1, *[d if d > 0 else 60 for d in target[1:]]]
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    _, analysis, ops = _import(_model([node], out, {"shape": _i64(*target)}), tmp_path)
    assert ops == [op]
    assert analysis.shape(analysis.order[-1]) == tuple(out[1:])


@pytest.mark.parametrize(
    ("target", "allowzero"), [((2, 30), 0), ((0, -1), 1)], ids=["batch-of-2", "allowzero"]
)
def test_a_reshape_that_moves_the_batch_axis_is_refused(
    target: tuple[int, ...], allowzero: int, tmp_path: Path
) -> None:
    """[2, 30] splits the one sample across a batch of two; with allowzero a 0 is an axis of
    size zero, not a copy of the batch axis."""
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], allowzero=allowzero)
    path = tmp_path / "m.onnx"
    onnx.save(_model([node], [-1, 30], {"shape": _i64(*target)}), path)
    with pytest.raises(NetspecError, match="Reshape"):
        import_model(path)


def test_castlike_of_a_literal_folds_to_a_constant_of_the_input_s_type(tmp_path: Path) -> None:
    """ReLU6 as the dynamo exporter writes it: Clip's bounds are CastLike(literal, x)."""
    nodes = [
        helper.make_node("Constant", [], ["lo"], value_float=0.0),
        helper.make_node("Constant", [], ["hi"], value=numpy_helper.from_array(np.float64(6.0))),
        helper.make_node("CastLike", ["lo", "x"], ["lo_cast"]),
        helper.make_node("CastLike", ["hi", "x"], ["hi_cast"]),
        helper.make_node("Clip", ["x", "lo_cast", "hi_cast"], ["y"]),
    ]
    imported, _, ops = _import(_model(nodes, SHAPE), tmp_path)
    assert ops == ["clip"] and "clip(0.0, 6.0)" in imported.text


def _conv(bias: list[onnx.NodeProto], inits: dict[str, np.ndarray]) -> onnx.ModelProto:
    w = RNG.standard_normal((6, 4, 3, 3)).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1] * 4)
    return _model([*bias, conv], [1, 6, 3, 5], {"w": w, **inits})


def test_an_all_zero_bias_the_exporter_computes_is_no_parameter(tmp_path: Path) -> None:
    """The unoptimised dynamo export of Conv2d(bias=False): Expand(CastLike(0, x), [C])."""
    bias = [
        helper.make_node("Shape", ["w"], ["c"], start=0, end=1),
        helper.make_node("Constant", [], ["zero"], value_float=0.0),
        helper.make_node("CastLike", ["zero", "x"], ["zero_cast"]),
        helper.make_node("Expand", ["zero_cast", "c"], ["b"]),
    ]
    imported, analysis, _ = _import(_conv(bias, {}), tmp_path)
    assert "bias=false" in imported.text
    assert analysis.trainable_params == 6 * 4 * 3 * 3


@pytest.mark.parametrize("shared", [False, True], ids=["initializer", "identity"])
def test_a_stored_all_zero_bias_stays_a_parameter(shared: bool, tmp_path: Path) -> None:
    """A bias the file stores is a learned one, zero or not; the TorchScript exporter shares
    equal initializers through Identity nodes."""
    zeros = {"b0" if shared else "b": np.zeros(6, np.float32)}
    bias = [helper.make_node("Identity", ["b0"], ["b"])] if shared else []
    imported, analysis, _ = _import(_conv(bias, zeros), tmp_path)
    assert "bias=false" not in imported.text
    assert analysis.trainable_params == 6 * 4 * 3 * 3 + 6
