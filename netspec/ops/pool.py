"""Max and average pooling (1-D and 2-D), and the global pools that end a CNN.

They share window.py's geometry, window view and scatter with the convs. Max pool backward
routes each output's gradient to the one argmax of its window (a mask would double-count ties);
average pool divisors follow PyTorch and ONNX exactly, including ceil_mode windows that hang
off the end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from netspec.errors import ShapeError
from netspec.ops import pool2x2
from netspec.ops.base import (
    Array,
    Ctx,
    Example,
    Grads,
    OnnxIO,
    OnnxNode,
    Op,
    OpsetError,
    Params,
    Shape,
    Workspace,
    expect_rank,
    numel,
)
from netspec.ops.window import (
    PaddingAttr,
    Pads,
    Sizes,
    Windowed,
    as_tuple,
    crop,
    out_size,
    pad_input,
    scatter_windows,
    symmetric,
    tap_regions,
    torch_pad,
    windows,
)


class PoolNd(Windowed):
    """A sliding-window reduction; the stride defaults to the kernel (non-overlapping windows)."""

    kernel: Sizes
    stride: Sizes | None = None
    padding: PaddingAttr = 0
    # With ceil_mode, a last window that would start in the right padding is dropped (PyTorch,
    # onnxruntime, window.out_size, and ONNX's MaxPool/AveragePool since opset 22; earlier
    # versions count it): below opset 22 the export spells ceil_mode out as end padding.
    ceil_mode: bool = False

    positional: ClassVar[tuple[str, ...]] = ("kernel",)
    category: ClassVar[str] = "pool"

    def _dilation(self) -> tuple[int, ...]:
        return (1,) * self.ndim

    def _kernel(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        k = as_tuple(self.kernel, self.ndim, "kernel")
        s = k if self.stride is None else as_tuple(self.stride, self.ndim, "stride")
        return k, s, self._dilation()

    def _ceil(self) -> bool:
        return self.ceil_mode

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        self._expect_spatial(x)
        pads, out = self._geometry(x)
        k, _, _ = self._kernel()
        for (lo, hi), kk in zip(pads, k, strict=True):
            if max(lo, hi) >= kk:
                # A window could see padding only (a max of -inf, a mean over nothing), and
                # onnxruntime refuses such a model: its rule is each pad < kernel.
                side = "begin" if lo >= kk else "end"
                raise ShapeError(
                    f"padding {lo}+{hi} must be smaller than the kernel {kk} on each side "
                    f"(the {side} padding is not): a window would cover padding only",
                    hint="ONNX and onnxruntime need pads < kernel; PyTorch's rule is padding "
                    "<= kernel / 2",
                )
        return (x[0], *out)

    def _full_pads(self, x: Shape) -> tuple[Pads, Pads, tuple[int, ...]]:
        """For a per-sample input (C, *spatial): its pads, the pads every window fits in, and
        the output size.

        ceil_mode's last window may run past the right padding; pad a little more so the
        window exists (max pool ignores the -inf, average pool's divisor excludes it). A
        window-sized floor-mode pool over the fully padded input has exactly `out` windows.
        """
        k, s, d = self._kernel()
        pads, out = self._geometry(x)
        full = []
        for h, kk, ss, dd, (lo, hi), o in zip(x[1:], k, s, d, pads, out, strict=True):
            need = (o - 1) * ss + dd * (kk - 1) + 1
            full.append((lo, hi + max(0, need - (h + lo + hi))))
        return pads, full, out

    def workspace(self, inputs: Sequence[Shape], output: Shape) -> Workspace:
        """The cache is the fully padded input and a winner index (or divisor) per output;
        backward scatters into another padded copy, one output-sized piece per tap."""
        _, full, _ = self._full_pads(inputs[0])
        sizes = zip(inputs[0][1:], full, strict=True)
        padded = inputs[0][0] * math.prod(h + lo + hi for h, (lo, hi) in sizes)
        out = numel(output)
        return Workspace(cache=4 * padded + 8 * out, scratch=4 * (2 * padded + 3 * out))

    def _padded(self, x: Array, value: float) -> tuple[Array, Pads, tuple[int, ...]]:
        """The fully padded input (see _full_pads), its pads, and the output size."""
        pads, full, out = self._full_pads(x.shape[1:])
        return pad_input(x, full, value), pads, out

    def _torch_padding(self, pads: Pads) -> tuple[int, ...] | None:
        """The padding to hand torch's own pool, or None where it cannot take ours: torch pads
        both sides alike and at most half a kernel. Its output size and average divisor (ceil
        windows clipped at the padded end) are then the ones window.py and _divisor give."""
        k, _, _ = self._kernel()
        same = symmetric(pads)
        if same is None or any(lo > kk // 2 for lo, kk in zip(same, k, strict=True)):
            return None
        return same

    def _onnx_attrs(self, io: OnnxIO) -> dict[str, Any]:
        k, s, d = self._kernel()
        pads, out = self._geometry(io.input_shapes[0])
        sizes = io.input_shapes[0][1:]
        ends = [hi for _, hi in pads]
        ceil = self.ceil_mode
        if ceil and io.opset < 22 and out != self._counted_before_22(sizes, pads):
            # ONNX before opset 22 keeps a ceil window that starts in the right padding; give
            # floor mode the end padding that yields exactly our windows instead. Where the
            # last window ends before the input does (a kernel shorter than its stride), the
            # rows after it sit in a stride gap: no end padding, never a negative one.
            ends = [
                max(0, (o - 1) * ss + dd * (kk - 1) + 1 - h - lo)
                for h, kk, ss, dd, (lo, _), o in zip(sizes, k, s, d, pads, out, strict=True)
            ]
            self._check_spelled_out_ceil(ends, pads, k)
            ceil = False
        attrs: dict[str, Any] = {
            "kernel_shape": list(k),
            "strides": list(s),
            "pads": [lo for lo, _ in pads] + ends,
        }
        if ceil:
            attrs["ceil_mode"] = 1
        return attrs

    def _counted_before_22(self, sizes: Sequence[int], pads: Pads) -> tuple[int, ...]:
        """The output size ONNX's pools defined before opset 22: ceil, no window dropped."""
        k, s, d = self._kernel()
        return tuple(
            out_size(h, kk, ss, dd, p, ceil=True, drop_padding_start=False)
            for h, kk, ss, dd, p in zip(sizes, k, s, d, pads, strict=True)
        )

    def _check_spelled_out_ceil(
        self, ends: Sequence[int], pads: Pads, kernel: Sequence[int]
    ) -> None:
        """Refuse what end padding cannot stand in for ceil_mode: onnxruntime's pad < kernel."""
        if any(e >= kk for e, kk in zip(ends, kernel, strict=True)):
            raise OpsetError(
                f"{self.kind()} with ceil_mode needs opset 22 here (before it, ONNX counts a "
                "last window that starts in the right padding)"
            )


class MaxPoolNd(PoolNd):
    dilation: Sizes = 1

    takes_max: ClassVar[bool] = True

    def _dilation(self) -> tuple[int, ...]:
        return as_tuple(self.dilation, self.ndim, "dilation")

    def _tiles(self) -> bool:
        """Windows that tile the input (stride = kernel, no dilation), as in LeNet and VGG."""
        k, s, d = self._kernel()
        return k == s and all(v == 1 for v in d)

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        k, s, d = self._kernel()
        xp, pads, out = self._padded(x, -np.inf)  # padding never wins a max
        if self._tiles():
            fast = pool2x2.applies(xp, k, out)
            y, picks = pool2x2.max2x2(xp) if fast else tiled_max(xp, k, out)
            return y, (picks, xp.shape, x.shape, pads, out)
        # A running max over the taps, each a strided view of the input (N, C, *O): K passes
        # over the output instead of copying every window. `idx` keeps the first maximum only
        # (a later tap must be strictly greater), so ties send the gradient once, as argmax.
        taps = [xp[(slice(None), slice(None), *region)] for region in tap_regions(k, s, d, out)]
        y = taps[0].copy()
        idx = np.zeros(y.shape, dtype=winner_dtype(len(taps)))
        for t, tap in enumerate(taps[1:], start=1):
            np.copyto(idx, t, where=tap > y)
            np.maximum(y, tap, out=y)
        return y, (idx, xp.shape, x.shape, pads, out)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        idx, xpshape, xshape, pads, out = cache
        k, s, d = self._kernel()
        if self._tiles():
            return [crop(tiled_max_back(dy, idx, k, xpshape), pads, xshape[2:])], {}
        zero = np.zeros((), dtype=dy.dtype)
        dxp = scatter_windows(
            xpshape, dy.dtype, k, s, d, out, lambda i, _: np.where(idx == i, dy, zero)
        )
        return [crop(dxp, pads, xshape[2:])], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        attrs = self._onnx_attrs(io)
        d = self._dilation()
        if any(v != 1 for v in d):
            attrs["dilations"] = list(d)  # MaxPool has dilations since opset 10
        return [OnnxNode("MaxPool", (io.inputs[0],), (io.output,), attrs)]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        # torch's max pool sends a window's gradient to its first maximum, as backward does.
        x = xs[0]
        k, s, d = self._kernel()
        pads, full, _ = self._full_pads(tuple(x.shape[1:]))
        pool = self._torch_fn(torch, "max_pool")
        padding = self._torch_padding(pads)
        if padding is not None:
            return pool(x, k, s, padding, d, ceil_mode=self.ceil_mode)
        return pool(torch_pad(torch, x, full, -math.inf), k, s, 0, d)  # padding never wins


def winner_dtype(taps: int) -> np.dtype[Any]:
    """The smallest unsigned integer type that holds every tap index 0 .. taps - 1.

    A window's winner is stored per output, so a small type saves memory; a kernel of more
    than 256 taps (maxpool1d(300) over a sequence) needs a wider one or the index overflows.
    """
    return np.min_scalar_type(max(taps - 1, 0))


def tiled_max(xp: Array, kernel: Sequence[int], out: Shape) -> tuple[Array, list[Array]]:
    """Max over windows that tile xp, one spatial axis at a time: (y, the winner per axis).

    A window's max is the max over its rows of each row's max, so the last axis is reduced
    first and the earlier ones after it; each pass reads whole rows, where a pass per kernel
    tap reads every k-th element (measured 4-6x faster, forward and backward, on LeNet and
    the CIFAR CNN). A later tap wins only when strictly greater, axis by axis, which is the
    first maximum in C order over the window: the same winner as the tap-by-tap loop.
    """
    covered = tuple(slice(0, o * k) for o, k in zip(out, kernel, strict=True))
    y: Array = xp[(slice(None), slice(None), *covered)]  # rows past the last window go
    picks: list[Array] = []
    for axis in reversed(range(len(kernel))):
        k, o, at = kernel[axis], out[axis], (slice(None),) * (2 + axis)
        taps = [y[(*at, slice(t, t + (o - 1) * k + 1, k))] for t in range(k)]
        if k == 2:  # the common 2x2 pool: the winner is one comparison
            picks.append(taps[1] > taps[0])
            y = np.maximum(taps[0], taps[1])
            continue
        y, pick = taps[0].copy(), np.zeros(taps[0].shape, dtype=winner_dtype(k))
        for t, tap in enumerate(taps[1:], start=1):
            np.copyto(pick, t, where=tap > y)
            np.maximum(y, tap, out=y)
        picks.append(pick)
    return y, picks[::-1]


def tiled_max_back(dy: Array, picks: list[Array], kernel: Sequence[int], shape: Shape) -> Array:
    """The adjoint of tiled_max: each output's gradient to its window's winner, zeros elsewhere.

    Unwinds the axes in the reverse of tiled_max's order (the first axis first), so each pass
    writes every k-th element of one axis once. An infinite dy also turns the losers' zeros
    into NaN (inf * 0); training has stopped on a non-finite loss long before.
    """
    g = dy
    for axis, pick in enumerate(picks):
        k, at = kernel[axis], (slice(None),) * (2 + axis)
        grown = list(g.shape)
        grown[2 + axis] *= k
        full = np.empty(grown, dtype=dy.dtype)
        for t in range(k):
            won = (~pick if t == 0 else pick) if pick.dtype == bool else pick == t
            np.multiply(g, won, out=full[(*at, slice(t, None, k))])
        g = full
    if g.shape == tuple(shape):
        return g
    dxp = np.zeros(shape, dtype=dy.dtype)  # rows past the last whole window get nothing
    dxp[tuple(slice(0, n) for n in g.shape)] = g
    return dxp


class AvgPoolNd(PoolNd):
    count_include_pad: bool = False

    def _divisor(self, sizes: Sequence[int], pads: Pads, out: Shape) -> Array:
        """Per-output divisor (*out): PyTorch's rule, separable over dimensions.

        A window is first clipped to the padded extent [-lo, size + hi) (a ceil_mode window never
        counts what lies past the right padding); count_include_pad=false clips it again to the
        real input [0, size).
        """
        k, s, _ = self._kernel()
        div = np.ones((), dtype=np.int64)
        for h, kk, ss, (lo, hi), o in zip(sizes, k, s, pads, out, strict=True):
            start = np.arange(o) * ss - lo
            end = np.minimum(start + kk, h + hi)
            if not self.count_include_pad:
                start, end = np.maximum(start, 0), np.minimum(end, h)
            div = np.multiply.outer(div, end - start)
        return div

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        k, s, d = self._kernel()
        xp, pads, out = self._padded(x, 0.0)
        win = windows(xp, k, s, d, out)  # (N, C, *O, *K)
        div = self._divisor(x.shape[2:], pads, out).astype(x.dtype)
        y = win.sum(axis=tuple(range(-len(k), 0))) / div
        return y, (xp.shape, x.shape, pads, out, div)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        xpshape, xshape, pads, out, div = cache
        k, s, d = self._kernel()
        share = dy / div  # every tap of a window gets the same share
        dxp = scatter_windows(xpshape, dy.dtype, k, s, d, out, lambda *_: share)
        return [crop(dxp, pads, xshape[2:])], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        attrs = self._onnx_attrs(io)
        attrs["count_include_pad"] = int(self.count_include_pad)
        return [OnnxNode("AveragePool", (io.inputs[0],), (io.output,), attrs)]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        x = xs[0]
        k, s, _ = self._kernel()
        pads, full, _ = self._full_pads(tuple(x.shape[1:]))
        padding = self._torch_padding(pads)
        if padding is not None:
            pool = self._torch_fn(torch, "avg_pool")
            return pool(x, k, s, padding, self.ceil_mode, self.count_include_pad)
        # Window sums over the fully padded input, divided by _divisor's counts: the sum of a
        # mask that is 1 on the input, on the padding too with count_include_pad, and 0 on
        # ceil_mode's overhang (a box sum of a product of 1-D masks is the product of counts).
        sums = self._torch_sums(torch, torch_pad(torch, x, full), k, s)
        mask = torch_pad(
            torch, x.new_ones((1, 1, *x.shape[2:])), pads, float(self.count_include_pad)
        )
        mask = torch_pad(
            torch, mask, [(0, f - p) for (_, p), (_, f) in zip(pads, full, strict=True)]
        )
        return sums / self._torch_sums(torch, mask, k, s)

    def _torch_sums(self, torch: Any, x: Any, kernel: Shape, stride: Shape) -> Any:
        """Sums over every window of an already padded tensor (avg_pool1d has no divisor)."""
        avg = torch.nn.functional.avg_pool2d
        if self.ndim == 1:
            y = avg(x.unsqueeze(2), (1, *kernel), (1, *stride), divisor_override=1)
            return y.squeeze(2)
        return avg(x, kernel, stride, divisor_override=1)

    def _check_spelled_out_ceil(
        self, ends: Sequence[int], pads: Pads, kernel: Sequence[int]
    ) -> None:
        super()._check_spelled_out_ceil(ends, pads, kernel)
        # Counted padding would count the added end padding too: PyTorch clips a ceil window
        # to the padded extent before it counts.
        if self.count_include_pad and any(e > hi for e, (_, hi) in zip(ends, pads, strict=True)):
            raise OpsetError(
                f"{self.kind()} with ceil_mode and count_include_pad needs opset 22 here"
            )


class MaxPool2d(MaxPoolNd):
    op: Literal["maxpool2d"] = "maxpool2d"

    ndim: ClassVar[int] = 2
    summary: ClassVar[str] = "max over windows of [C, H, W]; stride defaults to the kernel"

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(kernel=2), ((3, 7, 6),)),
            Example(cls(kernel=3, stride=2, padding=1), ((2, 7, 6),)),
            Example(cls(kernel=(3, 2), stride=(2, 1), ceil_mode=True), ((2, 8, 5),)),
            Example(cls(kernel=2, stride=2, dilation=2, padding="same"), ((2, 7, 6),)),
            Example(cls(kernel=(3, 2), padding=1, ceil_mode=True), ((2, 7, 6),)),
        ]


