"""The op contract, checked for every registered op and every one of its examples.

A new op that misses any part of the contract fails here: there is no list to remember. That
includes its torch lowering: `torch_forward` must equal `forward`, and autograd through it
`backward`, for every example (tests/ops/test_*.py compare the NumPy side with torch's own
modules besides).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from pydantic import TypeAdapter

from netspec import api
from netspec.ir import Analysis, Network, Node
from netspec.onnx.export import to_onnx_model
from netspec.ops import OP_CLASSES, AnyOp
from netspec.ops.activation import RRelu
from netspec.ops.attention import Attention
from netspec.ops.base import Array, Ctx, Example, Op
from netspec.ops.io import Input
from netspec.ops.norm import Dropout

ROOT = Path(__file__).resolve().parents[2]
N = 2  # batch
EPS = 1e-6
MAX_PROBES = 20  # finite-difference coordinates per array: enough to catch a wrong formula

OPS = [cls for cls in OP_CLASSES if cls.kind() != "input"]


def _examples(cls: type[Op]) -> list[Example]:
    """An op's examples; none when it has not written `examples()` (one test below fails
    naming it, instead of the whole module failing to collect)."""
    try:
        return cls.examples()
    except NotImplementedError:
        return []


CASES = [
    pytest.param(cls, k, ex, id=f"{cls.kind()}-{k}")
    for cls in OPS
    for k, ex in enumerate(_examples(cls))
]


def _inputs(op: Op, ex: Example, rng: np.random.Generator, dtype: type) -> list[Array]:
    if op.input_dtype == "int64":
        return [rng.integers(int(ex.low), int(ex.high), size=(N, *s)) for s in ex.inputs]
    return [rng.uniform(ex.low, ex.high, size=(N, *s)).astype(dtype) for s in ex.inputs]


def _params(op: Op, ex: Example, rng: np.random.Generator, dtype: type) -> dict[str, Array]:
    """Random trainable arrays; positive state (running variances must be)."""
    p: dict[str, Array] = {
        k: rng.normal(0, 0.5, size=s).astype(dtype) for k, s in op.param_shapes(ex.inputs).items()
    }
    for k, s in op.state_shapes(ex.inputs).items():
        p[k] = rng.uniform(0.5, 1.5, size=s).astype(dtype)
    return p


def _forward(op: Op, xs: list[Array], p: dict[str, Array], train: bool) -> tuple[Array, Any]:
    # A fresh generator per call: dropout/rrelu draw the same mask every time, and a copy of the
    # parameters, since training mode updates running statistics in place.
    return op.forward(xs, copy.deepcopy(p), Ctx(train=train, rng=np.random.default_rng(7)))


def _one_node_analysis(op: Op, ex: Example) -> Analysis:
    dtype = "int64" if op.input_dtype == "int64" else "float32"
    inputs = [Node(name=f"x{i}", op=Input(shape=s, dtype=dtype)) for i, s in enumerate(ex.inputs)]
    node = Node(name="op", op=op, inputs=tuple(n.name for n in inputs))
    return api.check(Network(name="contract", nodes=(*inputs, node), outputs=("op",)))


@pytest.mark.parametrize(("cls", "k", "ex"), CASES)
def test_op_survives_an_ir_json_round_trip(cls: type[Op], k: int, ex: Example) -> None:
    adapter: TypeAdapter[Op] = TypeAdapter(AnyOp)
    back = adapter.validate_json(adapter.dump_json(ex.op))
    assert back == ex.op
    assert type(back) is cls


def _dsl(value: Any) -> str:
    """An attribute value as a spec writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_dsl(v) for v in value) + "]"
    if isinstance(value, dict):  # a nested model: init=normal(std=0.02), layer=lstm(4)
        name = value.pop("op", None) or value.pop("name")
        return f"{name}({', '.join(f'{k}={_dsl(v)}' for k, v in value.items())})"
    return repr(value)


@pytest.mark.parametrize(("cls", "k", "ex"), CASES)
def test_op_attributes_written_in_the_dsl_build_the_same_op(
    cls: type[Op], k: int, ex: Example
) -> None:
    # The front end holds literals to their types (strict validation); every valid attribute
    # value, as a spec would write it, must still pass.
    names = [f"x{i}" for i in range(len(ex.inputs))]
    inputs = "\n".join(f"input {n}: {list(s)}" for n, s in zip(names, ex.inputs, strict=True))
    attrs = [
        f"{key}={_dsl(v)}" for key, v in ex.op.model_dump(exclude={"op"}, exclude_none=True).items()
    ]
    args = ", ".join((names if cls.arity is None else []) + attrs)
    text = f"network C {{\n{inputs}\ny = {cls.kind()}({args})\n}}\n"
    net = api.load(Path("c.net"), text=text)
    assert net.node("y").op == ex.op, text


