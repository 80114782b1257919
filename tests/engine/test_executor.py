"""The executor's whole-network gradients against finite differences, and the initialisers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from netspec import api
from netspec.engine.executor import Executor, state_names, trainable_names
from netspec.initializers import init_params
from netspec.ir import Analysis
from netspec.ops.base import Ctx


def analyse(body: str) -> Analysis:
    return api.check(api.load(Path("t.net"), text=f"network N {{\n{body}\n}}\n"))


DAG = """
  input x: [4]
  a = dense(5) tanh
  b = a -> dense(5) relu
  c = add(a, b)
  d = concat(a, c, axis=0)
  e = d -> dense(6) sigmoid
  f = add(e, e)
  dense(3)
"""
CONV = """
  input x: [2, 6, 6]
  conv2d(3, 3, padding=1) batchnorm relu
  maxpool2d(2)
  flatten
  dense(2)
"""
SEQUENCE = """
  input x: [4, 3]
  bidirectional(gru(3))
  dense(2)
"""
NETS = {"dag": DAG, "conv_batchnorm": CONV, "bigru": SEQUENCE}


def loss_and_grads(
    ex: Executor, analysis: Analysis, params: dict[str, np.ndarray], x: np.ndarray, w: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    """loss = sum(output * w) in training mode, with a fixed rng (dropout masks repeat)."""
    ctx = Ctx(train=True, rng=np.random.default_rng(3))
    (name,) = analysis.network.outputs
    outputs, tape = ex.forward({"x": x}, params, ctx)
    grads = ex.backward(tape, {name: w}, params)
    return float(np.sum(outputs[name] * w)), grads


@pytest.mark.parametrize("body", NETS.values(), ids=NETS.keys())
def test_network_gradients_match_finite_differences_in_float64(body: str) -> None:
    analysis = analyse(body)
    rng = np.random.default_rng(0)
    params = init_params(analysis, rng, dtype=np.float64)
    ex = Executor(analysis, dtype=np.float64)
    x = rng.normal(size=(3, *analysis.shape("x")))
    out_shape = analysis.shape(analysis.network.outputs[0])
    w = rng.normal(size=(3, *out_shape))
    _, grads = loss_and_grads(ex, analysis, params, x, w)
    assert sorted(grads) == trainable_names(analysis)
    h = 1e-6
    for key in trainable_names(analysis):
        numeric = np.zeros_like(params[key])
        for idx in np.ndindex(params[key].shape):
            saved = params[key][idx]
            params[key][idx] = saved + h
            up = loss_and_grads(ex, analysis, params, x, w)[0]
            params[key][idx] = saved - h
            down = loss_and_grads(ex, analysis, params, x, w)[0]
            params[key][idx] = saved
            numeric[idx] = (up - down) / (2 * h)
        np.testing.assert_allclose(grads[key], numeric, rtol=1e-5, atol=1e-7, err_msg=key)


def test_gradients_accumulate_where_a_tensor_fans_out() -> None:
    # add(a, a) doubles a's output, so a's weight gradient is twice that of a alone.
    once, twice = (
        analyse("  input x: [3]\n  a = dense(2)"),
        analyse("  input x: [3]\n  a = dense(2)\n  add(a, a)"),
    )
    rng = np.random.default_rng(1)
    params = init_params(once, rng, dtype=np.float64)
    x, dy = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    grads = []
    for analysis in (once, twice):
        ex = Executor(analysis, dtype=np.float64)
        _, tape = ex.forward({"x": x}, params, Ctx())
        grads.append(ex.backward(tape, {analysis.network.outputs[0]: dy}, params))
    np.testing.assert_allclose(grads[1]["a.weight"], 2 * grads[0]["a.weight"])


def test_backward_frees_every_cache_on_the_tape() -> None:
    analysis = analyse(DAG)
    params = init_params(analysis, np.random.default_rng(0))
    ex = Executor(analysis)
    outputs, tape = ex.forward({"x": np.ones((2, 4))}, params, Ctx(train=True))
    assert tape.caches
    ex.backward(tape, {"dense_1": np.ones_like(outputs["dense_1"])}, params)
    assert tape.caches == {}


def test_only_layers_fed_by_trainable_ones_compute_their_input_gradient() -> None:
    """The first conv and a first dense skip dx (PyTorch does too); later layers compute it."""
    analysis = analyse(
        "  input x: [1, 6, 6]\n  a = conv2d(2, 3)\n  b = x -> flatten\n  c = b -> dense(4)\n"
        "  d = a -> flatten\n  e = concat(c, d, axis=0)\n  dense(2)"
    )
    ex = Executor(analysis)
    flags = {s.node.name: s.input_grad for s in ex.steps if not s.is_input}
    assert flags == {"a": False, "b": False, "c": False, "d": True, "e": True, "dense_1": True}
    params = init_params(analysis, np.random.default_rng(0))
    _, tape = ex.forward({"x": np.ones((2, 1, 6, 6))}, params, Ctx(train=True))
    for name in ("a", "c"):
        op = next(n.op for n in analysis.network.nodes if n.name == name)
        p = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(f"{name}.")}
        shape = analysis.layers[name].output_shape
        assert shape is not None
        dy = np.ones((2, *shape), np.float32)
        dxs, grads = op.backward(dy, tape.caches[name], p)
        assert dxs == [None] and grads["weight"].any(), name


@pytest.mark.parametrize("layer", ["lstm(4)", "rnn(4)", "bidirectional(gru(4))"])
def test_a_first_recurrent_layer_skips_its_input_gradient(layer: str) -> None:
    analysis = analyse(f"  input x: [5, 3]\n  r = {layer}\n  dense(2)")
    params = init_params(analysis, np.random.default_rng(0))
    ex = Executor(analysis)
    _, tape = ex.forward({"x": np.ones((2, 5, 3))}, params, Ctx(train=True))
    op = next(n.op for n in analysis.network.nodes if n.name == "r")
    p = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("r.")}
    dxs, grads = op.backward(
        np.ones((2, 8 if "bi" in layer else 4), np.float32), tape.caches["r"], p
    )
    assert dxs == [None] and all(g.any() for g in grads.values())


@pytest.mark.parametrize("layer", ["lstm(4)", "bidirectional(lstm(4))"])
def test_inference_tells_ops_no_backward_follows_and_the_outputs_do_not_change(
    layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctx.backward is False where no backward reads a cache (inference): the LSTM then skips
    BPTT's factors, bit for bit the same outputs; a training forward keeps them."""
    from netspec.ops.recurrent import Lstm

    analysis = analyse(f"  input x: [5, 3]\n  r = {layer}\n  dense(2)")
    params = init_params(analysis, np.random.default_rng(0))
    ex = Executor(analysis, np.float32)
    seen: list[bool] = []
    scan = Lstm.scan

    def spy(self: Lstm, *args: object, **kwargs: object) -> object:
        seen.append(bool(kwargs.get("backward", args[4] if len(args) > 4 else True)))
        return scan(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Lstm, "scan", spy)
    x = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)
    trained, tape = ex.forward({"x": x}, params, Ctx(train=True))
    assert seen and all(seen) and tape.caches["r"] is not None
    seen.clear()
    inferred, _ = ex.forward({"x": x}, params, Ctx(), record=False)
    assert seen and not any(seen)
    (out,) = analysis.network.outputs
    np.testing.assert_array_equal(trained[out], inferred[out])


