"""Convolutions, written once for n spatial dimensions: conv1d over (C, L), conv2d over (C, H, W).

Stride-1 3x3 convolutions can run their forward pass and input gradient through Winograd
F(2x2, 3x3) (winograd.py; `winograd.applies` is the rule, off while it measures slower).
Otherwise the NumPy path is im2col (im2col.py): per chunk of the batch, a (C*K, M) window
matrix and one GEMM per group, or on stride 1 with enough channels the row path: a (C*K_last,
M') row matrix and one GEMM per leading kernel tap over shifted views of it, kept from forward
for the weight gradient. Off the row path backward rebuilds the window matrix for dW; dx either
scatters window gradients back with one add per tap (col2im) or, for stride 1, is itself a
correlation of the padded output gradient with the flipped kernel. Window geometry is in window.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from netspec.errors import ShapeError
from netspec.ops import winograd
from netspec.ops.base import (
    Array,
    Ctx,
    Example,
    Grads,
    OnnxIO,
    OnnxNode,
    Params,
    Shape,
    Workspace,
    channel_sums,
    numel,
)
from netspec.ops.im2col import (
    CHUNK_BYTES,
    Grid,
    chunk_grids,
    conv_weights,
    correlate,
    exact_grads,
    row_grads,
    row_path,
    unlead,
)
from netspec.ops.init import Init, InitName
from netspec.ops.minorgrid import minor_applies, minor_chunks
from netspec.ops.window import (
    PaddingAttr,
    Pads,
    Sizes,
    Windowed,
    as_tuple,
    symmetric,
    torch_pad,
)


class ConvNd(Windowed):
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

    positional: ClassVar[tuple[str, ...]] = ("filters", "kernel")

    def _kernel(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        n = self.ndim
        return (
            as_tuple(self.kernel, n, "kernel"),
            as_tuple(self.stride, n, "stride"),
            as_tuple(self.dilation, n, "dilation"),
        )

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        self._expect_spatial(x)
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

    def init_hint(self) -> Init | None:
        return self.init

    def workspace(self, inputs: Sequence[Shape], output: Shape) -> Workspace:
        """The cache is the loaded (padded) input, or on the row path its row matrix (K_last
        times larger), or the window matrix where that is no larger (strided convs). The
        window matrix is built per chunk of about CHUNK_BYTES, but never less than one
        sample's, which can be far larger (a 15x15 kernel over a 96x96 image: 25 MB a sample).
        Backward's input gradient correlates dy the same way, with F channels instead of C;
        both keep a matrix, its gradient and a GEMM result."""
        x = inputs[0]
        k = self._kernel()[0]
        c, f, taps = x[0], self.filters, math.prod(k)
        _, chunks = self._chunks(x, 1, 4)
        grid = chunks[0][2]
        loaded = c * (math.prod(grid.shape) + grid.slack) * 4
        if row_path(chunks, c // self.groups):
            loaded = max(loaded, c * k[-1] * grid.span * 4)
        elif c * taps * grid.columns <= k[-1] * loaded // 4:  # the window matrix, kept as is
            loaded = c * taps * grid.columns * 4
        columns = max(grid.columns, CHUNK_BYTES // (4 * taps * min(c, f)))
        fixed = 4 * columns * (max(c, f) * taps + 2 * max(c, f))
        io = (numel(x) + numel(output)) * 4
        return Workspace(cache=loaded, scratch=2 * (io + loaded), fixed=fixed)

    def _chunks(self, x: Shape, n: int, itemsize: int) -> tuple[Pads, list[tuple[int, int, Grid]]]:
        """The explicit pads and the batch's chunks with their im2col grids."""
        k, s, d = self._kernel()
        pads, out = self._geometry(x)
        row_bytes = x[0] * math.prod(k) * itemsize  # one window-matrix column: C*K floats
        if minor_applies(k, s, d, tuple(x[1:]), pads, out, x[0] // self.groups):
            return pads, minor_chunks(k, d, tuple(x[1:]), pads, out, n, row_bytes)
        return pads, chunk_grids(k, s, d, tuple(x[1:]), pads, out, n, row_bytes)

    def _winograd(self, channels: int, filters: int, pads: Pads, out: Sequence[int]) -> bool:
        k, st, d = self._kernel()
        return winograd.applies(k, st, d, self.groups, tuple(pads), channels, filters, tuple(out))

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]  # (N, C, *S)
        n, g, f = x.shape[0], self.groups, self.filters
        pads, out = self._geometry(x.shape[1:])  # from the rule: an empty batch has no chunk
        bias = p["bias"] if self.bias else None
        if n and self._winograd(x.shape[1], f, pads, out):
            y = winograd.correlate(x, p["weight"], tuple(pads), bias)
            return y, (x, x.shape, pads, None, ctx.input_grad)
        pads, chunks = self._chunks(x.shape[1:], n, x.itemsize)
        y = np.empty((n, f, *out), dtype=x.dtype)
        # The cache per chunk: the row matrix on the row path, whose dW GEMMs read it as it is
        # (K_last times the padded input: 3x for 3x3), else the padded input, which backward
        # copies into a window matrix again (that one would be K times larger).
        bufs = correlate(x, p["weight"], g, chunks, y, keep=True, bias=bias)
        return y, (bufs, x.shape, pads, chunks, ctx.input_grad)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        bufs, xshape, pads, chunks, input_grad = cache
        w = p["weight"]
        n, c = xshape[:2]
        if chunks is None:  # the Winograd forward kept x: dW stays im2col, from x's buffers
            x = bufs
            pads, chunks = self._chunks(xshape[1:], n, x.itemsize)
            rows = row_path(chunks, w.shape[1])  # what correlate would have kept
            loaded = [(grid, grid.load(x[lo:hi])) for lo, hi, grid in chunks]
            bufs = [grid.rows(buf) if rows else buf for grid, buf in loaded]
        g, f = self.groups, self.filters
        wino_pads = [(2 - lo, 2 - hi) for lo, hi in pads]
        wino_dx = input_grad and self._winograd(self.filters, c, wino_pads, xshape[2:])
        back_pads = self._correlation_pads(c, pads) if input_grad and not wino_dx else None
        # The first layer skips dx (nothing upstream wants it); else col2im builds it per chunk.
        col2im = input_grad and back_pads is None and not wino_dx
        dx = np.empty(xshape, dtype=dy.dtype) if col2im else None
        if wino_dx:
            # dx as the correlation of dy padded by 2 - P with the flipped, transposed kernel.
            wt = np.ascontiguousarray(np.flip(w, axis=(2, 3)).swapaxes(0, 1))
            dx = winograd.correlate(dy, wt, tuple(wino_pads))
        wide = row_path(chunks, w.shape[1])
        weights = conv_weights(w, g, wide)
        # dW^T (per leading tap on the wide grid), summed over chunks.
        dwt = np.zeros((*weights.shape[:-2], weights.shape[-1], weights.shape[-2]), dy.dtype)
        for (lo, hi, grid), kept in zip(chunks, bufs, strict=True):
            dyc = grid.scatter_output(dy[lo:hi]).reshape(g, f // g, grid.columns)  # (G, F/G, M)
            # Forward kept a (C, K, M) window matrix or (C, K_last, span) row matrix, or else
            # the (C, L) padded buffer to rebuild the window matrix from.
            mat = kept if kept.ndim == 3 else grid.im2col(kept)
            dbuf = (row_grads if wide else exact_grads)(grid, mat, weights, dyc, dwt, col2im)
            if dx is not None and dbuf is not None:
                dx[lo:hi] = grid.unload(dbuf)
        if back_pads is not None:
            dx = self.input_grad_by_correlation(dy, w, xshape[1:], back_pads)
        dw = dwt.swapaxes(-1, -2)
        grads = {"weight": unlead(dw, w.shape) if wide else dw.reshape(w.shape)}
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
        correlate(dy, wt.reshape(c, fg, *k), g, chunks, dx, keep=False)
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

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        x = xs[0]
        _, s, d = self._kernel()
        pads, _ = self._geometry(tuple(x.shape[1:]))
        padding = symmetric(pads)
        if padding is None:  # asymmetric (`same`, ONNX begin/end pads): pad, then a valid conv
            x, padding = torch_pad(torch, x, pads), (0,) * self.ndim
        conv = self._torch_fn(torch, "conv")
        return conv(x, p["weight"], p.get("bias"), s, padding, d, self.groups)


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