class AvgPool2d(AvgPoolNd):
    op: Literal["avgpool2d"] = "avgpool2d"

    ndim: ClassVar[int] = 2
    summary: ClassVar[str] = (
        "mean over windows of [C, H, W]; stride defaults to the kernel; padding joins the "
        "mean only with count_include_pad"
    )

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(kernel=2), ((3, 7, 6),)),
            Example(cls(kernel=3, stride=2, padding=1), ((2, 7, 6),)),
            Example(cls(kernel=3, stride=2, padding=1, count_include_pad=True), ((2, 7, 6),)),
            Example(cls(kernel=(3, 2), stride=2, padding=1, ceil_mode=True), ((2, 8, 6),)),
            # The last row window hangs off the end: its divisor counts only what is inside.
            Example(cls(kernel=2, ceil_mode=True, count_include_pad=True), ((2, 5, 4),)),
            # `same` pads W by 0+1: torch's own pool cannot take it (padded, then summed).
            Example(cls(kernel=3, stride=2, padding="same"), ((2, 7, 6),)),
        ]


class MaxPool1d(MaxPoolNd):
    op: Literal["maxpool1d"] = "maxpool1d"

    ndim: ClassVar[int] = 1
    summary: ClassVar[str] = "max over windows of [C, L]; attributes as maxpool2d"

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(kernel=2), ((3, 9),)),
            Example(cls(kernel=3, stride=2, padding=1, ceil_mode=True), ((2, 10),)),
            # ceil_mode: a window one longer than the input still gives one window.
            Example(cls(kernel=4, stride=2, ceil_mode=True), ((2, 3),)),
        ]


