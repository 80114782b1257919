"""Convolutions and pools against torch.nn.functional, plus their shape rules and warnings."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from pydantic import ValidationError

from netspec.errors import ShapeError
from netspec.ops import im2col
from netspec.ops.base import Array, Ctx, Op, Shape
from netspec.ops.conv import Conv1d, Conv2d
from netspec.ops.im2col import Grid
from netspec.ops.pool import (
    AvgPool1d,
    AvgPool2d,
    GlobalAvgPool,
    GlobalMaxPool,
    MaxPool1d,
    MaxPool2d,
)
from netspec.ops.window import tap_regions

BATCH = 2


def run_numpy(
    op: Op, x: Array, params: dict[str, Array], dy: Array
) -> tuple[Array, Array, dict[str, Array]]:
    y, cache = op.forward([x], params, Ctx())
    dxs, grads = op.backward(dy, cache, params)
    dx = dxs[0]
    assert dx is not None
    return y, dx, grads


def random_case(
    op: Op, shape: Shape, dtype: Any = np.float64, seed: int = 0
) -> tuple[Array, dict[str, Array], Array]:
    """An input, parameters and an output gradient for op on a batch of `shape`."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (BATCH, *shape)).astype(dtype)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in op.param_shapes([shape]).items()}
    out = op.infer_shape([shape])
    dy = rng.standard_normal((BATCH, *out)).astype(dtype)
    return x, params, dy


def torch_grads(
    fn: Any, x: Array, params: dict[str, Array], dy: Array
) -> tuple[Array, Array, dict[str, Array]]:
    """Torch's output and the gradients of sum(y * dy) for x and every parameter."""
    tx = torch.tensor(x, requires_grad=True)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    ty = fn(tx, tp)
    (ty * torch.tensor(dy)).sum().backward()
    assert tx.grad is not None
    grads = {}
    for k, v in tp.items():
        assert v.grad is not None
        grads[k] = v.grad.numpy()
    return ty.detach().numpy(), tx.grad.numpy(), grads


