"""Convolutions, written once for n spatial dimensions: conv1d over (C, L), conv2d over (C, H, W).

The NumPy path is im2col (`Grid`): copy the input once into a padded channels-major buffer,
then, per chunk of the batch, copy one slice per kernel tap into a (C*K, N*M) matrix and do one
2-D GEMM per group. The backward pass rebuilds that matrix and scatters window gradients back
with one add per kernel tap (col2im). With stride 1 each tap is a contiguous slice of the
flattened input ("wide" grid). Window geometry and the strided views are in window.py.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from netspec.errors import ShapeError
from netspec.ops.base import (
    Array,
    Ctx,
    Example,
    Grads,
    OnnxIO,
    OnnxNode,
    Op,
    Params,
    Shape,
    channel_sums,
    expect_rank,
    numel,
)
from netspec.ops.init import Init, InitName
from netspec.ops.window import (
    PaddingAttr,
    Pads,
    Sizes,
    as_tuple,
    check_padding,
    check_sizes,
    dropped_warnings,
    geometry,
    tap_regions,
)

# The window matrix (and its gradient) is built and consumed per chunk of the batch of about
# this many bytes: it stays in L3 between its copy and its GEMM, and peak memory stays near the
# activations' instead of K times the input (measured: 4 MiB was as fast as or faster than the
# whole batch at once, and cut the CIFAR CNN's peak training memory from 5.8x to 1.7x budget;
# with the wider stride-1 grid, 2 MiB is as fast again and keeps LeNet b256 at 1.64x, not 2.05x).
CHUNK_BYTES = 1 << 21


def batch_chunks(n: int, bytes_per_sample: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges over the batch, each with a window matrix of about CHUNK_BYTES."""
    step = max(1, CHUNK_BYTES // max(bytes_per_sample, 1))
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


@dataclass(frozen=True)
class Grid:
    """The im2col layout of a convolution: which output positions the window matrix covers.

    The input is copied once into a zero-padded, channels-major buffer (C, N, prod(P) + slack),
    the layout in which the window matrix is (C*K, N*M): the whole batch chunk is one GEMM.

    With stride 1 the grid is *wide*: a column for every output row times every padded column
    (M = O_0 * P_1 * ... ), not just the O_1 valid ones. Each kernel tap is then one contiguous
    shifted slice of the flattened buffer, so im2col copies and col2im adds run over whole rows
    instead of W-float runs (LeNet's 10, ResNet's 8-32). The extra columns read past a row's
    end; their outputs are dropped, and in backward their output gradient is zero, so they add
    nothing to dW or dx. The price is GEMMs wider by P_1 / O_1 (1.06x on ResNet-20, 1.4x on
    LeNet's second conv). Other strides use the exact grid: one strided slice per tap.
    """

    padded: tuple[int, ...]  # P: the padded input's spatial sizes
    out: tuple[int, ...]  # O: the output's spatial sizes
    taps: tuple[tuple[slice, ...], ...]  # exact grid: each tap's strided slice of the input
    offsets: tuple[int, ...]  # wide grid: each tap's offset in the flattened input
    wide: bool

    @classmethod
    @functools.cache
    def of(
        cls,
        kernel: tuple[int, ...],
        stride: tuple[int, ...],
        dilation: tuple[int, ...],
        padded: tuple[int, ...],
        out: tuple[int, ...],
    ) -> Grid:
        """The grid of one geometry; cached, as every step of a run asks for the same few."""
        wide = all(v == 1 for v in stride)
        steps = [math.prod(padded[i + 1 :]) for i in range(len(padded))]  # C-order strides
        offsets = tuple(
            sum(t * d * st for t, d, st in zip(offset, dilation, steps, strict=True))
            for offset in itertools.product(*(range(k) for k in kernel))
        )
        return cls(
            tuple(padded),
            tuple(out),
            tuple(tap_regions(kernel, stride, dilation, tuple(out))),
            offsets if wide else (),
            wide,
        )

    @property
    def columns(self) -> int:
        """Window-matrix columns per sample (M)."""
        if self.wide:
            return self.out[0] * math.prod(self.padded[1:])
        return math.prod(self.out)

    @property
    def slack(self) -> int:
        """Floats past the padded input that the last wide tap reads (all zero)."""
        if not self.wide:
            return 0
        return max(0, max(self.offsets) + self.columns - math.prod(self.padded))

    def load(self, x: Array, pads: Pads) -> Array:
        """(N, C, *S) -> the zero-padded channels-major buffer (C, N, prod(P) + slack)."""
        n, c, *sizes = x.shape
        buf = np.zeros((c, n, math.prod(self.padded) + self.slack), dtype=x.dtype)
        inner = tuple(slice(lo, lo + h) for (lo, _), h in zip(pads, sizes, strict=True))
        self.spatial(buf)[(slice(None), slice(None), *inner)] = np.moveaxis(x, 1, 0)
        return buf

    def spatial(self, buf: Array) -> Array:
        """The (C, N, *P) view of a buffer (its slack cut off)."""
        return buf[:, :, : math.prod(self.padded)].reshape(*buf.shape[:2], *self.padded)

    def im2col(self, buf: Array) -> Array:
        """(C, n, prod(P) + slack) -> (C, K, n, M): one copy per kernel tap."""
        c, n = buf.shape[:2]
        m = self.columns
        cols = np.empty((c, len(self.taps), n, m), dtype=buf.dtype)
        if self.wide:
            for k, off in enumerate(self.offsets):
                cols[:, k] = buf[:, :, off : off + m]
        else:
            xc = self.spatial(buf)
            for k, region in enumerate(self.taps):
                cols[:, k] = xc[(slice(None), slice(None), *region)].reshape(c, n, m)
        return cols

    def col2im(self, dcols: Array) -> Array:
        """The adjoint of im2col: (C, K, n, M) window gradients summed onto (C, n, *P).

        One add per tap: within a tap the input positions are distinct, so `+=` on the slice
        never loses a contribution.
        """
        c, _, n, m = dcols.shape
        dbuf = np.zeros((c, n, math.prod(self.padded) + self.slack), dtype=dcols.dtype)
        if self.wide:
            for k, off in enumerate(self.offsets):
                dbuf[:, :, off : off + m] += dcols[:, k]
        else:
            dxc = self.spatial(dbuf)
            for k, region in enumerate(self.taps):
                dxc[(slice(None), slice(None), *region)] += dcols[:, k].reshape(c, n, *self.out)
        return self.spatial(dbuf)

    def valid(self, grid: Array) -> Array:
        """(..., M) on the grid -> a (..., *O) view of the real output positions."""
        if not self.wide:
            return grid.reshape(*grid.shape[:-1], *self.out)
        full = grid.reshape(*grid.shape[:-1], self.out[0], *self.padded[1:])
        lead = (slice(None),) * (grid.ndim - 1)
        return full[(*lead, slice(None), *(slice(0, o) for o in self.out[1:]))]

    def scatter_output(self, dy: Array) -> Array:
        """(n, F, *O) output gradient -> (F, n, M) on the grid, zero on the extra columns."""
        n, f = dy.shape[:2]
        grid = (np.zeros if self.wide else np.empty)((f, n, self.columns), dtype=dy.dtype)
        self.valid(grid)[...] = np.moveaxis(dy, 1, 0)
        return grid


def correlate(buf: Array, wg: Array, grid: Grid, out: Array) -> None:
    """out (n, G*F/G, *O) = the loaded buffer's windows times weights wg (G, F/G, C/G*K).

    Per chunk of the batch: im2col, then one (F/G, C/G*K) @ (C/G*K, n*M) GEMM per group, whose
    valid columns are copied into the batch-first output.
    """
    g, fg, rows = wg.shape
    n, m = buf.shape[1], grid.columns
    for lo, hi in batch_chunks(n, g * rows * m * buf.itemsize):
        cols = grid.im2col(buf[:, lo:hi]).reshape(g, rows, (hi - lo) * m)
        for i in range(g):
            yi = (wg[i] @ cols[i]).reshape(fg, hi - lo, m)
            out[lo:hi, i * fg : (i + 1) * fg] = np.moveaxis(grid.valid(yi), 0, 1)


# ---------------------------------------------------------------------------------------------
# Convolution


class ConvNd(Op):
    """Cross-correlation with PyTorch/ONNX attributes; subclasses fix the number of spatial dims."""

    filters: int = Field(ge=1)
    kernel: Sizes
    stride: Sizes = 1
    padding: PaddingAttr = 0
    dilation: Sizes = 1
    groups: int = Field(default=1, ge=1)
    bias: bool = True
    in_channels: int | None = Field(default=None, ge=1)  # inferred; checked when given
    init: InitName | None = None

    ndim: ClassVar[int] = 2
    positional: ClassVar[tuple[str, ...]] = ("filters", "kernel")
    has_torch_twin: ClassVar[bool] = True

    @field_validator("kernel", "stride", "dilation")
    @classmethod
    def _one_per_dim(cls, value: Any, info: ValidationInfo) -> Any:
        return check_sizes(value, info, cls.ndim)

    @field_validator("padding")
    @classmethod
    def _padding_len(cls, value: Any) -> Any:
        return check_padding(value, cls.ndim)

    def _kernel(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        n = self.ndim
        return (
            as_tuple(self.kernel, n, "kernel"),
            as_tuple(self.stride, n, "stride"),
            as_tuple(self.dilation, n, "dilation"),
        )

    def _geometry(self, x: Shape) -> tuple[Pads, tuple[int, ...]]:
        k, s, d = self._kernel()
        return geometry(x[1:], k, s, d, self.padding)

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        dims = "channels, length" if self.ndim == 1 else "channels, height, width"
        expect_rank(self.kind(), x, (self.ndim + 1,), dims)
        c = x[0]
        if self.in_channels is not None and self.in_channels != c:
            raise ShapeError(
                f"{self.kind()} declares in_channels={self.in_channels} but receives {c} "
                f"channel(s); change in_channels to {c} or drop it",
                hint="netspec infers in_channels from the previous layer",
            )
        for what, n in (("input channels", c), ("filters", self.filters)):
            if n % self.groups:
                raise ShapeError(
                    f"groups={self.groups} must divide the {what}, got {n} (input shape "
                    f"{list(x)}, filters={self.filters})",
                    hint="choose groups that divides both the input channels and filters",
                )
        _, out = self._geometry(x)
        return (self.filters, *out)

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        k, _, _ = self._kernel()
        shapes: dict[str, Shape] = {"weight": (self.filters, inputs[0][0] // self.groups, *k)}
        if self.bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        # torchvision's count: one MAC per weight tap per output element, bias adds not counted.
        k, _, _ = self._kernel()
        return numel(output) * (inputs[0][0] // self.groups) * math.prod(k)

    def warnings(self, inputs: Sequence[Shape]) -> list[str]:
        k, s, d = self._kernel()
        pads, out = self._geometry(inputs[0])
        return dropped_warnings(inputs[0][1:], k, s, d, pads, out)

    def init_hint(self) -> Init | None:
        return self.init

    def _grid(self, x: Shape) -> tuple[Pads, Grid]:
        k, s, d = self._kernel()
        pads, out = self._geometry(x)
        padded = tuple(h + lo + hi for h, (lo, hi) in zip(x[1:], pads, strict=True))
        return pads, Grid.of(k, s, d, padded, out)

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]  # (N, C, *S)
        pads, grid = self._grid(x.shape[1:])
        n, g, f = x.shape[0], self.groups, self.filters
        buf = grid.load(x, pads)  # (C, N, prod(P) + slack)
        y = np.empty((n, f, *grid.out), dtype=x.dtype)
        correlate(buf, p["weight"].reshape(g, f // g, -1), grid, y)
        if self.bias:
            # A separate pass: measured faster than adding it in the layout copy (np.add with a
            # strided output and a broadcast bias runs 1-2x slower than the plain copy and add).
            y += p["bias"].reshape(f, *(1,) * len(grid.out))
        # Keep the padded input rather than the window matrix: the matrix is K times larger,
        # and rebuilding it in backward costs one cache-resident copy.
        return y, (buf, x.shape, pads, grid, ctx.input_grad)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        buf, xshape, pads, grid, input_grad = cache
        w = p["weight"]
        k, _, _ = self._kernel()
        n, c = xshape[:2]
        g, f = self.groups, self.filters
        fg, m = f // g, grid.columns
        wg = w.reshape(g, fg, -1)  # (G, F/G, C/G*K)
        dwt = np.zeros((g, wg.shape[2], fg), dtype=dy.dtype)  # dW^T, summed over chunks
        back_pads = self._correlation_pads(c, pads) if input_grad else None
        # The first layer skips dx (nothing upstream wants it); else col2im builds it per chunk.
        dx = np.empty(xshape, dtype=dy.dtype) if input_grad and back_pads is None else None
        inner = tuple(slice(lo, lo + h) for (lo, _), h in zip(pads, xshape[2:], strict=True))
        for lo, hi in batch_chunks(n, c * math.prod(k) * m * dy.itemsize):
            cols_n = (hi - lo) * m
            dyc = grid.scatter_output(dy[lo:hi]).reshape(g, fg, cols_n)  # (G, F/G, n*M)
            cols = grid.im2col(buf[:, lo:hi]).reshape(g, -1, cols_n)  # (G, C/G*K, n*M)
            for i in range(g):
                # dW^T += cols dy^T: OpenBLAS runs the long n*M reduction far faster with the
                # tall operand first than as dy cols^T.
                dwt[i] += cols[i] @ dyc[i].T
            if dx is None:
                continue
            dcols = np.empty_like(cols)  # (G, C/G*K, n*M) = (C, K, n, M)
            for i in range(g):
                np.matmul(wg[i].T, dyc[i], out=dcols[i])
            dxc = grid.col2im(dcols.reshape(c, -1, hi - lo, m))  # (C, n, *P)
            dx[lo:hi] = np.moveaxis(dxc[(slice(None), slice(None), *inner)], 0, 1)
        if back_pads is not None:
            dx = self.input_grad_by_correlation(dy, w, xshape[1:], back_pads)
        grads = {"weight": np.ascontiguousarray(dwt.transpose(0, 2, 1)).reshape(w.shape)}
        if self.bias:
            grads["bias"] = channel_sums(dy.reshape(n, f, -1))
        return [dx], grads

    def _correlation_pads(self, channels: int, pads: Pads) -> Pads | None:
        """The output gradient's padding when dx is better computed as a correlation, else None.

        That takes stride 1, padding no wider than the dilated kernel (K-1)*D on each side,
        and no more filters than input channels per group: dx then costs what the forward
        costs. With more filters its window matrix is the larger (LeNet's 6 -> 16 conv: 5x
        slower), so col2im stays.
        """
        k, s, d = self._kernel()
        if any(v != 1 for v in s) or self.filters > channels:
            return None
        back = [
            ((kk - 1) * dd - lo, (kk - 1) * dd - hi)
            for kk, dd, (lo, hi) in zip(k, d, pads, strict=True)
        ]
        return None if any(v < 0 for side in back for v in side) else back

    def input_grad_by_correlation(self, dy: Array, w: Array, xshape: Shape, pads: Pads) -> Array:
        """dx of a stride-1 conv as a stride-1 correlation (cuDNN's backward-data as a forward).

        dx[c, i] = sum_f,t W[f, c, t] dy[f, i + P - t*D]: the output gradient zero-padded by
        (K-1)*D - P on each side, correlated with the kernel flipped and its filter and channel
        axes swapped per group. im2col's copies replace col2im's adds, which run ~3x slower per
        float, and the GEMM reduces over F*K instead of F (CIFAR's 32 -> 32 5x5 conv: 15.0 ->
        11.7 ms; ResNet-20's 3x3 convs 20-25% faster).
        """
        k, _, d = self._kernel()
        g, f, c = self.groups, self.filters, xshape[0]
        fg, cg = f // g, c // g
        spatial = tuple(range(3, 3 + len(k)))
        wt = np.flip(w.reshape(g, fg, cg, *k), axis=spatial).swapaxes(1, 2)  # (G, C/G, F/G, *K)
        padded = tuple(o + lo + hi for o, (lo, hi) in zip(dy.shape[2:], pads, strict=True))
        grid = Grid.of(k, (1,) * len(k), d, padded, tuple(xshape[1:]))
        dx = np.empty((dy.shape[0], *xshape), dtype=dy.dtype)
        correlate(grid.load(dy, pads), np.ascontiguousarray(wt).reshape(g, cg, -1), grid, dx)
        return dx

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        k, s, d = self._kernel()
        pads, _ = self._geometry(io.input_shapes[0])
        ins = [io.inputs[0], io.param("weight")]
        if self.bias:
            ins.append(io.param("bias"))
        attrs = {
            "kernel_shape": list(k),
            "strides": list(s),
            "pads": [lo for lo, _ in pads] + [hi for _, hi in pads],
            "dilations": list(d),
            "group": self.groups,
        }
        return [OnnxNode("Conv", tuple(ins), (io.output,), attrs)]


class Conv2d(ConvNd):
    op: Literal["conv2d"] = "conv2d"

    ndim: ClassVar[int] = 2
    summary: ClassVar[str] = (
        "2-D convolution over [C, H, W]; padding is an int, one per dim, ONNX (begin..., "
        "end...), `same` or `valid`; weight (filters, C/groups, kh, kw)"
    )

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(filters=4, kernel=3), ((3, 7, 6),)),
            Example(cls(filters=2, kernel=(3, 2), stride=2, padding=1), ((3, 7, 6),)),
            Example(cls(filters=3, kernel=3, stride=2, padding="same"), ((2, 7, 6),)),
            Example(cls(filters=2, kernel=2, padding="valid", bias=False), ((2, 5, 5),)),
            Example(cls(filters=2, kernel=3, dilation=2, padding=(1, 2, 0, 1)), ((2, 7, 6),)),
            Example(cls(filters=6, kernel=3, groups=2, stride=(2, 1), padding=1), ((4, 6, 5),)),
            Example(cls(filters=4, kernel=3, groups=4, padding=1, bias=False), ((4, 5, 5),)),
        ]


class Conv1d(ConvNd):
    op: Literal["conv1d"] = "conv1d"

    ndim: ClassVar[int] = 1
    summary: ClassVar[str] = "1-D convolution over [C, L]; attributes as conv2d"

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(filters=3, kernel=3), ((2, 9),)),
            Example(cls(filters=4, kernel=3, stride=2, padding="same", groups=2), ((2, 9),)),
            Example(cls(filters=2, kernel=2, dilation=3, padding=(1, 2), bias=False), ((3, 8),)),
        ]