POOLED = {
    "tiled": "maxpool2d(2)",
    "overlapping_padded": "maxpool2d(3, stride=2, padding=1)",
    "ceil_mode": "maxpool2d(3, stride=2, ceil_mode=true)",
    "global": "global_maxpool",
}


@pytest.mark.parametrize("pool", POOLED.values(), ids=POOLED.keys())
def test_relu_runs_after_the_max_pool_it_feeds_with_identical_values_and_gradients(
    pool: str,
) -> None:
    analysis = analyse(
        f"  input x: [2, 7, 7]\n  c = conv2d(3, 3, padding=1)\n  r = relu\n"
        f"  p = {pool}\n  flatten\n  dense(2)"
    )
    plain, moved = Executor(analysis, reorder=False), Executor(analysis)
    assert [(s.node.name, s.node.op.op) for s in moved.steps][2:4] == [
        ("r", pool.split("(")[0]),
        ("p", "relu"),
    ]
    params = init_params(analysis, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 2, 7, 7)).astype(np.float32)
    params["c.weight"][:, :, :, 1:] = 0  # equal neighbours: ties inside windows
    params["c.bias"][0] = -50  # channel 0 all negative: relu's flat side everywhere
    w = rng.normal(size=(4, 2)).astype(np.float32)
    results = [loss_and_grads(ex, analysis, params, x, w) for ex in (plain, moved)]
    assert results[0][0] == results[1][0]
    for key, g in results[0][1].items():
        np.testing.assert_array_equal(results[1][1][key], g, err_msg=key)


@pytest.mark.parametrize(
    "body",
    [
        "  r = relu\n  p = maxpool2d(2)\n  q = r -> avgpool2d(2)\n  add(p, q)",  # two readers
        "  r = relu\n  avgpool2d(2)\n  maxpool2d(2)",  # relu feeds an average
        "  r = sigmoid\n  maxpool2d(2)",  # rounding ties saturated inputs: not exact
    ],
)
def test_an_activation_stays_in_place_unless_it_alone_feeds_a_max_pool_and_commutes(
    body: str,
) -> None:
    analysis = analyse(f"  input x: [2, 4, 4]\n{body}")
    nodes = {n.name: n for n in analysis.network.nodes}
    ex = Executor(analysis)
    assert [s.node for s in ex.steps] == [nodes[name] for name in analysis.order]