@pytest.mark.parametrize(("cls", "k", "ex"), CASES)
def test_forward_shape_and_parameter_arrays_match_the_shape_rules(
    cls: type[Op], k: int, ex: Example
) -> None:
    rng = np.random.default_rng(k)
    op = ex.op
    xs, p = _inputs(op, ex, rng, np.float32), _params(op, ex, rng, np.float32)
    y, cache = _forward(op, xs, p, train=True)
    assert y.shape == (N, *op.infer_shape(ex.inputs))
    assert y.dtype == np.float32, "float32 in must stay float32"
    _, grads = op.backward(np.ones_like(y), cache, p)
    shapes = op.param_shapes(ex.inputs)
    assert {k: g.shape for k, g in grads.items()} == shapes
    info = _one_node_analysis(op, ex).layers["op"]
    assert info.params == sum(int(np.prod(s)) for s in shapes.values())


@pytest.mark.parametrize(("cls", "k", "ex"), CASES)
def test_inference_forward_keeps_float32_and_the_shape_rule(
    cls: type[Op], k: int, ex: Example
) -> None:
    rng = np.random.default_rng(k)
    op = ex.op
    xs, p = _inputs(op, ex, rng, np.float32), _params(op, ex, rng, np.float32)
    y, _ = _forward(op, xs, p, train=False)
    assert y.dtype == np.float32, "float32 in must stay float32"
    assert y.shape == (N, *op.infer_shape(ex.inputs))


@pytest.mark.parametrize(("cls", "k", "ex"), CASES)
def test_backward_matches_central_finite_differences_in_float64(
    cls: type[Op], k: int, ex: Example
) -> None:
    rng = np.random.default_rng(100 + k)
    op = ex.op
    xs, p = _inputs(op, ex, rng, np.float64), _params(op, ex, rng, np.float64)
    y, cache = _forward(op, xs, p, train=True)
    assert y.dtype == np.float64
    r = rng.normal(size=y.shape)  # L = sum(y * r), so dL/dy = r
    if not cls.differentiable:
        # Zero derivative almost everywhere (step): the op promises the straight-through
        # surrogate dx = dy instead, which is what finite differences cannot see.
        dxs, _ = op.backward(r.copy(), cache, p)
        np.testing.assert_array_equal(dxs[0], r)
        return

    def loss() -> float:
        return float(np.sum(_forward(op, xs, p, train=True)[0] * r))

    dxs, dparams = op.backward(r.copy(), cache, p)
    arrays: list[tuple[str, Array, Array | None]] = []
    for i, x in enumerate(xs):
        if x.dtype.kind == "f":
            arrays.append((f"input {i}", x, dxs[i]))
        else:
            assert dxs[i] is None, "integer inputs get no gradient"
    arrays += [(f"param {name}", p[name], dparams[name]) for name in op.param_shapes(ex.inputs)]
    for what, arr, grad in arrays:
        assert grad is not None and grad.shape == arr.shape, what
        flat = arr.reshape(-1)  # a view: perturbing it perturbs the op's input
        probes = rng.choice(flat.size, size=min(MAX_PROBES, flat.size), replace=False)
        numeric = []
        for j in probes:
            old = flat[j]
            flat[j] = old + EPS
            up = loss()
            flat[j] = old - EPS
            down = loss()
            flat[j] = old
            numeric.append((up - down) / (2 * EPS))
        np.testing.assert_allclose(
            grad.reshape(-1)[probes], numeric, rtol=1e-5, atol=1e-6, err_msg=what
        )


@pytest.mark.parametrize(("cls", "k", "ex"), CASES)
def test_skipping_the_input_gradient_leaves_the_parameter_gradients_unchanged(
    cls: type[Op], k: int, ex: Example
) -> None:
    """Ctx(input_grad=False) (a first layer) may drop dx, and must change nothing else."""
    rng = np.random.default_rng(300 + k)
    op = ex.op
    xs, p = _inputs(op, ex, rng, np.float32), _params(op, ex, rng, np.float32)
    y, full = _forward(op, xs, p, train=True)
    first = Ctx(train=True, rng=np.random.default_rng(7), input_grad=False)
    y_first, lean = op.forward(xs, copy.deepcopy(p), first)
    np.testing.assert_array_equal(y_first, y)
    dy = rng.normal(size=y.shape).astype(np.float32)
    dxs, grads = op.backward(dy.copy(), full, p)
    dxs_first, grads_first = op.backward(dy.copy(), lean, p)
    assert grads_first.keys() == grads.keys()
    for name, g in grads.items():
        np.testing.assert_array_equal(grads_first[name], g, err_msg=name)
    for dx, dx_first in zip(dxs, dxs_first, strict=True):
        if dx_first is not None:
            np.testing.assert_array_equal(dx_first, dx)