class AvgPool1d(AvgPoolNd):
    op: Literal["avgpool1d"] = "avgpool1d"

    ndim: ClassVar[int] = 1
    summary: ClassVar[str] = "mean over windows of [C, L]; attributes as avgpool2d"

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(kernel=3), ((3, 9),)),
            Example(cls(kernel=3, stride=2, padding=1, count_include_pad=True), ((2, 10),)),
            # Padding 2+1, over half the kernel, and a ceil window hanging past the end.
            Example(
                cls(kernel=3, stride=2, padding=(2, 1), ceil_mode=True, count_include_pad=True),
                ((2, 9),),
            ),
            # ceil_mode: one window longer than the padded input, its divisor clipped to it.
            Example(cls(kernel=5, stride=3, padding=1, ceil_mode=True), ((2, 2),)),
        ]


# ---------------------------------------------------------------------------------------------
# Global pools


class GlobalPool(Op):
    """Reduce every spatial position: (C, *S) -> (C, 1, ..., 1), as ONNX's Global*Pool."""

    category: ClassVar[str] = "pool"
    channels_first: ClassVar[bool] = True

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        expect_rank(self.kind(), x, (2, 3, 4), "channels, then 1 to 3 spatial axes")
        return (x[0], *(1,) * (len(x) - 1))