def assert_matches_torch(op: Op, shape: Shape, fn: Any, rtol: float = 1e-10) -> None:
    x, params, dy = random_case(op, shape)
    y, dx, grads = run_numpy(op, x, params, dy)
    ty, tdx, tgrads = torch_grads(fn, x, params, dy)
    assert y.shape == ty.shape == (BATCH, *op.infer_shape([shape]))
    np.testing.assert_allclose(y, ty, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(dx, tdx, rtol=rtol, atol=1e-12)
    assert grads.keys() == tgrads.keys()
    for k in grads:
        np.testing.assert_allclose(grads[k], tgrads[k], rtol=rtol, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Convolution

# (op, per-sample input shape, explicit torch F.pad pads (last dim first) or None to pass
# the op's own symmetric padding to torch)
CONV2D_CASES: list[tuple[Conv2d, Shape, tuple[int, ...] | None]] = [
    (Conv2d(filters=4, kernel=3), (3, 7, 6), None),
    (Conv2d(filters=3, kernel=(3, 2), stride=(2, 3), padding=(1, 2)), (2, 8, 9), None),
    (Conv2d(filters=2, kernel=3, dilation=2, padding=2, bias=False), (3, 9, 8), None),
    (Conv2d(filters=6, kernel=3, groups=3, stride=2, padding=1), (3, 8, 7), None),
    (Conv2d(filters=4, kernel=3, groups=4, padding=1), (4, 6, 6), None),  # depthwise
    (Conv2d(filters=4, kernel=2, groups=2, dilation=(1, 2)), (4, 5, 6), None),
    # SAME_UPPER with stride 2: out = ceil(H / S); H 7 pads 1+1, W 6 pads 0+1.
    (Conv2d(filters=3, kernel=3, stride=2, padding="same"), (2, 7, 6), (0, 1, 1, 1)),
    # ONNX-style begin..., end... pads.
    (Conv2d(filters=2, kernel=3, padding=(1, 0, 2, 1)), (2, 6, 6), (0, 1, 1, 2)),
    # Padding wider than the kernel (1 row for a 1-row kernel): dx by col2im, not correlation.
    (Conv2d(filters=2, kernel=(1, 3), padding=(1, 2)), (3, 5, 6), None),
]


@pytest.mark.parametrize(("op", "shape", "torch_pad"), CONV2D_CASES)
def test_conv2d_matches_torch_forward_and_all_gradients(
    op: Conv2d, shape: Shape, torch_pad: tuple[int, ...] | None
) -> None:
    def fn(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        padding: Any = op.padding
        if torch_pad is not None:
            x, padding = F.pad(x, torch_pad), 0
        return F.conv2d(x, p["weight"], p.get("bias"), op.stride, padding, op.dilation, op.groups)

    assert_matches_torch(op, shape, fn)


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel:UserWarning")
def test_conv2d_same_padding_with_stride_one_matches_torch_same() -> None:
    op = Conv2d(filters=3, kernel=(4, 3), padding="same")
    assert op.infer_shape([(2, 6, 5)]) == (3, 6, 5)

    def fn(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.conv2d(x, p["weight"], p["bias"], padding="same")

    assert_matches_torch(op, (2, 6, 5), fn)


@pytest.mark.parametrize(
    "op",
    [
        Conv1d(filters=3, kernel=3),
        Conv1d(filters=4, kernel=5, stride=2, padding=2, groups=2),
        Conv1d(filters=2, kernel=2, dilation=3, padding=1, bias=False),
    ],
)
def test_conv1d_matches_torch_forward_and_all_gradients(op: Conv1d) -> None:
    def fn(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.conv1d(
            x, p["weight"], p.get("bias"), op.stride, op.padding, op.dilation, op.groups
        )

    assert_matches_torch(op, (4, 11), fn)


def test_conv2d_float32_stays_float32_and_agrees_with_torch() -> None:
    op = Conv2d(filters=5, kernel=3, stride=2, padding=1, groups=1)
    shape = (3, 9, 8)
    x, params, dy = random_case(op, shape, dtype=np.float32, seed=3)
    y, dx, grads = run_numpy(op, x, params, dy)
    assert y.dtype == dx.dtype == grads["weight"].dtype == grads["bias"].dtype == np.float32
    x64, p64, dy64 = x.astype(np.float64), {k: v.astype(np.float64) for k, v in params.items()}, dy

    def fn(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.conv2d(x, p["weight"], p["bias"], 2, 1)

    ty, tdx, tgrads = torch_grads(fn, x64, p64, dy64.astype(np.float64))
    for ours, ref in ((y, ty), (dx, tdx), *((grads[k], tgrads[k]) for k in grads)):
        scale = np.abs(ref).max()
        assert np.abs(ours - ref).max() <= 1e-5 * scale


def test_conv2d_window_rule_gives_10x11_for_28x31_padding_2_stride_3_kernel_5() -> None:
    op = Conv2d(filters=8, kernel=5, stride=3, padding=2)
    assert op.infer_shape([(1, 28, 31)]) == (8, 10, 11)


def test_conv2d_param_shapes_follow_pytorch_layout() -> None:
    op = Conv2d(filters=6, kernel=(3, 2), groups=2)
    assert op.param_shapes([(4, 8, 8)]) == {"weight": (6, 2, 3, 2), "bias": (6,)}
    assert "bias" not in Conv2d(filters=6, kernel=3, bias=False).param_shapes([(4, 8, 8)])


def test_conv2d_macs_match_torchvision_counting_for_resnet_stem() -> None:
    # torchvision reports 118,013,952 MACs for ResNet-50's conv1 at 224x224 (no bias adds).
    op = Conv2d(filters=64, kernel=7, stride=2, padding=3, bias=False)
    out = op.infer_shape([(3, 224, 224)])
    assert op.macs([(3, 224, 224)], out) == 118_013_952


# ---------------------------------------------------------------------------------------------
# Warnings and shape errors


def test_dropped_rows_warning_fires_for_paper_alexnet_conv1() -> None:
    op = Conv2d(filters=96, kernel=11, stride=4)
    found = op.warnings([(3, 224, 224)])
    assert len(found) == 1  # one warning naming both dimensions
    assert "never covers the last 1 input row(s)" in found[0]
    assert "224 rows, kernel 11, stride 4, padding 0+0" in found[0]
    assert "nor the last 1 input column(s) (224 columns" in found[0]
    assert found[0].endswith("they are silently dropped")


@pytest.mark.parametrize(
    ("op", "shape"),
    [
        (Conv2d(filters=64, kernel=7, stride=2, padding=3), (3, 224, 224)),  # ResNet stem
        (Conv2d(filters=64, kernel=11, stride=4, padding=2), (3, 224, 224)),  # torchvision
        (MaxPool2d(kernel=3, stride=2, padding=1), (64, 112, 112)),
    ],
)
def test_dropped_rows_warning_is_silent_when_only_padding_is_dropped(op: Op, shape: Shape) -> None:
    assert op.warnings([shape]) == []


def test_pools_warn_about_dropped_rows_too() -> None:
    assert "last 1 input row(s)" in MaxPool2d(kernel=2).warnings([(3, 7, 8)])[0]
    assert AvgPool2d(kernel=2, ceil_mode=True).warnings([(3, 7, 8)]) == []


def test_conv2d_rejects_groups_that_do_not_divide_the_channels() -> None:
    with pytest.raises(ShapeError, match=r"groups=2 must divide the input channels, got 3"):
        Conv2d(filters=4, kernel=3, groups=2).infer_shape([(3, 8, 8)])
    with pytest.raises(ShapeError, match=r"groups=2 must divide the filters, got 5"):
        Conv2d(filters=5, kernel=3, groups=2).infer_shape([(4, 8, 8)])


def test_conv2d_kernel_larger_than_padded_input_names_the_rule_and_sizes() -> None:
    with pytest.raises(ShapeError) as err:
        Conv2d(filters=4, kernel=5, padding=0).infer_shape([(1, 4, 9)])
    message = str(err.value)
    assert "kernel 5 is larger than its padded input 4" in message
    assert "out = floor((H + 2P - D*(K-1) - 1) / S) + 1" in message


def test_conv2d_in_channels_mismatch_says_what_to_change() -> None:
    with pytest.raises(ShapeError, match=r"declares in_channels=3 but receives 1 channel"):
        Conv2d(filters=4, kernel=3, in_channels=3).infer_shape([(1, 8, 8)])
    assert Conv2d(filters=4, kernel=3, in_channels=1).infer_shape([(1, 8, 8)]) == (4, 6, 6)


def test_conv2d_rejects_a_wrong_rank_input() -> None:
    with pytest.raises(ShapeError, match=r"3-D input per sample"):
        Conv2d(filters=4, kernel=3).infer_shape([(8, 8)])


@pytest.mark.parametrize(
    "attrs",
    [
        {"filters": 4, "kernel": (3, 3, 3)},
        {"filters": 4, "kernel": 0},
        {"filters": 4, "kernel": 3, "padding": (1, 1, 1)},
        {"filters": 4, "kernel": 3, "padding": -1},
        {"filters": 4, "kernel": 3, "stride": (1, 0)},
    ],
)
def test_conv2d_attribute_bounds_are_validated(attrs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Conv2d(**attrs)


# ---------------------------------------------------------------------------------------------
# Pools

MAXPOOL2D_CASES = [
    (MaxPool2d(kernel=2), (3, 6, 7)),
    (MaxPool2d(kernel=3, stride=2, padding=1), (2, 9, 8)),
    (MaxPool2d(kernel=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)), (2, 7, 8)),
    (MaxPool2d(kernel=3, stride=2, ceil_mode=True), (2, 8, 9)),
    # ceil_mode whose last window would start in the right padding: dropped, as in torch.
    (MaxPool2d(kernel=2, stride=2, padding=1, ceil_mode=True), (2, 7, 5)),
    # Windows that tile the input take the axis-by-axis path: odd sizes, k > 2, padding.
    (MaxPool2d(kernel=3), (2, 8, 7)),
    (MaxPool2d(kernel=(3, 2), padding=1, ceil_mode=True), (2, 7, 6)),
]


@pytest.mark.parametrize(("op", "shape"), MAXPOOL2D_CASES)
def test_maxpool2d_matches_torch_forward_and_input_gradient(op: MaxPool2d, shape: Shape) -> None:
    def fn(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.max_pool2d(x, op.kernel, op.stride, op.padding, op.dilation, op.ceil_mode)

    assert_matches_torch(op, shape, fn)


@pytest.mark.parametrize(
    "op", [MaxPool2d(kernel=3, stride=2, padding=1), MaxPool2d(kernel=2), MaxPool2d(kernel=3)]
)
@pytest.mark.parametrize("values", ["ones", "few levels"])
def test_maxpool2d_sends_a_tied_gradient_to_one_input_like_torch(
    op: MaxPool2d, values: str
) -> None:
    """Ties (all-zero windows after a ReLU) go to the first maximum in row-major order."""
    rng = np.random.default_rng(0)
    shape = (2, 3, 7, 6)
    x = np.ones(shape) if values == "ones" else rng.integers(0, 3, shape).astype(np.float64)
    dy = rng.standard_normal((shape[0], *op.infer_shape([shape[1:]])))
    _, dx, _ = run_numpy(op, x, {}, dy)

    def fn(t: torch.Tensor, _: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.max_pool2d(t, op.kernel, op.stride, op.padding, op.dilation, op.ceil_mode)

    _, tdx, _ = torch_grads(fn, x, {}, dy)
    np.testing.assert_allclose(dx, tdx, rtol=1e-12)
    np.testing.assert_allclose(dx.sum(), dy.sum(), rtol=1e-12)  # no gradient counted twice


AVGPOOL2D_CASES = [
    (AvgPool2d(kernel=2), (3, 6, 7)),
    (AvgPool2d(kernel=3, stride=2, padding=1), (2, 9, 8)),
    (AvgPool2d(kernel=3, stride=2, padding=1, count_include_pad=True), (2, 9, 8)),
    (AvgPool2d(kernel=(3, 2), stride=(2, 1), padding=(1, 0)), (2, 7, 8)),
    # ceil_mode windows hanging off the end, with padding, both divisor rules.
    (AvgPool2d(kernel=3, stride=2, padding=1, ceil_mode=True), (2, 8, 10)),
    (AvgPool2d(kernel=3, stride=2, padding=1, ceil_mode=True, count_include_pad=True), (2, 8, 10)),
    (AvgPool2d(kernel=2, ceil_mode=True, count_include_pad=True), (2, 5, 7)),
    (AvgPool2d(kernel=3, stride=2, padding=1, ceil_mode=True, count_include_pad=True), (2, 7, 5)),
]


@pytest.mark.parametrize(("op", "shape"), AVGPOOL2D_CASES)
def test_avgpool2d_matches_torch_divisors_and_gradient(op: AvgPool2d, shape: Shape) -> None:
    def fn(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        stride = op.stride if op.stride is not None else op.kernel
        return F.avg_pool2d(x, op.kernel, stride, op.padding, op.ceil_mode, op.count_include_pad)

    assert_matches_torch(op, shape, fn)


@pytest.mark.parametrize(
    "op",
    [
        MaxPool1d(kernel=3, stride=2, padding=1, ceil_mode=True),
        MaxPool1d(kernel=2, dilation=2),
        # Windows that tile the input: the axis-by-axis path, in one dimension.
        MaxPool1d(kernel=2),
        MaxPool1d(kernel=3, padding=1, ceil_mode=True),
    ],
)
def test_maxpool1d_matches_torch(op: MaxPool1d) -> None:
    def fn(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.max_pool1d(x, op.kernel, op.stride, op.padding, op.dilation, op.ceil_mode)

    assert_matches_torch(op, (3, 10), fn)


@pytest.mark.parametrize(
    "op",
    [
        AvgPool1d(kernel=3, stride=2, padding=1, ceil_mode=True),
        AvgPool1d(kernel=3, stride=2, padding=1, ceil_mode=True, count_include_pad=True),
    ],
)
def test_avgpool1d_matches_torch(op: AvgPool1d) -> None:
    def fn(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.avg_pool1d(x, op.kernel, op.stride, op.padding, op.ceil_mode, op.count_include_pad)

    assert_matches_torch(op, (3, 10), fn)


@pytest.mark.parametrize(
    "op",
    [
        MaxPool1d(kernel=300),  # windows that tile the input: one winner index per axis
        MaxPool1d(kernel=300, stride=1),  # overlapping windows: one index over every tap
        MaxPool2d(kernel=(17, 17), stride=1),  # 289 taps over two axes
    ],
)
def test_maxpool_over_more_than_256_taps_routes_the_gradient_to_the_true_winner(
    op: MaxPool1d | MaxPool2d,
) -> None:
    """The winner's index outgrows a uint8 (it overflowed, or wrapped to the wrong tap)."""
    shape = (2, 301) if op.ndim == 1 else (2, 18, 18)

    def fn(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        pool = F.max_pool1d if op.ndim == 1 else F.max_pool2d
        return pool(x, op.kernel, op.stride, op.padding, op.dilation, op.ceil_mode)

    assert_matches_torch(op, shape, fn)


@pytest.mark.parametrize(
    ("op", "length"),
    [
        (MaxPool1d(kernel=4, stride=2, ceil_mode=True), 3),
        (MaxPool1d(kernel=5, stride=3, padding=1, ceil_mode=True), 2),
        (AvgPool1d(kernel=5, stride=3, padding=1, ceil_mode=True), 2),
        (AvgPool1d(kernel=5, stride=3, padding=1, ceil_mode=True, count_include_pad=True), 2),
    ],
)
def test_a_ceil_mode_window_longer_than_its_padded_input_gives_one_window_as_torch(
    op: MaxPool1d | AvgPool1d, length: int
) -> None:
    """ceil((H + 2P - K) / S) + 1 is 1 while the overhang is under a stride; check refused it."""
    assert op.infer_shape([(3, length)]) == (3, 1)

    def fn(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(op, MaxPool1d):
            return F.max_pool1d(x, op.kernel, op.stride, op.padding, op.dilation, True)
        return F.avg_pool1d(x, op.kernel, op.stride, op.padding, True, op.count_include_pad)

    assert_matches_torch(op, (3, length), fn)


def test_a_ceil_mode_window_a_whole_stride_too_long_is_refused_with_the_ceil_rule() -> None:
    with pytest.raises(ShapeError) as err:  # torch: "Invalid computed output size: 0"
        MaxPool1d(kernel=5, stride=2, ceil_mode=True).infer_shape([(1, 3)])
    assert "kernel 5 is larger than its padded input 3" in str(err.value)
    assert "out = ceil((H + 2P - D*(K-1) - 1) / S) + 1" in str(err.value)


def test_global_avgpool_matches_torch_and_keeps_unit_spatial_axes() -> None:
    op = GlobalAvgPool()
    assert op.infer_shape([(3, 5, 4)]) == (3, 1, 1)
    assert_matches_torch(op, (3, 5, 4), lambda x, _: F.adaptive_avg_pool2d(x, 1))


def test_global_maxpool_matches_torch_and_keeps_unit_spatial_axes() -> None:
    op = GlobalMaxPool()
    assert op.infer_shape([(3, 5, 4)]) == (3, 1, 1)
    assert_matches_torch(op, (3, 5, 4), lambda x, _: F.adaptive_max_pool2d(x, 1))


def test_pool_stride_defaults_to_the_kernel() -> None:
    assert MaxPool2d(kernel=2).infer_shape([(3, 8, 6)]) == (3, 4, 3)
    assert AvgPool2d(kernel=(2, 3)).infer_shape([(3, 8, 6)]) == (3, 4, 2)


@pytest.mark.parametrize(
    ("op", "shape", "says"),
    [
        (
            MaxPool2d(kernel=2, padding=2),
            (1, 6, 6),
            "padding 2+2 must be smaller than the kernel 2",
        ),
        # The end pad alone: its last window was all padding (-inf; avg divided by -1).
        (MaxPool1d(kernel=2, padding=(0, 3)), (1, 5), "(the end padding is not)"),
        (AvgPool1d(kernel=2, padding=(0, 3)), (1, 5), "(the end padding is not)"),
        # onnxruntime's rule is on the kernel, not on the dilated span.
        (MaxPool1d(kernel=2, stride=1, padding=2, dilation=3), (1, 8), "(the begin padding"),
    ],
)
def test_pool_padding_must_be_smaller_than_the_kernel_on_each_side(
    op: Op, shape: Shape, says: str
) -> None:
    with pytest.raises(ShapeError) as err:
        op.infer_shape([shape])
    assert says in str(err.value) and "onnxruntime need pads < kernel" in (err.value.hint or "")


def test_pool_padding_below_the_kernel_passes() -> None:
    assert MaxPool2d(kernel=2, padding=1).infer_shape([(1, 6, 6)]) == (1, 4, 4)
    assert MaxPool1d(kernel=3, padding=(0, 2)).infer_shape([(1, 5)]) == (1, 2)


@pytest.mark.parametrize(
    ("kernel", "dilation", "pads"),
    [
        ((3, 3), (1, 1), ((1, 1), (1, 1))),
        ((2, 3), (2, 1), ((0, 1), (2, 0))),  # asymmetric: the pitch is S + max(lo, hi)
        ((1, 1), (1, 1), ((1, 1), (2, 1))),  # padding beyond the kernel: the pitch is O
        ((5,), (1,), ((2, 2),)),
        ((3,), (2,), ((0, 3),)),
    ],
)
def test_the_wide_stride_one_grid_equals_the_exact_grid(
    kernel: tuple[int, ...], dilation: tuple[int, ...], pads: tuple[tuple[int, int], ...]
) -> None:
    """Stride 1 lays the samples side by side (contiguous taps); that must change nothing."""
    rng = np.random.default_rng(0)
    n, sizes = 3, (7, 6)[: len(kernel)]
    x = rng.standard_normal((n, 3, *sizes))
    padded = tuple(h + lo + hi for h, (lo, hi) in zip(sizes, pads, strict=True))
    out = tuple(p - d * (k - 1) for p, k, d in zip(padded, kernel, dilation, strict=True))
    stride = (1,) * len(kernel)
    wide = Grid.of(kernel, stride, dilation, sizes, pads, out, n)
    taps = tuple(tap_regions(kernel, stride, dilation, out))
    exact = Grid(sizes, pads, out, n, padded, 0, taps, (), False)
    assert wide.wide and wide.columns >= exact.columns
    w = rng.standard_normal((4, 3 * math.prod(kernel)))
    dy = rng.standard_normal((n, 4, *out))
    results = []
    for grid in (wide, exact):
        buf = grid.load(x)
        np.testing.assert_array_equal(grid.unload(buf), x)
        y = grid.valid(w @ grid.im2col(buf).reshape(w.shape[1], -1))  # (F, n, *O)
        dcols = w.T @ grid.scatter_output(dy)
        dx = grid.unload(grid.col2im(dcols.reshape(3, -1, grid.columns)))
        results.append((np.array(y), np.array(dx)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12)


@pytest.mark.parametrize(
    "op",
    [
        Conv2d(filters=3, kernel=3, padding=(2, 1, 0, 1)),
        Conv2d(filters=4, kernel=3, stride=2, padding=1, groups=2),
        Conv2d(filters=2, kernel=3, padding=1),  # dx by correlation, chunked too
    ],
)
def test_a_batch_split_into_chunks_of_unequal_size_matches_torch(
    op: Conv2d, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(im2col, "CHUNK_BYTES", 1)  # one sample per chunk...
    _, chunks = op._chunks((4, 6, 5), 5, 8)
    assert [hi - lo for lo, hi, _ in chunks] == [1] * 5
    monkeypatch.setattr(im2col, "CHUNK_BYTES", 2 * chunks[0][2].columns * 4 * 9 * 8)
    _, chunks = op._chunks((4, 6, 5), 5, 8)  # ...then two, two and a last one of one
    assert [hi - lo for lo, hi, _ in chunks] == [2, 2, 1]

    def fn(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        (pt, pb), (pl, pr) = op._geometry((4, 6, 5))[0]
        x = F.pad(x, (pl, pr, pt, pb))
        return F.conv2d(x, p["weight"], p.get("bias"), op.stride, 0, op.dilation, op.groups)

    x, params, dy = random_case(op, (4, 6, 5))
    x = np.concatenate([x, x[:1] * 2, -x])  # five samples
    dy = np.concatenate([dy, dy[:1] / 3, dy[::-1]])
    y, dx, grads = run_numpy(op, x, params, dy)
    ty, tdx, tgrads = torch_grads(fn, x, params, dy)
    np.testing.assert_allclose(y, ty, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tdx, rtol=1e-10, atol=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], tgrads[k], rtol=1e-10, atol=1e-12)


# (op, per-sample input shape): stride-1 geometries; the first two have more filters than
# channels, so backward itself takes col2im there, and the correlation is checked directly.
CORRELATION_CASES: list[tuple[Conv1d | Conv2d, Shape]] = [
    (Conv2d(filters=4, kernel=3), (3, 7, 6)),
    (Conv2d(filters=6, kernel=(3, 2), groups=2, dilation=(2, 1), padding=(2, 0, 1, 1)), (4, 8, 7)),
    (Conv2d(filters=3, kernel=5, padding=2), (3, 9, 8)),
    (Conv2d(filters=4, kernel=3, groups=4, padding="same"), (4, 6, 5)),
    (Conv1d(filters=2, kernel=4, dilation=2, padding=(3, 1)), (3, 12)),
]


@pytest.mark.parametrize(("op", "shape"), CORRELATION_CASES)
def test_the_input_gradient_as_a_correlation_with_the_flipped_kernel_matches_torch(
    op: Conv1d | Conv2d, shape: Shape
) -> None:
    x, params, dy = random_case(op, shape)
    pads, _ = op._geometry(shape)
    back = [
        ((k - 1) * d - lo, (k - 1) * d - hi)
        for k, d, (lo, hi) in zip(op._kernel()[0], op._kernel()[2], pads, strict=True)
    ]
    dx = op.input_grad_by_correlation(dy, params["weight"], shape, back)
    conv = F.conv1d if op.ndim == 1 else F.conv2d
    tx = torch.tensor(x, requires_grad=True)
    padded = F.pad(tx, [v for lo_hi in reversed(pads) for v in lo_hi])
    ty = conv(padded, torch.tensor(params["weight"]), None, 1, 0, op.dilation, op.groups)
    (ty * torch.tensor(dy)).sum().backward()
    assert tx.grad is not None
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    # backward picks the correlation exactly when it pays: no more filters than channels.
    assert (op._correlation_pads(shape[0], pads) is not None) == (op.filters <= shape[0])


@pytest.mark.parametrize(
    ("op", "shape"),
    [
        (Conv2d(filters=2, kernel=3, stride=2, padding=1), (3, 7, 7)),  # strided
        (Conv2d(filters=2, kernel=(1, 3), padding=(1, 2)), (3, 5, 6)),  # padding > (K-1)*D
        (Conv2d(filters=4, kernel=3, padding=1), (3, 7, 7)),  # more filters than channels
    ],
)
def test_the_correlation_is_not_taken_where_it_does_not_apply_or_pay(
    op: Conv2d, shape: Shape
) -> None:
    pads, _ = op._geometry(shape)
    assert op._correlation_pads(shape[0], pads) is None


@pytest.mark.parametrize(
    ("op", "shape"),
    [
        (Conv2d(filters=2, kernel=3), (1, 5, 5)),  # dx by col2im (more filters than channels)
        (Conv2d(filters=1, kernel=3, padding=1), (2, 5, 5)),  # dx by correlation
        (Conv2d(filters=2, kernel=3, stride=2), (1, 5, 5)),  # the exact grid
        (Conv1d(filters=2, kernel=3), (2, 7)),
    ],
)
def test_an_empty_batch_passes_through_forward_and_backward(op: Op, shape: Shape) -> None:
    params = {k: np.ones(s) for k, s in op.param_shapes([shape]).items()}
    y, cache = op.forward([np.zeros((0, *shape))], params, Ctx())
    assert y.shape == (0, *op.infer_shape([shape]))
    (dx,), grads = op.backward(np.zeros(y.shape), cache, params)
    assert dx is not None and dx.shape == (0, *shape)
    assert all(not g.any() and g.shape == params[k].shape for k, g in grads.items())
