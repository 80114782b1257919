"""Activations, normalisation, dense, shape ops and embedding against torch (float64, autograd),
plus the behaviour torch cannot check: dropout statistics, rrelu's random slopes, shape errors."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as tf
from pydantic import ValidationError

from netspec.errors import NetspecError, ShapeError
from netspec.ops.activation import (
    Elu,
    Gelu,
    Identity,
    LeakyRelu,
    Maxout,
    PRelu,
    Relu,
    RRelu,
    Sigmoid,
    Softmax,
    Softplus,
    Step,
    Swish,
    Tanh,
)
from netspec.ops.base import Array, Ctx, Op, Params
from netspec.ops.dense import Dense
from netspec.ops.embedding import Embedding
from netspec.ops.functional import erf
from netspec.ops.norm import BatchNorm, Dropout, Lrn
from netspec.ops.shape import Pad, Reshape


def close(actual: Any, expected: Any) -> None:
    """Equal up to float64 rounding: both sides compute the same formulas."""
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12)


rng = np.random.default_rng(0)


def run(
    op: Op, x: Array, p: Params | None = None, *, train: bool = False, seed: int = 0
) -> tuple[Array, Array, list[Array | None], dict[str, Array]]:
    """Forward, then backward of sum(y * dy) for a random dy: (y, dy, dxs, dparams)."""
    p = {} if p is None else p
    y, cache = op.forward([x], p, Ctx(train=train, rng=np.random.default_rng(seed)))
    dy = np.random.default_rng(1).normal(size=y.shape)
    dxs, dps = op.backward(dy, cache, p)
    return y, dy, dxs, dps


def torch_grads(
    fn: Callable[..., torch.Tensor], x: Array, dy: Array, *params: Array
) -> tuple[Array, list[Array]]:
    """torch's output and, by autograd on sum(y * dy), the gradients of x and each param."""
    ts = [torch.tensor(a, requires_grad=True) for a in (x, *params)]
    y = fn(*ts)
    (y * torch.tensor(dy)).sum().backward()
    return y.detach().numpy(), [t.grad.numpy() for t in ts]


# ---- elementwise activations ----------------------------------------------------------------

TWINS: list[tuple[Op, Callable[[torch.Tensor], torch.Tensor], tuple[int, ...]]] = [
    (Identity(), lambda t: t * 1, (4, 5)),
    (Relu(), tf.relu, (4, 6)),
    (Sigmoid(), torch.sigmoid, (2, 3, 3, 3)),
    (Tanh(), torch.tanh, (4, 6)),
    (LeakyRelu(), tf.leaky_relu, (4, 6)),
    (LeakyRelu(alpha=0.2), lambda t: tf.leaky_relu(t, 0.2), (2, 3, 3, 3)),
    (Elu(), tf.elu, (4, 6)),
    (Elu(alpha=0.5), lambda t: tf.elu(t, 0.5), (2, 3, 3, 3)),
    (Softplus(), tf.softplus, (4, 6)),
    (Gelu(), tf.gelu, (4, 6)),
    (Swish(), tf.silu, (2, 3, 3, 3)),
    (Softmax(), lambda t: torch.softmax(t, dim=-1), (4, 6)),
    (Softmax(axis=0), lambda t: torch.softmax(t, dim=1), (2, 3, 2, 2)),
    (Softmax(axis=-2), lambda t: torch.softmax(t, dim=-2), (2, 3, 4)),
    (
        RRelu(lower=0.1, upper=0.3),
        lambda t: tf.rrelu(t, 0.1, 0.3, training=False),
        (4, 6),
    ),
]


@pytest.mark.parametrize(("op", "fn", "shape"), TWINS, ids=[repr(t[0]) for t in TWINS])
def test_activation_matches_torch_forward_and_backward(
    op: Op, fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...]
) -> None:
    x = rng.uniform(-4, 4, shape)
    x.flat[::5] = 0.0  # at a rectifier's kink too, the gradient follows torch's convention
    y, dy, (dx,), _ = run(op, x)
    ty, (tdx,) = torch_grads(fn, x, dy)
    close(y, ty)
    close(dx, tdx)


def test_softmax_is_stable_for_huge_inputs() -> None:
    x = np.array([[1000.0, 1001.0, 999.0]])
    y, _ = Softmax().forward([x], {}, Ctx())
    expected = torch.softmax(torch.tensor(x), dim=-1).numpy()
    close(y, expected)