def _model_and_data(op: Op, ex: Example, k: int) -> tuple[onnx.ModelProto, list[Array], Array]:
    rng = np.random.default_rng(200 + k)
    analysis = _one_node_analysis(op, ex)
    p = _params(op, ex, rng, np.float32)
    model = to_onnx_model(analysis, {f"op.{name}": v for name, v in p.items()})
    xs = _inputs(op, ex, rng, np.float32)
    y, _ = _forward(op, xs, p, train=False)
    return model, xs, y


@pytest.mark.parametrize(("cls", "k", "ex"), CASES)
def test_onnxruntime_matches_the_numpy_forward_in_eval_mode(
    cls: type[Op], k: int, ex: Example
) -> None:
    model, xs, y = _model_and_data(ex.op, ex, k)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {f"x{i}": x for i, x in enumerate(xs)})
    np.testing.assert_allclose(got, y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("cls", "k", "ex"), CASES)
def test_onnx_strict_shape_inference_agrees_with_infer_shape(
    cls: type[Op], k: int, ex: Example
) -> None:
    model, _, _ = _model_and_data(ex.op, ex, k)
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    for out in bare.graph.output:  # forget the exporter's shapes: ONNX must find them itself
        out.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(bare, strict_mode=True)
    dims = inferred.graph.output[0].type.tensor_type.shape.dim
    got = [d.dim_param or d.dim_value for d in dims]
    want: list[int | str] = ["N", *ex.op.infer_shape(ex.inputs)]
    assert got == want


@pytest.mark.parametrize("cls", OPS, ids=lambda c: c.kind())
def test_every_op_has_a_summary_and_examples(cls: type[Op]) -> None:
    assert cls.summary.strip(), f"{cls.kind()} has no summary"
    assert _examples(cls), f"{cls.kind()}: the contract test needs examples() to return some"


@pytest.mark.parametrize("cls", OP_CLASSES, ids=lambda c: c.kind())
def test_every_op_has_a_readme_row(cls: type[Op]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith(f"| `{cls.kind()}` |") for line in readme)


def test_an_op_registered_without_examples_fails_one_test_that_names_it() -> None:
    class Bare(Op):
        op: Literal["bare"] = "bare"
        summary: ClassVar[str] = "an op whose author forgot examples()"

    assert _examples(Bare) == []  # collection goes on
    with pytest.raises(AssertionError, match="bare"):
        test_every_op_has_a_summary_and_examples(Bare)


# ---- the torch lowering ----------------------------------------------------------------------

# Ops whose training forward draws random numbers (found by running it with two seeds) cannot
# match torch draw for draw: training is compared on a deterministic instance of the same op,
# and tests/ops/test_activations_norm.py checks the random draws themselves.
DETERMINISTIC_IN_TRAINING: dict[str, Callable[[Any], Op]] = {
    "dropout": lambda op: Dropout(p=0.0),
    "attention": lambda op: Attention(heads=op.heads, causal=op.causal, bias=op.bias),
    "rrelu": lambda op: RRelu(lower=op.upper, upper=op.upper),
}


def _random_in_training(op: Op, ex: Example) -> bool:
    rng = np.random.default_rng(0)
    xs, p = _inputs(op, ex, rng, np.float64), _params(op, ex, rng, np.float64)
    runs = [
        op.forward(xs, copy.deepcopy(p), Ctx(train=True, rng=np.random.default_rng(seed)))[0]
        for seed in (1, 2)
    ]
    return not np.array_equal(*runs)


def _torch_forward(op: Op, xs: list[Array], p: dict[str, Array], train: bool) -> Any:
    """op.torch_forward on copies of the arrays, trainable ones and float inputs as leaves
    that collect gradients; returns (y, input tensors, parameter tensors)."""
    tx = [torch.tensor(x, requires_grad=x.dtype.kind == "f") for x in xs]
    trainable = set(op.param_shapes([x.shape[1:] for x in xs]))
    tp = {k: torch.tensor(v, requires_grad=k in trainable) for k, v in p.items()}
    return op.torch_forward(torch, tx, tp, train), tx, tp