class GlobalAvgPool(GlobalPool):
    op: Literal["global_avgpool"] = "global_avgpool"

    summary: ClassVar[str] = "mean over all positions: [C, H, W] -> [C, 1, 1]"

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True), x.shape

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        shape = cache
        count = math.prod(shape[2:])
        return [np.broadcast_to(dy / count, shape).copy()], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        return [OnnxNode("GlobalAveragePool", (io.inputs[0],), (io.output,))]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        x = xs[0]
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((3, 4, 5),)), Example(cls(), ((2, 6),))]


class GlobalMaxPool(GlobalPool):
    op: Literal["global_maxpool"] = "global_maxpool"

    takes_max: ClassVar[bool] = True

    summary: ClassVar[str] = "max over all positions: [C, H, W] -> [C, 1, 1]"

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        flat = x.reshape(*x.shape[:2], -1)  # (N, C, H*W)
        idx = flat.argmax(axis=-1)[..., None]  # one winner per channel, even on ties
        y = np.take_along_axis(flat, idx, axis=-1)
        return y.reshape(*x.shape[:2], *(1,) * (x.ndim - 2)), (idx, x.shape)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        idx, shape = cache
        dx = np.zeros((*shape[:2], math.prod(shape[2:])), dtype=dy.dtype)
        np.put_along_axis(dx, idx, dy.reshape(*shape[:2], 1), axis=-1)
        return [dx.reshape(shape)], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        return [OnnxNode("GlobalMaxPool", (io.inputs[0],), (io.output,))]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        x = xs[0]
        y = x.flatten(2).max(dim=-1).values  # one winner per channel, as forward's argmax
        return y.reshape(*x.shape[:2], *(1,) * (x.dim() - 2))

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((3, 4, 5),)), Example(cls(), ((2, 6),))]