def test_vectorised_erf_matches_math_erf_across_both_branches() -> None:
    x = np.linspace(-7, 7, 2001)
    np.testing.assert_allclose(erf(x), [math.erf(v) for v in x], rtol=0, atol=4e-15)


def test_float32_erf_is_the_fast_rational_within_four_float32_ulps_of_math_erf() -> None:
    # Training runs in float32: the series' ~170 array passes made GELU 70% of a transformer
    # step, so float32 takes a rational approximation instead (float64 keeps the series).
    x = np.linspace(-7, 7, 4001, dtype=np.float32)
    got = erf(x)
    assert got.dtype == np.float32
    want = [math.erf(float(v)) for v in x]
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=5e-7)
    assert np.array_equal(erf(-x), -got)


def test_float32_gelu_is_exact_gelu_to_float32_rounding_across_chunks() -> None:
    # Phi for float32 is the rational erf with its constants folded into the coefficients,
    # evaluated 64K values at a time: more than 3 chunks here, the last a partial one, and
    # values beyond erf's clamp at |x / sqrt 2| = 4.
    x = np.linspace(-12, 12, 200_003, dtype=np.float32).reshape(1, -1)
    y, (_, cdf) = Gelu().forward([x], {}, Ctx())
    assert y.dtype == cdf.dtype == np.float32
    x64 = x.astype(np.float64)
    want = 0.5 * (1 + erf(x64 / math.sqrt(2)))
    np.testing.assert_allclose(cdf, want, rtol=0, atol=3e-7)
    assert np.all(np.abs(y - x64 * want) <= 3e-7 * np.maximum(1, np.abs(x64)))
    np.testing.assert_array_equal(Gelu().forward([x[:, 7:9]], {}, Ctx())[0], y[:, 7:9])


def test_step_is_heaviside_with_a_straight_through_backward() -> None:
    x = rng.uniform(-2, 2, (3, 7))
    x[0, 0] = 0.0  # the perceptron outputs 0 at exactly 0
    y, dy, (dx,), _ = run(Step(), x)
    np.testing.assert_array_equal(
        y, torch.heaviside(torch.tensor(x), torch.tensor(0.0, dtype=torch.float64)).numpy()
    )
    np.testing.assert_array_equal(dx, dy)
    assert not Step.differentiable and Gelu.differentiable


# ---- prelu, rrelu, maxout -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "shape"),
    [("shared", (3, 4, 2, 2)), ("per_channel", (3, 4, 2, 2)), ("per_channel", (5, 6))],
)
def test_prelu_matches_torch_including_the_slope_gradient(
    channels: str, shape: tuple[int, ...]
) -> None:
    op = PRelu(channels=channels)
    (slope_shape,) = op.param_shapes([shape[1:]]).values()
    assert slope_shape == ((shape[1],) if channels == "per_channel" else (1,))
    slope = rng.uniform(0.05, 0.5, slope_shape)
    x = rng.uniform(-2, 2, shape)
    y, dy, (dx,), grads = run(op, x, {"slope": slope})
    ty, (tdx, tds) = torch_grads(tf.prelu, x, dy, slope)
    close(y, ty)
    close(dx, tdx)
    close(grads["slope"], tds)


def test_ops_with_fixed_starting_values_provide_them() -> None:
    np.testing.assert_array_equal(PRelu().initial_param("slope", (1,)), [0.25])
    bn = BatchNorm()
    np.testing.assert_array_equal(bn.initial_param("weight", (3,)), np.ones(3))
    np.testing.assert_array_equal(bn.initial_param("bias", (3,)), np.zeros(3))
    np.testing.assert_array_equal(bn.initial_state("running_mean", (3,)), np.zeros(3))
    np.testing.assert_array_equal(bn.initial_state("running_var", (3,)), np.ones(3))
    assert Softplus().initial_param("weight", (3,)) is None


def test_rrelu_in_training_draws_slopes_within_bounds_and_reuses_them_backward() -> None:
    op = RRelu(lower=0.1, upper=0.3)
    x = rng.uniform(-2, 2, (64, 50))
    x[0] = 0.0
    y, dy, (dx,), _ = run(op, x, train=True)
    neg = x < 0
    slopes = y[neg] / x[neg]
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3
    assert slopes.std() > 0.03  # drawn per element, not one shared value
    np.testing.assert_array_equal(y[~neg], x[~neg])
    close(dx[neg], dy[neg] * slopes)
    close(dx[x > 0], dy[x > 0])
    at_kink = dx[0] / dy[0]  # torch: a random slope at 0 too, not 1
    assert at_kink.min() >= 0.1 and at_kink.max() <= 0.3


