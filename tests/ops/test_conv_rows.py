"""The row path of stride-1 convolutions (im2col.row_path): the same results as the window
matrix and as torch, for every geometry it takes, and the row matrix kept from forward is the
one backward would rebuild."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from netspec.ops import im2col
from netspec.ops.base import Array, Ctx, Shape
from netspec.ops.conv import Conv1d, Conv2d
from netspec.ops.im2col import Grid

# (op, per-sample input shape): stride 1, so the wide grid; padding, dilation, groups,
# asymmetric and `same` padding, more filters than channels (dx by col2im over the rows), no
# bias, and 1-D (one shift: the row matrix is the window matrix).
CASES: list[tuple[Conv1d | Conv2d, Shape]] = [
    (Conv2d(filters=4, kernel=3, padding=1), (3, 7, 6)),  # dx by col2im (4 > 3 channels)
    (Conv2d(filters=3, kernel=3, padding=1), (5, 6, 6)),  # dx by correlation, itself rows
    (Conv2d(filters=2, kernel=(3, 2), dilation=(2, 1), padding=(2, 0, 1, 1)), (3, 8, 7)),
    (Conv2d(filters=6, kernel=3, groups=2, padding="same", bias=False), (4, 6, 5)),
    (Conv2d(filters=4, kernel=5, padding=2), (4, 9, 8)),
    (Conv2d(filters=3, kernel=(2, 3), padding=(0, 2)), (2, 5, 7)),  # padding > (K-1)*D
    (Conv1d(filters=3, kernel=3, dilation=2, padding=(3, 1)), (2, 12)),
]


def _case(op: Conv1d | Conv2d, shape: Shape, n: int = 3) -> tuple[Array, dict[str, Array], Array]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (n, *shape))
    params = {k: rng.standard_normal(s) for k, s in op.param_shapes([shape]).items()}
    dy = rng.standard_normal((n, *op.infer_shape([shape])))
    return x, params, dy


def _run(op: Conv1d | Conv2d, x: Array, params: dict[str, Array], dy: Array) -> list[Array]:
    y, cache = op.forward([x], params, Ctx())
    (dx,), grads = op.backward(dy, cache, params)
    assert dx is not None
    return [y, dx, *(grads[k] for k in sorted(grads))]


@pytest.mark.parametrize(("op", "shape"), CASES)
def test_the_row_path_equals_the_window_matrix_and_torch(
    op: Conv1d | Conv2d, shape: Shape, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, params, dy = _case(op, shape)
    monkeypatch.setattr(im2col, "ROW_PATH_MIN", 1)
    _, chunks = op._chunks(shape, len(x), x.itemsize)
    assert im2col.row_path(chunks, shape[0] // op.groups)
    rows = _run(op, x, params, dy)
    monkeypatch.setattr(im2col, "ROW_PATH_MIN", 10**9)
    assert not im2col.row_path(chunks, shape[0] // op.groups)
    cols = _run(op, x, params, dy)
    for got, want in zip(rows, cols, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)

    tx = torch.tensor(x, requires_grad=True)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    pads, _ = op._geometry(shape)
    padded = F.pad(tx, [v for lo_hi in reversed(pads) for v in lo_hi])
    conv = F.conv1d if op.ndim == 1 else F.conv2d
    ty = conv(padded, tp["weight"], tp.get("bias"), 1, 0, op.dilation, op.groups)
    (ty * torch.tensor(dy)).sum().backward()
    assert tx.grad is not None
    want = [ty.detach().numpy(), tx.grad.numpy()]
    want += [g.numpy() for k in sorted(tp) if (g := tp[k].grad) is not None]
    assert len(want) == len(rows)
    for got, ref in zip(rows, want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("op", "shape"), CASES[:3])
def test_forward_keeps_the_row_matrix_backward_would_rebuild(
    op: Conv1d | Conv2d, shape: Shape, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(im2col, "ROW_PATH_MIN", 1)
    monkeypatch.setattr(im2col, "CHUNK_BYTES", 1)  # one sample per chunk: three kept matrices
    x, params, _ = _case(op, shape)
    _, (kept, *_) = op.forward([x], params, Ctx())
    _, chunks = op._chunks(shape, len(x), x.itemsize)
    assert len(kept) == len(chunks) == len(x)
    for (lo, hi, grid), mat in zip(chunks, kept, strict=True):
        np.testing.assert_array_equal(mat, grid.rows(grid.load(x[lo:hi])))
        # ...which holds every window-matrix tap at its shift
        cols = grid.im2col(grid.load(x[lo:hi]))  # (C, K, M), taps in C order
        kw, m = grid.kernel[-1], grid.columns
        for t, off in enumerate(grid.shifts):
            np.testing.assert_array_equal(cols[:, t * kw : (t + 1) * kw], mat[..., off : off + m])


def test_rows_adjoint_is_the_adjoint_of_rows() -> None:
    """<rows(b), d> = <b, rows_adjoint(d)>: col2im over the row matrix loses nothing."""
    rng = np.random.default_rng(1)
    grid = Grid.of((3, 4), (1, 1), (1, 2), (5, 6), ((1, 1), (2, 3)), (5, 5), 2)
    buf = rng.standard_normal((3, grid.shape[0] * grid.shape[1] + grid.slack))
    d = rng.standard_normal((3, grid.kernel[-1], grid.span))
    lhs = float(np.sum(grid.rows(buf) * d))
    rhs = float(np.sum(buf * grid.rows_adjoint(d)))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_the_rule_keeps_few_channels_on_the_window_matrix() -> None:
    """LeNet's first conv (1 channel, 5x5) reduces over 5 values a row-path GEMM: im2col."""
    op = Conv2d(filters=6, kernel=5, padding=2)
    _, chunks = op._chunks((1, 28, 28), 4, 4)
    assert chunks[0][2].wide and not im2col.row_path(chunks, 1)
    assert im2col.row_path(chunks, im2col.ROW_PATH_MIN)
    strided = Conv2d(filters=6, kernel=3, stride=2)
    _, chunks = strided._chunks((64, 8, 8), 4, 4)
    assert not im2col.row_path(chunks, 64)  # the exact grid has no row matrix


@pytest.mark.parametrize(
    ("op", "shape", "kept_ndim"),
    [
        (Conv2d(filters=3, kernel=3, stride=2, padding=1), (4, 8, 8), 3),  # window matrix 2.25x
        (Conv2d(filters=3, kernel=1, stride=2), (4, 8, 8), 3),  # a quarter of the buffer
        (Conv2d(filters=3, kernel=5, padding=2), (2, 8, 8), 2),  # stride 1, 10 < 32: buffer
    ],
)
def test_forward_keeps_the_window_matrix_where_it_is_small_and_backward_matches_torch(
    op: Conv2d, shape: Shape, kept_ndim: int
) -> None:
    x, params, dy = _case(op, shape)
    _, (kept, *_) = op.forward([x], params, Ctx())
    assert {m.ndim for m in kept} == {kept_ndim}
    _, dx, *grads = _run(op, x, params, dy)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(params["weight"], requires_grad=True)
    ty = F.conv2d(tx, tw, torch.tensor(params["bias"]), op.stride, op.padding)
    (ty * torch.tensor(dy)).sum().backward()
    assert tx.grad is not None and tw.grad is not None
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads[1], tw.grad.numpy(), rtol=1e-10, atol=1e-12)