def _close(got: Any, want: Array, what: str) -> None:
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else got
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=what)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(("cls", "k", "ex"), CASES)
def test_torch_forward_and_its_autograd_equal_forward_and_backward_in_float64(
    cls: type[Op], k: int, ex: Example, train: bool
) -> None:
    op = ex.op
    if train and _random_in_training(op, ex):
        assert cls.kind() in DETERMINISTIC_IN_TRAINING, (
            f"{cls.kind()} draws random numbers in training: give the contract test a "
            "deterministic instance in DETERMINISTIC_IN_TRAINING"
        )
        op = DETERMINISTIC_IN_TRAINING[cls.kind()](op)
    rng = np.random.default_rng(400 + k)
    xs, p = _inputs(op, ex, rng, np.float64), _params(op, ex, rng, np.float64)
    ours = copy.deepcopy(p)  # training moves the running statistics of this copy
    y, cache = op.forward(xs, ours, Ctx(train=train, rng=np.random.default_rng(7)))
    r = rng.normal(size=y.shape)  # L = sum(y * r)
    dxs, dparams = op.backward(r.copy(), cache, ours)

    ty, tx, tp = _torch_forward(op, xs, p, train)
    assert ty.dtype == torch.float64 and tuple(ty.shape) == y.shape
    _close(ty, y, "forward")
    (ty * torch.tensor(r)).sum().backward()
    for i, (t, dx) in enumerate(zip(tx, dxs, strict=True)):
        if t.requires_grad:
            assert t.grad is not None and dx is not None, f"input {i}"
            _close(t.grad, dx, f"gradient of input {i}")
    for name in op.param_shapes(ex.inputs):
        assert tp[name].grad is not None, name
        _close(tp[name].grad, dparams[name], f"gradient of {name}")
    for name in op.state_shapes(ex.inputs):  # updated in place in training, kept in eval
        _close(tp[name], ours[name], f"state {name} after the forward")
        assert train or np.array_equal(ours[name], p[name])


@pytest.mark.parametrize(("cls", "k", "ex"), CASES)
def test_torch_forward_keeps_float32_and_agrees_with_forward(
    cls: type[Op], k: int, ex: Example
) -> None:
    rng = np.random.default_rng(500 + k)
    op = ex.op
    xs, p = _inputs(op, ex, rng, np.float32), _params(op, ex, rng, np.float32)
    y, _ = _forward(op, xs, p, train=False)
    with torch.no_grad():
        ty = op.torch_forward(torch, [torch.tensor(x) for x in xs], _as_torch(p), False)
    assert ty.dtype == torch.float32
    np.testing.assert_allclose(ty.numpy(), y, rtol=1e-5, atol=1e-6)


def _as_torch(p: dict[str, Array]) -> dict[str, Any]:
    return {k: torch.tensor(v) for k, v in p.items()}


@pytest.mark.parametrize("cls", OPS, ids=lambda c: c.kind())
def test_every_op_has_a_torch_lowering(cls: type[Op]) -> None:
    rng = np.random.default_rng(0)
    for ex in _examples(cls):
        xs, p = _inputs(ex.op, ex, rng, np.float64), _params(ex.op, ex, rng, np.float64)
        try:
            ex.op.torch_forward(torch, [torch.tensor(x) for x in xs], _as_torch(p), False)
        except NotImplementedError:
            pytest.fail(f"{cls.kind()} has no torch_forward: netspec.torch cannot lower it")


def test_an_op_without_a_torch_lowering_fails_one_test_that_names_it() -> None:
    class Unlowered(Op):
        op: Literal["unlowered"] = "unlowered"
        summary: ClassVar[str] = "an op whose author forgot torch_forward"

        def infer_shape(self, inputs: Any) -> Any:
            return inputs[0]

        @classmethod
        def examples(cls) -> list[Example]:
            return [Example(cls(), ((3,),))]

    with pytest.raises(pytest.fail.Exception, match="unlowered has no torch_forward"):
        test_every_op_has_a_torch_lowering(Unlowered)


@pytest.mark.parametrize("kind", sorted(DETERMINISTIC_IN_TRAINING))
def test_the_deterministic_stand_ins_are_the_random_ops_made_deterministic(kind: str) -> None:
    (ex, *_) = _examples(next(c for c in OPS if c.kind() == kind))
    assert _random_in_training(ex.op, ex)
    stand_in = DETERMINISTIC_IN_TRAINING[kind](ex.op)
    assert stand_in.kind() == kind and not _random_in_training(stand_in, ex)