def _torch_train(op: Op, x: Array, seed: int) -> tuple[Array, Array, Array]:
    """torch_forward in training after torch.manual_seed(seed): (y, dy, dx) for sum(y * dy)."""
    torch.manual_seed(seed)
    tx = torch.tensor(x, requires_grad=True)
    y = op.torch_forward(torch, [tx], {}, True)
    dy = torch.randn(y.shape, dtype=y.dtype)
    (y * dy).sum().backward()
    assert tx.grad is not None
    return y.detach().numpy(), dy.numpy(), tx.grad.numpy()


def test_rrelu_lowered_to_torch_draws_slopes_from_torchs_generator_within_bounds() -> None:
    op = RRelu(lower=0.1, upper=0.3)
    x = rng.uniform(-2, 2, (64, 50))
    x[0] = 0.0
    y, dy, dx = _torch_train(op, x, seed=3)
    neg = x < 0
    slopes = y[neg] / x[neg]
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3 and slopes.std() > 0.03
    np.testing.assert_array_equal(y[x > 0], x[x > 0])
    close(dx[neg], dy[neg] * slopes)  # backward reuses the draw, as the NumPy op's cache
    close(dx[x > 0], dy[x > 0])
    at_kink = dx[0] / dy[0]  # a random slope at 0 too, as forward
    assert at_kink.min() >= 0.1 and at_kink.max() <= 0.3 and at_kink.std() > 0.03
    np.testing.assert_array_equal(_torch_train(op, x, seed=3)[0], y)  # torch's seed decides
    assert not np.array_equal(_torch_train(op, x, seed=4)[0], y)


def test_rrelu_rejects_lower_above_upper() -> None:
    with pytest.raises(ValidationError, match="must not exceed"):
        RRelu(lower=0.5, upper=0.2)


@pytest.mark.parametrize(("k", "shape"), [(2, (4, 6)), (3, (2, 6, 3, 3)), (1, (2, 4))])
def test_maxout_matches_a_torch_reshape_and_max(k: int, shape: tuple[int, ...]) -> None:
    x = rng.uniform(-2, 2, shape)
    y, dy, (dx,), _ = run(Maxout(k=k), x)

    def ref(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], t.shape[1] // k, k, *t.shape[2:]).amax(dim=2)

    ty, (tdx,) = torch_grads(ref, x, dy)
    assert Maxout(k=k).infer_shape([shape[1:]]) == ty.shape[1:]
    close(y, ty)
    close(dx, tdx)


def test_maxout_names_the_shape_and_k_when_channels_do_not_divide() -> None:
    with pytest.raises(ShapeError) as err:
        Maxout(k=4).infer_shape([(6, 5, 5)])
    assert "[6, 5, 5]" in str(err.value) and "k=4" in str(err.value)


# ---- batchnorm, lrn, dropout ----------------------------------------------------------------


def _bn_torch(shape: tuple[int, ...], op: BatchNorm) -> torch.nn.Module:
    cls = torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d
    return cls(shape[1], eps=op.eps, momentum=op.momentum).double()


def _bn_params(c: int) -> Params:
    return {
        "weight": rng.uniform(0.5, 1.5, c),
        "bias": rng.uniform(-0.5, 0.5, c),
        "running_mean": rng.uniform(-0.5, 0.5, c),
        "running_var": rng.uniform(0.5, 2.0, c),
    }


