"""Exported networks agree with the NumPy engine, shape by shape and value by value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from netspec.engine.executor import Executor
from netspec.errors import NetspecError
from netspec.initializers import init_params
from netspec.ir import Analysis
from netspec.onnx.export import MIN_OPSET, save_model, to_onnx_model
from netspec.onnx.runtime import run_onnx
from netspec.ops.base import Array, Ctx

MLP = """
network MLP {
  input x: [6]
  dense(8) tanh
  hidden = dense(5) relu
  dropout(0.3)
  out = dense(3)
}
train MLP { loss = cross_entropy }
"""

CNN = """
block Basic(ch: int) {
  conv1 = conv2d(ch, 3, padding=1, bias=false)
  bn1 = batchnorm
  relu
  conv2 = conv2d(ch, 3, padding=1, bias=false)
  bn2 = batchnorm
  add(in)
  relu
}
network CNN {
  input image: [2, 8, 8]
  conv1 = conv2d(4, 3, padding=1)
  bn1 = batchnorm
  relu
  maxpool2d(2)
  layer1 = Basic(4)
  avgpool2d(2)
  flatten
  fc = dense(3)
}
train CNN { loss = cross_entropy }
"""

INCEPTION = """
block Inception(c1: int, c3: int) {
  b1 = in -> conv2d(c1, 1) relu
  b2 = in -> conv2d(c3, 3, padding=1) relu
  b3 = in -> maxpool2d(3, stride=1, padding=1) conv2d(c1, 1)
  concat(b1, b2, b3)
}
network Incep {
  input image: [3, 6, 6]
  inc = Inception(2, 3)
  global_avgpool
  flatten
  fc = dense(4)
}
"""

TEXT = """
network Text {
  input tokens: int64[7]
  embed = embedding(20, 6)
  seq = lstm(5, return_sequences=true)
  g = gru(4, return_sequences=true)
  bi = bidirectional(lstm(3))
  dropout(0.5)
  fc = dense(1)
}
train Text { loss = binary_cross_entropy }
"""

NETWORKS = {"mlp": MLP, "cnn": CNN, "inception": INCEPTION, "text": TEXT}


def _params(analysis: Analysis, seed: int = 0) -> dict[str, Array]:
    """Fresh weights, with non-trivial running statistics so eval-mode batchnorm matters."""
    rng = np.random.default_rng(seed)
    params = init_params(analysis, rng)
    for name, info in analysis.layers.items():
        for local, shape in info.state_shapes.items():
            low, high = (0.5, 2.0) if "var" in local else (-0.5, 0.5)
            params[f"{name}.{local}"] = rng.uniform(low, high, size=shape).astype(np.float32)
    return params


def _inputs(analysis: Analysis, batch: int, seed: int = 1) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    out: dict[str, Array] = {}
    for node in analysis.network.inputs:
        shape = (batch, *analysis.shape(node.name))
        if getattr(node.op, "dtype", "float32") == "int64":
            out[node.name] = rng.integers(0, 20, size=shape)
        else:
            out[node.name] = rng.normal(size=shape).astype(np.float32)
    return out


def _numpy(analysis: Analysis, params: dict[str, Array], xs: dict[str, Array]) -> Array:
    (y,) = Executor(analysis).forward(xs, params, Ctx(train=False))[0].values()
    return y


def _ort(model: onnx.ModelProto, xs: dict[str, Array]) -> Array:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, xs)
    return np.asarray(y)


@pytest.fixture(params=list(NETWORKS))
def net(request: pytest.FixtureRequest, analyse: Callable[[str], Analysis]) -> Analysis:
    return analyse(NETWORKS[request.param])


def test_onnxruntime_logits_match_the_numpy_engine_in_eval_mode(net: Analysis) -> None:
    params = _params(net)
    xs = _inputs(net, batch=2)
    model = to_onnx_model(net, params, logits=True)
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_allclose(_ort(model, xs), _numpy(net, params, xs), rtol=1e-4, atol=1e-5)


def test_onnx_shape_inference_agrees_with_netspec_for_every_tensor(net: Analysis) -> None:
    model = to_onnx_model(net, _params(net), logits=True, fold_batchnorm=False)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    }
    for name in net.order:
        if name not in shapes:  # only an alias (dropout at inference) leaves no tensor
            assert net.network.node(name).op.op == "dropout", name
            continue
        assert shapes[name] == ["N", *net.shape(name)], name


def test_the_training_loss_activation_is_appended_unless_logits_are_asked_for(
    net: Analysis,
) -> None:
    params = _params(net)
    xs = _inputs(net, batch=2)
    logits = _ort(to_onnx_model(net, params, logits=True), xs)
    model = to_onnx_model(net, params)
    loss = None if net.network.train is None else net.network.train.loss
    (out,) = net.network.outputs
    if loss is None:
        assert [o.name for o in model.graph.output] == [out]
        np.testing.assert_allclose(_ort(model, xs), logits, rtol=1e-5)
        return
    assert [o.name for o in model.graph.output] == [f"{out}.probs"]
    if loss == "cross_entropy":
        want = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    else:
        want = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(_ort(model, xs), want, rtol=1e-5, atol=1e-7)


def test_opset_13_either_exports_equal_results_or_names_the_op_layer_and_opset(
    net: Analysis,
) -> None:
    params = _params(net)
    xs = _inputs(net, batch=2)
    try:
        model = to_onnx_model(net, params, opset=MIN_OPSET, logits=True)
    except NetspecError as e:
        (d,) = e.diagnostics
        assert d.layer is not None and d.layer in d.message
        assert "opset" in d.message
        return
    assert model.opset_import[0].version == MIN_OPSET
    np.testing.assert_allclose(_ort(model, xs), _numpy(net, params, xs), rtol=1e-4, atol=1e-5)


def test_an_opset_below_13_is_refused(net: Analysis) -> None:
    with pytest.raises(NetspecError, match="opset 12 is not supported"):
        to_onnx_model(net, _params(net), opset=12)


def test_a_dynamic_batch_model_runs_batches_of_1_and_5(net: Analysis, tmp_path: Path) -> None:
    params = _params(net)
    path = tmp_path / "m.onnx"
    save_model(to_onnx_model(net, params, logits=True), path)
    for batch in (1, 5):
        xs = _inputs(net, batch)
        outs, provider = run_onnx(path, xs, "cpu", batch_size=2)  # 5 rows: chunks 2, 2, 1
        (y,) = outs.values()
        assert provider == "CPUExecutionProvider"
        np.testing.assert_allclose(y, _numpy(net, params, xs), rtol=1e-4, atol=1e-5)


def test_a_fixed_batch_model_declares_it_and_refuses_a_ragged_input(
    analyse: Callable[[str], Analysis], tmp_path: Path
) -> None:
    net = analyse(MLP)
    model = to_onnx_model(net, _params(net), batch=2)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 6]
    path = tmp_path / "m.onnx"
    save_model(model, path)
    outs, _ = run_onnx(path, _inputs(net, 4), "cpu")
    assert outs["out.probs"].shape == (4, 3)
    with pytest.raises(NetspecError, match="exported for batch 2 but the input has 3 rows"):
        run_onnx(path, _inputs(net, 3), "cpu")


def test_only_used_initializers_are_kept_and_names_follow_the_spec(
    analyse: Callable[[str], Analysis],
) -> None:
    net = analyse(CNN)
    model = to_onnx_model(net, _params(net), fold_batchnorm=False)  # one node per layer
    used = {i for n in model.graph.node for i in n.input}
    inits = {i.name for i in model.graph.initializer}
    assert inits <= used
    assert {"conv1.weight", "layer1.conv1.weight", "bn1.running_var"} <= inits
    assert {"layer1.conv1", "layer1.bn2", "fc"} <= {o for n in model.graph.node for o in n.output}
    assert {n.name for n in model.graph.node} >= {"layer1.conv1", "fc"}


def test_metadata_records_the_source_its_hash_and_the_network(
    analyse: Callable[[str], Analysis],
) -> None:
    import hashlib

    net = analyse(MLP)
    model = to_onnx_model(net, _params(net), metadata={"note": "x"})
    props = {p.key: p.value for p in model.metadata_props}
    assert props["network"] == "MLP"
    assert net.network.source is not None
    source = Path(net.network.source).read_bytes()
    assert props["source_sha256"] == hashlib.sha256(source).hexdigest()
    assert props["note"] == "x"
    assert "netspec_version" in props


def test_a_trailing_dropout_output_is_renamed_not_copied(
    analyse: Callable[[str], Analysis],
) -> None:
    net = analyse("network D {\n  input x: [4]\n  h = dense(3)\n  out = dropout(0.5)\n}\n")
    model = to_onnx_model(net, _params(net))
    assert [n.op_type for n in model.graph.node] == ["Gemm"]
    assert [o.name for o in model.graph.output] == ["out"]


def test_an_input_that_is_dropped_out_straight_to_the_output_gets_an_identity(
    analyse: Callable[[str], Analysis],
) -> None:
    net = analyse("network D {\n  input x: [4]\n  out = dropout(0.5)\n}\n")
    model = to_onnx_model(net, {})
    assert [n.op_type for n in model.graph.node] == ["Identity"]
    xs = _inputs(net, 3)
    np.testing.assert_array_equal(_ort(model, xs), xs["x"])


def test_weights_that_do_not_fit_name_the_tensor_and_both_shapes(
    analyse: Callable[[str], Analysis],
) -> None:
    net = analyse(MLP)
    params = _params(net)
    params["out.weight"] = np.zeros((4, 5), np.float32)
    with pytest.raises(NetspecError, match=r"'out\.weight' has shape \[4, 5\].*\[3, 5\]"):
        to_onnx_model(net, params)


def test_an_operator_newer_than_the_opset_is_named_with_its_layer_and_minimum_opset(
    analyse: Callable[[str], Analysis], monkeypatch: pytest.MonkeyPatch
) -> None:
    from netspec.ops.activation import Tanh
    from netspec.ops.base import OnnxIO, OnnxNode

    def gelu(self: Tanh, io: OnnxIO) -> list[OnnxNode]:  # Gelu arrived in opset 20
        return [OnnxNode("Gelu", (io.inputs[0],), (io.output,))]

    monkeypatch.setattr(Tanh, "to_onnx", gelu)
    net = analyse(MLP)
    with pytest.raises(NetspecError) as err:
        to_onnx_model(net, _params(net), opset=MIN_OPSET)
    (d,) = err.value.diagnostics
    assert d.layer == "tanh_1"
    assert "tanh 'tanh_1' cannot be exported to ONNX opset 13" in d.message
    assert "Gelu, which needs opset >= 20" in d.message
    assert d.span is not None


def test_an_op_refusing_a_lowering_is_reported_with_its_layer(
    analyse: Callable[[str], Analysis], monkeypatch: pytest.MonkeyPatch
) -> None:
    from netspec.ops.activation import Tanh
    from netspec.ops.base import OnnxIO, OnnxNode, OpsetError

    def refuse(self: Tanh, io: OnnxIO) -> list[OnnxNode]:
        raise OpsetError(f"needs opset >= 99, got {io.opset}")

    monkeypatch.setattr(Tanh, "to_onnx", refuse)
    net = analyse(MLP)
    with pytest.raises(NetspecError, match=r"tanh 'tanh_1' .*opset 13: needs opset >= 99"):
        to_onnx_model(net, _params(net), opset=MIN_OPSET)


def test_a_bug_in_a_lowering_is_not_reported_as_an_opset_limit(
    analyse: Callable[[str], Analysis], monkeypatch: pytest.MonkeyPatch
) -> None:
    from netspec.ops.activation import Tanh
    from netspec.ops.base import OnnxIO, OnnxNode

    def broken(self: Tanh, io: OnnxIO) -> list[OnnxNode]:
        raise ValueError("a bug")

    monkeypatch.setattr(Tanh, "to_onnx", broken)
    net = analyse(MLP)
    with pytest.raises(ValueError, match="a bug"):
        to_onnx_model(net, _params(net), opset=MIN_OPSET)


def test_batchnorm_after_a_conv_is_folded_by_default_with_the_same_outputs(
    analyse: Callable[[str], Analysis],
) -> None:
    net = analyse(CNN)
    params = _params(net)
    xs = _inputs(net, batch=3)
    folded = to_onnx_model(net, params, logits=True)
    plain = to_onnx_model(net, params, logits=True, fold_batchnorm=False)
    ops = [n.op_type for n in folded.graph.node]
    assert "BatchNormalization" not in ops  # every batchnorm here follows a conv
    assert [n.op_type for n in plain.graph.node].count("BatchNormalization") == 3
    assert len(folded.graph.node) == len(plain.graph.node) - 3
    onnx.checker.check_model(folded, full_check=True)
    np.testing.assert_allclose(_ort(folded, xs), _ort(plain, xs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_ort(folded, xs), _numpy(net, params, xs), rtol=1e-4, atol=1e-5)


def test_probabilities_are_the_loss_activation_of_the_outputs_whatever_the_last_layer(
    analyse: Callable[[str], Analysis],
) -> None:
    """cross_entropy after a sigmoid trains softmax(sigmoid(z)): export and predict say so too."""
    from netspec.engine.inference import predict_outputs

    net = analyse(MLP.replace("out = dense(3)", "dense(3)\n  out = sigmoid"))
    params = _params(net)
    xs = _inputs(net, batch=4)
    probs = _ort(to_onnx_model(net, params), xs)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    numpy_probs = predict_outputs(net, xs, params, batch=4, logits=False)["out.probs"]
    np.testing.assert_allclose(probs, numpy_probs, rtol=1e-5, atol=1e-7)


# Pools whose ceil_mode window would start in the right padding: netspec, PyTorch and
# onnxruntime drop it, ONNX's operators before opset 22 count it.
CEIL_POOLS = [
    "maxpool2d(2, padding=1, ceil_mode=true)",
    "maxpool1d(2, stride=3, ceil_mode=true)",
    "avgpool2d(2, padding=1, ceil_mode=true)",
    "avgpool2d(2, padding=1, ceil_mode=true, count_include_pad=true)",
    "avgpool2d(2, ceil_mode=true, count_include_pad=true)",  # hangs past the end: no change
    # Rows drop a window, columns hang one past the end: spelled out, the columns would need
    # end padding that count_include_pad counts, so below opset 22 it is refused.
    "avgpool2d(2, padding=[1, 0], ceil_mode=true, count_include_pad=true)",
    # A kernel smaller than its stride: the last window ends before the input does, so the
    # floor-mode spelling needs no end padding at all (it wrote -1 and -2, which the checker
    # refuses).
    "maxpool1d(2, stride=4, padding=1, ceil_mode=true)",
    "avgpool1d(2, stride=4, padding=1, ceil_mode=true, count_include_pad=true)",
    "maxpool2d(2, stride=4, padding=1, ceil_mode=true)",
]


@pytest.mark.parametrize("opset", [MIN_OPSET, 21, 22])
@pytest.mark.parametrize("pool", CEIL_POOLS)
def test_ceil_mode_pools_export_exactly_at_every_opset_or_name_the_one_they_need(
    analyse: Callable[[str], Analysis], pool: str, opset: int
) -> None:
    shape = "[2, 7]" if "1d" in pool else "[2, 5, 7]"
    net = analyse(f"network P {{\n  input x: {shape}\n  {pool}\n  flatten\n  dense(2)\n}}\n")
    params, xs = _params(net), _inputs(net, batch=3)
    try:
        model = to_onnx_model(net, params, opset=opset, logits=True)
    except NetspecError as e:  # count_include_pad cannot be spelled out with end padding
        assert opset < 22 and "count_include_pad" in pool
        assert "needs opset 22" in e.diagnostics[0].message
        return
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_allclose(_ort(model, xs), _numpy(net, params, xs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset", [MIN_OPSET, 21, 22])
@pytest.mark.parametrize(
    "pool",
    [
        "maxpool1d(4, stride=2, ceil_mode=true)",
        "avgpool1d(6, stride=2, padding=1, ceil_mode=true)",
        "avgpool1d(6, stride=2, padding=1, ceil_mode=true, count_include_pad=true)",
    ],
)
def test_a_ceil_mode_window_longer_than_its_input_exports_as_one_window(
    analyse: Callable[[str], Analysis], pool: str, opset: int
) -> None:
    net = analyse(f"network P {{\n  input x: [2, 3]\n  {pool}\n  flatten\n  dense(2)\n}}\n")
    params, xs = _params(net), _inputs(net, batch=3)
    try:
        model = to_onnx_model(net, params, opset=opset, logits=True)
    except NetspecError as e:  # the overhang would be counted as end padding
        assert opset < 22 and "count_include_pad" in pool
        assert "needs opset 22" in e.diagnostics[0].message
        return
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_allclose(_ort(model, xs), _numpy(net, params, xs), rtol=1e-5, atol=1e-6)


def test_a_normalised_input_that_is_also_an_output_is_refused_with_a_way_out(
    analyse: Callable[[str], Analysis],
) -> None:
    net = analyse("network A {\n  input x: [4]\n  h = dense(3)\n  output x, h\n}\n")
    stats = {"x": (np.zeros(4, np.float32), np.ones(4, np.float32))}
    with pytest.raises(NetspecError) as err:  # it failed onnx.checker, "a netspec bug"
        to_onnx_model(net, _params(net), normalization=stats)
    (d,) = err.value.diagnostics
    assert "input 'x' is also an output" in d.message
    assert d.hint == "output a copy instead, e.g. `x_out = x -> identity`"
