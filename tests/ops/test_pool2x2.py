"""The flat-run 2x2 max pool (pool2x2.py): where it applies, the same output and winners as
tiled_max bit for bit, and through MaxPool2d the gradient torch gives, ties included (every
0/1 pattern of a window)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from netspec.ops import pool2x2
from netspec.ops.base import Array, Ctx
from netspec.ops.pool import MaxPool2d, tiled_max


def _tied(n: int, c: int, h: int, w: int, dtype: type) -> Array:
    """Windows cycling through all 16 patterns of 0/1 values, the rest a few levels."""
    rng = np.random.default_rng(0)
    x = rng.integers(-1, 2, (n, c, h, w)).astype(dtype)
    patterns = np.array(list(itertools.product((0, 1), repeat=4)), dtype=dtype).reshape(16, 2, 2)
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    flat = windows.reshape(-1, 2, 2)
    count = min(len(flat), 64)
    flat[:count] = patterns[np.arange(count) % 16]
    return np.ascontiguousarray(windows.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (3, 2, 4, 10), (1, 1, 2, 2)])
def test_max2x2_equals_tiled_max_bit_for_bit(shape: tuple[int, ...], dtype: type) -> None:
    x = _tied(*shape, dtype)
    out = (shape[2] // 2, shape[3] // 2)
    assert pool2x2.applies(x, (2, 2), out)
    y, picks = pool2x2.max2x2(x)
    want, want_picks = tiled_max(x, (2, 2), out)
    assert y.dtype == x.dtype and y.flags.c_contiguous
    np.testing.assert_array_equal(y, want)
    for got, ref in zip(picks, want_picks, strict=True):
        assert got.shape == ref.shape and got.dtype == ref.dtype
        np.testing.assert_array_equal(got, ref)


def test_max2x2_applies_only_to_whole_contiguous_2x2_tiles() -> None:
    x = np.zeros((2, 3, 8, 6))
    assert not pool2x2.applies(x, (3, 3), (2, 2))
    assert not pool2x2.applies(x[:, :, :7], (2, 2), (3, 3))  # a row left over
    assert not pool2x2.applies(x[..., ::-1], (2, 2), (4, 3))  # not contiguous
    assert not pool2x2.applies(x[:0], (2, 2), (4, 3))  # empty batch


@pytest.mark.parametrize("shape", [(3, 2, 8, 6), (2, 6, 28, 28)])
def test_maxpool2d_2x2_with_ties_matches_torch(shape: tuple[int, ...]) -> None:
    op = MaxPool2d(kernel=2)
    x = _tied(*shape, np.float64)
    dy = np.random.default_rng(1).standard_normal(
        (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    )
    y, cache = op.forward([x], {}, Ctx())
    (dx,), _ = op.backward(dy, cache, {})
    tx = torch.tensor(x, requires_grad=True)
    ty = F.max_pool2d(tx, 2)
    (ty * torch.tensor(dy)).sum().backward()
    assert tx.grad is not None and dx is not None
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(dx, tx.grad.numpy())
    assert dx.sum() == pytest.approx(dy.sum(), rel=1e-12)  # no gradient counted twice
