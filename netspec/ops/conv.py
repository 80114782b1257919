"""Convolutions, written once for n spatial dimensions: conv1d over (C, L), conv2d over (C, H, W).

The NumPy path is im2col (`Grid`): per chunk of the batch, copy the input into a zero-padded
channels-major buffer, copy one slice per kernel tap into a (C*K, M) matrix and do one 2-D GEMM
per group. The backward pass rebuilds that matrix for dW; dx either scatters window gradients
back with one add per tap (col2im) or, for stride 1, is itself a correlation of the padded
output gradient with the flipped kernel. With stride 1 the chunk's samples sit side by side in
the buffer and each tap is one contiguous slice of it ("wide" grid). Window geometry and the
strided views are in window.py.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.lib.stride_tricks import as_strided
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
# whole batch at once, and cut the CIFAR CNN's peak training memory from 5.8x to 1.7x budget).
# With the samples side by side, bigger chunks also share more padding: 4 MiB is 4-7% faster
# than 2 MiB on LeNet's and the CIFAR CNN's convs, and no slower on ResNet-20's.
CHUNK_BYTES = 1 << 22


@dataclass(frozen=True)
class Grid:
    """The im2col layout of one chunk of a batch: which positions the window matrix covers.

    Stride 1 ("wide"): the chunk's n samples are loaded side by side along the last spatial
    axis of one zero-padded, channels-major buffer (C, prod(B) + slack), B = (P_0, ..., R),
    neighbours sharing the zero padding between them (a sample's pitch along that axis is
    S + max(lo, hi), not S + lo + hi). The window matrix has a column for every buffer
    position of the first O_0 rows (M = O_0 * B_1 * ...), so each kernel tap is one contiguous
    shifted slice of the buffer: im2col is one copy and col2im one add per (channel, tap) for
    the whole chunk. Columns that fall between samples are computed and dropped; in backward
    their output gradient is zero, so they add nothing to dW or dx. The price is GEMMs wider by
    pitch / O_last (CIFAR's 8x8 maps with padding 2: 1.25x; per-sample rows would be 1.5x).

    Other strides ("exact"): a (C, n, prod(P)) buffer and one strided slice per tap; M = n * O.
    """

    sizes: tuple[int, ...]  # S: the input's spatial sizes
    pads: tuple[tuple[int, int], ...]  # (before, after) per spatial axis
    out: tuple[int, ...]  # O: the output's spatial sizes
    n: int  # samples in the chunk
    shape: tuple[int, ...]  # the buffer's spatial shape: B (wide) or the padded P (exact)
    pitch: int  # wide: each sample's span along the last axis of B
    taps: tuple[tuple[slice, ...], ...]  # exact: each tap's strided slice of the padded input
    offsets: tuple[int, ...]  # wide: each tap's offset in the flattened buffer
    wide: bool
    kernel: tuple[int, ...] = ()  # wide: taps per spatial axis
    tap_steps: tuple[int, ...] = ()  # wide: the offset between neighbouring taps, per axis

    @classmethod
    @functools.cache
    def of(
        cls,
        kernel: tuple[int, ...],
        stride: tuple[int, ...],
        dilation: tuple[int, ...],
        sizes: tuple[int, ...],
        pads: tuple[tuple[int, int], ...],
        out: tuple[int, ...],
        n: int,
    ) -> Grid:
        """The grid of one geometry and chunk size; cached, as every step asks for the same few."""
        padded = tuple(s + lo + hi for s, (lo, hi) in zip(sizes, pads, strict=True))
        if not all(v == 1 for v in stride):
            taps = tuple(tap_regions(kernel, stride, dilation, out))
            return cls(sizes, pads, out, n, padded, 0, taps, (), False)
        (lo, hi), last = pads[-1], sizes[-1]
        # Far enough apart that a sample's windows see only its own data and zeros, and that
        # no two samples' outputs share a column.
        pitch = max(last + max(lo, hi), out[-1])
        row = n * pitch + max(0, lo + last + hi - pitch)  # the last sample's right padding
        shape = (*padded[:-1], row)
        steps = [math.prod(shape[i + 1 :]) for i in range(len(shape))]  # C-order strides
        tap_steps = tuple(d * st for d, st in zip(dilation, steps, strict=True))
        offsets = tuple(
            sum(t * ts for t, ts in zip(offset, tap_steps, strict=True))
            for offset in itertools.product(*(range(k) for k in kernel))
        )
        return cls(sizes, pads, out, n, shape, pitch, (), offsets, True, kernel, tap_steps)

    @property
    def columns(self) -> int:
        """Window-matrix columns of the whole chunk (M)."""
        if not self.wide:
            return self.n * math.prod(self.out)
        if len(self.out) == 1:
            return self.n * self.pitch
        return self.out[0] * math.prod(self.shape[1:])

    @property
    def slack(self) -> int:
        """Floats past the buffer that the last wide tap reads (all zero)."""
        if not self.wide:
            return 0
        return max(0, max(self.offsets) + self.columns - math.prod(self.shape))

    def _data(self, buf: Array) -> Array:
        """The input's positions in a buffer: a (C, n, *S) view (wide: strided, in place)."""
        c = buf.shape[0]
        inner = tuple(slice(lo, lo + s) for (lo, _), s in zip(self.pads, self.sizes, strict=True))
        if not self.wide:
            return buf.reshape(c, self.n, *self.shape)[(slice(None), slice(None), *inner)]
        full = buf[:, : math.prod(self.shape)].reshape(c, *self.shape)
        lanes = full[..., : self.n * self.pitch].reshape(c, *self.shape[:-1], self.n, self.pitch)
        data = lanes[(slice(None), *inner[:-1], slice(None), inner[-1])]  # (C, *S[:-1], n, S_last)
        return np.moveaxis(data, -2, 1)

    def load(self, x: Array) -> Array:
        """(n, C, *S) -> the zero-padded buffer the window matrix is cut from."""
        c = x.shape[1]
        if self.wide:
            buf = np.zeros((c, math.prod(self.shape) + self.slack), dtype=x.dtype)
        else:
            buf = np.zeros((c, self.n * math.prod(self.shape)), dtype=x.dtype)
        self._data(buf)[...] = np.moveaxis(x, 1, 0)
        return buf

    def unload(self, buf: Array) -> Array:
        """The adjoint of load's placement: a buffer of gradients -> (n, C, *S) (a view)."""
        return np.moveaxis(self._data(buf), 0, 1)

    def im2col(self, buf: Array) -> Array:
        """The buffer -> the (C, K, M) window matrix.

        Wide: one copy from a (C, *kernel, M) view whose tap axes step through the buffer
        (rows of taps overlap: the view only reads); a copy per tap cost 10-20 us more per
        chunk in call overhead. Exact: one strided copy per tap.
        """
        c, m = buf.shape[0], self.columns
        if self.wide:
            cols = np.empty((c, len(self.offsets), m), dtype=buf.dtype)
            size = buf.itemsize
            taps = as_strided(
                buf,
                shape=(c, *self.kernel, m),
                strides=(buf.strides[0], *(t * size for t in self.tap_steps), size),
                writeable=False,
            )
            cols.reshape(c, *self.kernel, m)[...] = taps
            return cols
        cols = np.empty((c, len(self.taps), m), dtype=buf.dtype)
        xc = buf.reshape(c, self.n, *self.shape)
        for k, region in enumerate(self.taps):
            cols[:, k] = xc[(slice(None), slice(None), *region)].reshape(c, m)
        return cols

    def col2im(self, dcols: Array) -> Array:
        """The adjoint of im2col: (C, K, M) window gradients summed into a buffer (unload it).

        One add per tap: within a tap the buffer positions are distinct, so `+=` on the slice
        never loses a contribution.
        """
        c, _, m = dcols.shape
        if self.wide:
            dbuf = np.zeros((c, math.prod(self.shape) + self.slack), dtype=dcols.dtype)
            for k, off in enumerate(self.offsets):
                dbuf[:, off : off + m] += dcols[:, k]
            return dbuf
        dbuf = np.zeros((c, self.n * math.prod(self.shape)), dtype=dcols.dtype)
        dxc = dbuf.reshape(c, self.n, *self.shape)
        for k, region in enumerate(self.taps):
            dxc[(slice(None), slice(None), *region)] += dcols[:, k].reshape(c, self.n, *self.out)
        return dbuf

    def valid(self, grid: Array) -> Array:
        """(F, M) on the grid -> an (F, n, *O) view of the real output positions."""
        f = grid.shape[0]
        if not self.wide:
            return grid.reshape(f, self.n, *self.out)
        rows = (self.out[0], *self.shape[1:]) if len(self.out) > 1 else (self.n * self.pitch,)
        lanes = grid.reshape(f, *rows)[..., : self.n * self.pitch]
        lanes = lanes.reshape(f, *rows[:-1], self.n, self.pitch)
        inner = tuple(slice(0, o) for o in self.out)
        return np.moveaxis(lanes[(slice(None), *inner[:-1], slice(None), inner[-1])], -2, 1)

    def scatter_output(self, dy: Array) -> Array:
        """(n, F, *O) output gradient -> (F, M) on the grid, zero on the extra columns."""
        f = dy.shape[1]
        grid = (np.zeros if self.wide else np.empty)((f, self.columns), dtype=dy.dtype)
        self.valid(grid)[...] = np.moveaxis(dy, 1, 0)
        return grid


def chunk_grids(
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    sizes: tuple[int, ...],
    pads: Pads,
    out: tuple[int, ...],
    n: int,
    row_bytes: int,
) -> list[tuple[int, int, Grid]]:
    """[lo, hi) ranges over the batch with their grids, each window matrix ~CHUNK_BYTES.

    row_bytes: the bytes of one window-matrix column (C*K floats).
    """
    geometry = (kernel, stride, dilation, sizes, tuple(pads), out)
    per_sample = Grid.of(*geometry, 1).columns * row_bytes
    step = max(1, CHUNK_BYTES // max(per_sample, 1))
    return [
        (lo, min(lo + step, n), Grid.of(*geometry, min(step, n - lo))) for lo in range(0, n, step)
    ]


def correlate(
    x: Array,
    wg: Array,
    chunks: Sequence[tuple[int, int, Grid]],
    out: Array,
    keep: bool,
    bias: Array | None = None,
) -> list[Array]:
    """out (N, G*F/G, *O) = x's windows (N, C, *S) times weights wg (G, F/G, C/G*K) + bias.

    Per chunk of the batch: load, im2col, then one (F/G, C/G*K) @ (C/G*K, M) GEMM per group,
    whose valid columns are copied into the batch-first output. The bias (G*F/G,) is added to
    the GEMM's result while it is contiguous and in cache (a pass over the strided output
    after the copy cost 3-10% of LeNet's and the CIFAR CNN's conv forward). With keep, returns
    the loaded buffers (the forward's cache); else each is freed with its chunk.
    """
    g, fg, rows = wg.shape
    bg = None if bias is None else bias.reshape(g, fg, 1)
    bufs = []
    for lo, hi, grid in chunks:
        buf = grid.load(x[lo:hi])
        cols = grid.im2col(buf).reshape(g, rows, grid.columns)
        for i in range(g):
            yi = wg[i] @ cols[i]  # (F/G, M)
            if bg is not None:
                yi += bg[i]
            out[lo:hi, i * fg : (i + 1) * fg] = np.moveaxis(grid.valid(yi), 0, 1)
        if keep:
            bufs.append(buf)
    return bufs


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

    def _chunks(self, x: Shape, n: int, itemsize: int) -> tuple[Pads, list[tuple[int, int, Grid]]]:
        """The explicit pads and the batch's chunks with their im2col grids."""
        k, s, d = self._kernel()
        pads, out = self._geometry(x)
        row_bytes = x[0] * math.prod(k) * itemsize  # one window-matrix column: C*K floats
        return pads, chunk_grids(k, s, d, tuple(x[1:]), pads, out, n, row_bytes)

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]  # (N, C, *S)
        n, g, f = x.shape[0], self.groups, self.filters
        pads, chunks = self._chunks(x.shape[1:], n, x.itemsize)
        _, out = self._geometry(x.shape[1:])  # from the rule: an empty batch has no chunk
        y = np.empty((n, f, *out), dtype=x.dtype)
        bias = p["bias"] if self.bias else None
        bufs = correlate(x, p["weight"].reshape(g, f // g, -1), chunks, y, keep=True, bias=bias)
        # Keep the padded input rather than the window matrix: the matrix is K times larger,
        # and rebuilding it in backward costs one cache-resident copy.
        return y, (bufs, x.shape, pads, chunks, ctx.input_grad)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        bufs, xshape, pads, chunks, input_grad = cache
        w = p["weight"]
        n, c = xshape[:2]
        g, f = self.groups, self.filters
        fg = f // g
        wg = w.reshape(g, fg, -1)  # (G, F/G, C/G*K)
        dwt = np.zeros((g, wg.shape[2], fg), dtype=dy.dtype)  # dW^T, summed over chunks
        back_pads = self._correlation_pads(c, pads) if input_grad else None
        # The first layer skips dx (nothing upstream wants it); else col2im builds it per chunk.
        dx = np.empty(xshape, dtype=dy.dtype) if input_grad and back_pads is None else None
        for (lo, hi, grid), buf in zip(chunks, bufs, strict=True):
            m = grid.columns
            dyc = grid.scatter_output(dy[lo:hi]).reshape(g, fg, m)  # (G, F/G, M)
            cols = grid.im2col(buf).reshape(g, -1, m)  # (G, C/G*K, M)
            for i in range(g):
                # dW^T += cols dy^T: OpenBLAS runs the long M reduction far faster with the
                # tall operand first than as dy cols^T.
                dwt[i] += cols[i] @ dyc[i].T
            if dx is None:
                continue
            dcols = np.empty_like(cols)  # (G, C/G*K, M) = (C, K, M)
            for i in range(g):
                np.matmul(wg[i].T, dyc[i], out=dcols[i])
            dx[lo:hi] = grid.unload(grid.col2im(dcols.reshape(c, -1, m)))
        if back_pads is not None:
            dx = self.input_grad_by_correlation(dy, w, xshape[1:], back_pads)
        grads = {"weight": np.ascontiguousarray(dwt.transpose(0, 2, 1)).reshape(w.shape)}
        if self.bias:
            grads["bias"] = channel_sums(dy.reshape(n, f, math.prod(dy.shape[2:])))
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
        n, sizes = dy.shape[0], tuple(dy.shape[2:])
        row_bytes = f * math.prod(k) * dy.itemsize
        chunks = chunk_grids(k, (1,) * len(k), d, sizes, pads, tuple(xshape[1:]), n, row_bytes)
        dx = np.empty((n, *xshape), dtype=dy.dtype)
        correlate(dy, np.ascontiguousarray(wt).reshape(g, cg, -1), chunks, dx, keep=False)
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