# The last two have 16 or more values per sample and channel: the BLAS path of the sums.
@pytest.mark.parametrize("shape", [(6, 4), (4, 3, 5), (4, 3, 3, 3), (3, 2, 20), (2, 3, 4, 5)])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batchnorm_matches_torch_outputs_grads_and_running_stats(
    shape: tuple[int, ...], train: bool
) -> None:
    op = BatchNorm(eps=1e-3, momentum=0.3)
    p = _bn_params(shape[1])
    mod = _bn_torch(shape, op)
    with torch.no_grad():
        for name, value in p.items():
            getattr(mod, name).copy_(torch.tensor(value))
    mod.train(train)
    x = rng.normal(1.0, 2.0, shape)
    before = {k: v.copy() for k, v in p.items()}
    y, dy, (dx,), grads = run(op, x, p, train=train)
    tx = torch.tensor(x, requires_grad=True)
    ty = mod(tx)
    (ty * torch.tensor(dy)).sum().backward()
    close(y, ty.detach().numpy())
    close(dx, tx.grad.numpy())
    close(grads["weight"], mod.weight.grad.numpy())
    close(grads["bias"], mod.bias.grad.numpy())
    for name in ("running_mean", "running_var"):
        close(p[name], getattr(mod, name).numpy())
        assert train or np.array_equal(p[name], before[name])


def test_batchnorm_updates_float32_running_stats_in_place() -> None:
    op = BatchNorm()
    p = {k: v.astype(np.float32) for k, v in _bn_params(3).items()}
    running = p["running_mean"]
    y, _ = op.forward([rng.normal(size=(5, 3, 2, 2)).astype(np.float32)], p, Ctx(train=True))
    assert p["running_mean"] is running and running.dtype == np.float32
    assert y.dtype == np.float32


@pytest.mark.parametrize(
    ("op", "shape"),
    [
        (Lrn(), (2, 7, 3, 3)),
        (Lrn(size=3, alpha=0.5, beta=0.6, bias=1.0), (3, 4, 5)),
        (Lrn(size=1, alpha=2.0), (2, 3, 2, 2)),
    ],
)
def test_lrn_matches_torch_local_response_norm(op: Lrn, shape: tuple[int, ...]) -> None:
    x = rng.normal(size=shape)
    y, dy, (dx,), _ = run(op, x)
    mod = torch.nn.LocalResponseNorm(op.size, alpha=op.alpha, beta=op.beta, k=op.bias)
    ty, (tdx,) = torch_grads(mod, x, dy)
    close(y, ty)
    close(dx, tdx)


def test_lrn_rejects_even_sizes_where_torch_and_onnx_disagree() -> None:
    with pytest.raises(ValidationError, match="odd"):
        Lrn(size=4)


def test_dropout_is_the_identity_at_inference_and_vanishes_from_onnx() -> None:
    x = rng.normal(size=(4, 6))
    y, dy, (dx,), _ = run(Dropout(p=0.7), x, train=False)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, dy)
    assert Dropout().to_onnx(None) is None


def test_dropout_lowered_to_torch_masks_and_scales_as_forward_with_torchs_generator() -> None:
    p = 0.3
    x = np.full((200, 500), 2.0)
    y, dy, dx = _torch_train(Dropout(p=p), x, seed=7)
    dropped = y == 0
    assert abs(dropped.mean() - p) < 0.01
    close(y[~dropped], 2.0 / (1 - p))
    close(dx, dy * y / 2.0)  # dx = dy * mask / (1 - p)
    np.testing.assert_array_equal(_torch_train(Dropout(p=p), x, seed=7)[0], y)
    assert not np.array_equal(_torch_train(Dropout(p=p), x, seed=8)[0], y)
    at_inference = Dropout(p=p).torch_forward(torch, [torch.tensor(x)], {}, False)
    np.testing.assert_array_equal(at_inference.numpy(), x)


def test_dropout_in_training_keeps_the_expectation_and_masks_backward_alike() -> None:
    p = 0.3
    x = np.full((200, 500), 2.0)
    y, dy, (dx,), _ = run(Dropout(p=p), x, train=True, seed=7)
    dropped = y == 0
    assert abs(dropped.mean() - p) < 0.01  # 100,000 draws: the std of the rate is ~0.0015
    assert abs(y.mean() - 2.0) < 0.03
    close(y[~dropped], 2.0 / (1 - p))
    close(dx, dy * y / 2.0)  # dx = dy * mask / (1 - p)
    again, _ = Dropout(p=p).forward([x], {}, Ctx(train=True, rng=np.random.default_rng(7)))
    np.testing.assert_array_equal(again, y)  # the mask comes from ctx.rng alone