def test_float_inputs_are_cast_to_the_executor_dtype_and_token_ids_pass_unconverted() -> None:
    analysis = analyse("  input x: int64[5]\n  embedding(10, 4)\n  flatten\n  dense(2)")
    params = init_params(analysis, np.random.default_rng(0), dtype=np.float32)
    ids = np.random.default_rng(1).integers(0, 10, (3, 5))
    ex = Executor(analysis, dtype=np.float32)
    outputs, tape = ex.forward({"x": ids}, params, Ctx(train=True))
    assert outputs["dense_1"].dtype == np.float32
    grads = ex.backward(tape, {"dense_1": np.ones((3, 2), np.float32)}, params)
    assert grads["embedding_1.weight"].dtype == np.float32

    floats = analyse("  input x: [4]\n  dense(2)")
    ex = Executor(floats, dtype=np.float32)
    p32 = init_params(floats, np.random.default_rng(0))
    outputs, _ = ex.forward({"x": np.ones((2, 4), np.float64)}, p32, Ctx())
    assert outputs["dense_1"].dtype == np.float32


def test_trainable_and_state_names_are_sorted_global_names() -> None:
    analysis = analyse(CONV)
    assert trainable_names(analysis) == [
        "batchnorm_1.bias",
        "batchnorm_1.weight",
        "conv2d_1.bias",
        "conv2d_1.weight",
        "dense_1.bias",
        "dense_1.weight",
    ]
    assert state_names(analysis) == ["batchnorm_1.running_mean", "batchnorm_1.running_var"]


# ---- initialisers --------------------------------------------------------------------------


def test_init_gives_every_trainable_and_state_array_deterministically_per_seed() -> None:
    analysis = analyse(CONV)
    a = init_params(analysis, np.random.default_rng(5))
    b = init_params(analysis, np.random.default_rng(5))
    assert sorted(a) == sorted(trainable_names(analysis) + state_names(analysis))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        assert a[key].dtype == np.float32
        assert a[key].shape == analysis.layers[key.rpartition(".")[0]].param_shapes.get(
            key.rpartition(".")[2], a[key].shape
        )
    assert not np.array_equal(init_params(analysis, np.random.default_rng(6))["dense_1.weight"],
                              a["dense_1.weight"])  # fmt: skip


def test_init_fixed_values_come_from_the_op_and_biases_start_at_zero() -> None:
    analysis = analyse(
        "  input x: [3, 4, 4]\n  conv2d(4, 3) batchnorm prelu\n  flatten\n"
        "  reshape([4, 4])\n  bidirectional(lstm(3))"
    )
    p = init_params(analysis, np.random.default_rng(0))
    np.testing.assert_array_equal(p["batchnorm_1.weight"], 1)
    np.testing.assert_array_equal(p["batchnorm_1.running_var"], 1)
    np.testing.assert_array_equal(p["batchnorm_1.running_mean"], 0)
    np.testing.assert_array_equal(p["prelu_1.slope"], 0.25)
    for key in ("conv2d_1.bias", "batchnorm_1.bias", "bidirectional_1.fwd.bias_ih"):
        np.testing.assert_array_equal(p[key], 0)


def test_init_defaults_to_he_before_relu_seen_through_batchnorm_and_glorot_otherwise() -> None:
    analysis = analyse(
        "  input x: [256]\n  h = dense(256) batchnorm dropout(0.5) relu\n  dense(200) tanh"
    )
    p = init_params(analysis, np.random.default_rng(0), dtype=np.float64)
    he = p["h.0.weight"]
    assert he.std() == pytest.approx(math.sqrt(2 / 256), rel=0.02)
    assert abs(he.mean()) < 0.01
    glorot = p["dense_1.weight"]
    limit = math.sqrt(6 / (256 + 200))
    assert np.abs(glorot).max() <= limit
    assert np.abs(glorot).max() > 0.99 * limit
    assert glorot.std() == pytest.approx(limit / math.sqrt(3), rel=0.02)  # uniform's std


def test_init_uses_per_gate_fans_for_recurrent_weights() -> None:
    # weight_ih (4H, F) = (400, 50): fan_in F = 50, fan_out H = 100.
    analysis = analyse("  input x: [5, 50]\n  lstm(100)")
    w = init_params(analysis, np.random.default_rng(0))["lstm_1.weight_ih"]
    limit = math.sqrt(6 / (50 + 100))
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit


def test_init_follows_the_users_choice_and_embeddings_draw_unit_normals() -> None:
    analysis = analyse(
        "  input x: int64[4]\n  embedding(300, 100)\n  flatten\n"
        "  a = dense(3, init=constant(0.5))\n  b = dense(300, init=normal(0.02))\n"
        "  c = dense(300, init=he_uniform) relu"
    )
    p = init_params(analysis, np.random.default_rng(0), dtype=np.float64)
    np.testing.assert_array_equal(p["a.weight"], 0.5)
    assert p["b.weight"].std() == pytest.approx(0.02, rel=0.03)
    limit = math.sqrt(6 / 300)
    assert limit * 0.99 < np.abs(p["c.0.weight"]).max() <= limit
    assert p["embedding_1.weight"].std() == pytest.approx(1.0, rel=0.02)
