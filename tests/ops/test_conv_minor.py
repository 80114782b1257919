"""The batch-minor grid (minorgrid.py) of stride-1 2-D convs whose wide grid wastes columns:
where the rule takes it, the same results as the wide grid and as torch, in one chunk and in
chunks of unequal size, and an adjoint col2im."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from netspec.ops import im2col, minorgrid
from netspec.ops.base import Array, Ctx, Shape
from netspec.ops.conv import Conv2d
from netspec.ops.minorgrid import MinorGrid, minor_grid

# (op, per-sample input shape), each wasting >= MIN_WASTE on the wide grid: LeNet's second
# conv, dilation, groups, asymmetric padding, a non-square kernel, dx by correlation (fewer
# filters than channels) and no bias.
CASES: list[tuple[Conv2d, Shape]] = [
    (Conv2d(filters=16, kernel=5), (6, 14, 14)),
    (Conv2d(filters=4, kernel=3, dilation=2, padding=(1, 0, 0, 1), groups=2), (2, 9, 7)),
    (Conv2d(filters=3, kernel=(3, 2)), (2, 6, 5)),
    (Conv2d(filters=2, kernel=3, bias=False), (3, 7, 8)),
    (Conv2d(filters=5, kernel=(2, 4), padding=(0, 1)), (3, 5, 6)),
]


def _case(op: Conv2d, shape: Shape, n: int) -> tuple[Array, dict[str, Array], Array]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (n, *shape))
    params = {k: rng.standard_normal(s) for k, s in op.param_shapes([shape]).items()}
    return x, params, rng.standard_normal((n, *op.infer_shape([shape])))


def _run(op: Conv2d, x: Array, params: dict[str, Array], dy: Array) -> list[Array]:
    y, cache = op.forward([x], params, Ctx())
    (dx,), grads = op.backward(dy, cache, params)
    assert dx is not None
    return [y, dx, *(grads[k] for k in sorted(grads))]


def _torch(op: Conv2d, shape: Shape, x: Array, params: dict[str, Array], dy: Array) -> list[Array]:
    tx = torch.tensor(x, requires_grad=True)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    (pt, pb), (pl, pr) = op._geometry(shape)[0]
    ty = F.conv2d(
        F.pad(tx, (pl, pr, pt, pb)), tp["weight"], tp.get("bias"), 1, 0, op.dilation, op.groups
    )
    (ty * torch.tensor(dy)).sum().backward()
    assert tx.grad is not None
    grads = [g.numpy() for k in sorted(tp) if (g := tp[k].grad) is not None]
    return [ty.detach().numpy(), tx.grad.numpy(), *grads]


@pytest.mark.parametrize(("op", "shape"), CASES)
@pytest.mark.parametrize("chunked", [False, True])
def test_the_minor_grid_equals_the_wide_grid_and_torch(
    op: Conv2d, shape: Shape, chunked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 5
    x, params, dy = _case(op, shape, n)
    if chunked:  # two samples a chunk: 2, 2 and a last one of 1
        _, (first, *_) = op._chunks(shape, 1, x.itemsize)
        monkeypatch.setattr(
            im2col,
            "CHUNK_BYTES",
            2 * first[2].columns * x.itemsize * shape[0] * int(np.prod(params["weight"].shape[2:])),
        )
    _, chunks = op._chunks(shape, n, x.itemsize)
    assert all(isinstance(grid, MinorGrid) for _, _, grid in chunks)
    assert [hi - lo for lo, hi, _ in chunks] == ([2, 2, 1] if chunked else [5])
    minor = _run(op, x, params, dy)
    monkeypatch.setattr(minorgrid, "MIN_WASTE", float("inf"))
    _, chunks = op._chunks(shape, n, x.itemsize)
    assert not any(isinstance(grid, MinorGrid) for _, _, grid in chunks)
    wide = _run(op, x, params, dy)
    for got, want in zip(minor, wide, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    for got, want in zip(minor, _torch(op, shape, x, params, dy), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_the_rule_takes_the_minor_grid_only_where_the_wide_grid_wastes() -> None:
    lenet2 = Conv2d(filters=16, kernel=5)  # pitch 14 for 10 outputs: 1.4x
    assert isinstance(lenet2._chunks((6, 14, 14), 4, 4)[1][0][2], MinorGrid)
    lenet1 = Conv2d(filters=6, kernel=5, padding=2)  # pitch 30 for 28: 1.07x, stays wide
    assert lenet1._chunks((1, 28, 28), 4, 4)[1][0][2].wide
    rows = Conv2d(filters=8, kernel=5)  # 8 channels * 5 >= ROW_PATH_MIN: the row path's grid
    assert rows._chunks((8, 14, 14), 4, 4)[1][0][2].wide
    strided = Conv2d(filters=8, kernel=5, stride=2)
    assert not isinstance(strided._chunks((2, 14, 14), 4, 4)[1][0][2], MinorGrid)


def test_minor_col2im_is_the_adjoint_of_im2col_and_unload_of_load() -> None:
    """<im2col(b), d> = <b, col2im(d)>, with dilation and padding, and unload(load(x)) = x."""
    rng = np.random.default_rng(1)
    grid = minor_grid((3, 2), (2, 1), (6, 5), ((1, 0), (2, 1)), (3, 7), 3)
    x = rng.standard_normal((3, 2, 6, 5))
    buf = grid.load(x)
    np.testing.assert_array_equal(grid.unload(buf), x)
    d = rng.standard_normal((2, 6, grid.columns))
    lhs = float(np.sum(grid.im2col(buf) * d))
    rhs = float(np.sum(buf * grid.col2im(d)))
    assert lhs == pytest.approx(rhs, rel=1e-12)