# ---- shape ops, embedding -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "shape"), [((3, 8), (2, 2, 3, 4)), ((2, -1, 3), (2, 12)), ((-1,), (3, 2, 2))]
)
def test_reshape_matches_torch(target: tuple[int, ...], shape: tuple[int, ...]) -> None:
    op = Reshape(shape=target)
    x = rng.normal(size=shape)
    y, dy, (dx,), _ = run(op, x)
    ty, (tdx,) = torch_grads(lambda t: t.reshape(shape[0], *target), x, dy)
    assert op.infer_shape([shape[1:]]) == ty.shape[1:]
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(dx, tdx)


@pytest.mark.parametrize(
    ("target", "shape"), [((5, -1), (2, 3, 4)), ((5, 5), (2, 3, 4))], ids=["inferred", "explicit"]
)
def test_reshape_mismatch_names_both_shapes(target: tuple[int, ...], shape: Sequence[int]) -> None:
    with pytest.raises(ShapeError) as err:
        Reshape(shape=target).infer_shape([tuple(shape)])
    assert str(list(shape)) in str(err.value) and str(list(target)) in str(err.value)


def test_reshape_allows_at_most_one_inferred_dimension() -> None:
    with pytest.raises(ValidationError, match="at most one -1"):
        Reshape(shape=(-1, -1))


@pytest.mark.parametrize(
    ("pads", "value", "shape"),
    [
        ((8, 0, 0, 8, 0, 0), 0.0, (2, 4, 3, 3)),
        ((1, 2), -1.5, (3, 4)),
        ((0, 1, 2, 0), 0.5, (2, 2, 3)),
    ],
)
def test_pad_matches_torch_functional_pad(
    pads: tuple[int, ...], value: float, shape: tuple[int, ...]
) -> None:
    op = Pad(pads=pads, value=value)
    rank = len(shape) - 1
    # torch lists (begin, end) pairs from the last axis backwards.
    torch_pads = [v for a in reversed(range(rank)) for v in (pads[a], pads[rank + a])]
    x = rng.normal(size=shape)
    y, dy, (dx,), _ = run(op, x)
    ty, (tdx,) = torch_grads(lambda t: tf.pad(t, torch_pads, value=value), x, dy)
    assert op.infer_shape([shape[1:]]) == ty.shape[1:]
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(dx, tdx)


def test_pad_with_the_wrong_number_of_values_names_the_rank() -> None:
    with pytest.raises(ShapeError, match="3-D input needs 6"):
        Pad(pads=(1, 1)).infer_shape([(3, 4, 4)])


def test_embedding_matches_torch_and_accumulates_repeated_ids() -> None:
    op = Embedding(vocab=7, dim=3)
    weight = rng.normal(size=(7, 3))
    ids = np.array([[1, 4, 1, 6], [0, 1, 4, 4]])
    y, cache = op.forward([ids], {"weight": weight}, Ctx())
    dy = rng.normal(size=y.shape)
    (dids,), grads = op.backward(dy, cache, {"weight": weight})
    tw = torch.tensor(weight, requires_grad=True)
    ty = tf.embedding(torch.tensor(ids), tw)
    (ty * torch.tensor(dy)).sum().backward()
    assert dids is None and op.infer_shape([(4,)]) == y.shape[1:]
    np.testing.assert_array_equal(y, ty.detach().numpy())
    close(grads["weight"], tw.grad.numpy())


def test_embedding_refuses_ids_outside_the_vocabulary() -> None:
    with pytest.raises(NetspecError, match=r"\[0, 7\)"):
        Embedding(vocab=7, dim=3).forward(
            [np.array([[2, -1]])], {"weight": np.zeros((7, 3))}, Ctx()
        )


# ---- dense -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "shape"),
    [(Dense(units=3), (4, 5)), (Dense(units=4, bias=False), (2, 6)), (Dense(units=2), (3, 4, 5))],
    ids=["bias", "no-bias", "per-step"],
)
def test_dense_matches_torch_linear_forward_and_all_gradients(
    op: Dense, shape: tuple[int, ...]
) -> None:
    x = rng.normal(size=shape)
    p = {k: rng.normal(size=s) for k, s in op.param_shapes([shape[1:]]).items()}
    y, dy, dxs, dps = run(op, x, p)
    names = sorted(p)  # bias, weight
    ref, (dx, *dparams) = torch_grads(
        lambda t, *ws: tf.linear(t, **dict(zip(names, ws, strict=True))),
        x,
        dy,
        *(p[k] for k in names),
    )
    close(y, ref)
    close(dxs[0], dx)
    for k, g in zip(names, dparams, strict=True):
        close(dps[k], g)
