"""Transposed convolutions (the decoder's upsampling), written once for n spatial dimensions,
with PyTorch's and ONNX's attributes and weight layout (in, out/groups, *kernel):

    out = (H - 1)*S - 2P + D*(K-1) + output_padding + 1

The NumPy path is the definition, one tap at a time: each input position scatters W[:, :, tap]
times its values to output position i*S + tap*D - P, on a buffer wide enough for every tap
(output_padding only appends zeros there), cropped by the padding at the end. The backward pass
gathers along the same strided views.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

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
    expect_rank,
    numel,
)
from netspec.ops.window import NonNegInt, Sizes, as_tuple

RULE = "out = (H - 1)*S - 2P + D*(K-1) + output_padding + 1"


class ConvTransposeNd(Op):
    """The transpose (gradient) of a conv: PyTorch's ConvTranspose, ONNX's ConvTranspose."""

    filters: int = Field(ge=1)
    kernel: Sizes
    stride: Sizes = 1
    padding: NonNegInt | tuple[NonNegInt, ...] = 0
    output_padding: NonNegInt | tuple[NonNegInt, ...] = 0
    dilation: Sizes = 1
    groups: int = Field(default=1, ge=1)
    bias: bool = True

    ndim: ClassVar[int] = 2
    positional: ClassVar[tuple[str, ...]] = ("filters", "kernel")

    def _attrs(self) -> tuple[tuple[int, ...], ...]:
        n = self.ndim
        return tuple(
            as_tuple(v, n, name)
            for name, v in (
                ("kernel", self.kernel),
                ("stride", self.stride),
                ("padding", self.padding),
                ("output_padding", self.output_padding),
                ("dilation", self.dilation),
            )
        )

    @model_validator(mode="after")
    def _output_padding_below_stride(self) -> ConvTransposeNd:
        _, s, _, op, d = self._attrs()
        for o, ss, dd in zip(op, s, d, strict=True):
            if o >= max(ss, dd):
                raise ValueError(
                    f"output_padding must be smaller than the stride or the dilation, got "
                    f"output_padding={o} with stride={ss}, dilation={dd}"
                )
        return self

    def _sizes(self, x: Shape) -> tuple[int, ...]:
        k, s, p, op, d = self._attrs()
        out = []
        for h, kk, ss, pp, oo, dd in zip(x[1:], k, s, p, op, d, strict=True):
            o = (h - 1) * ss - 2 * pp + dd * (kk - 1) + oo + 1
            if o < 1:
                raise ShapeError(
                    f"padding {pp} leaves no output for input size {h} (kernel {kk}, stride "
                    f"{ss}): {o} positions; rule: {RULE}",
                    hint="use less padding or a larger kernel or stride",
                )
            out.append(o)
        return tuple(out)

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        n = self.ndim
        expect_rank(self.kind(), x, (n + 1,), "channels first: [C, L]" if n == 1 else "[C, H, W]")
        for what, c in (("input channels", x[0]), ("filters", self.filters)):
            if c % self.groups:
                raise ShapeError(
                    f"groups={self.groups} must divide the {what}, got {c} (input shape "
                    f"{list(x)}, filters={self.filters})"
                )
        return (self.filters, *self._sizes(x))

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        k = self._attrs()[0]
        shapes: dict[str, Shape] = {"weight": (inputs[0][0], self.filters // self.groups, *k)}
        if self.bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        k = self._attrs()[0]
        return numel(inputs[0]) * (self.filters // self.groups) * math.prod(k)

    def _taps(self, x: Shape) -> tuple[list[tuple[tuple[int, ...], tuple[slice, ...]]], Shape]:
        """Each kernel tap with the strided buffer slice its inputs land on, and the buffer's
        spatial size before the padding crop."""
        k, s, _, op, d = self._attrs()
        sizes = x[1:]
        full = tuple(
            (h - 1) * ss + dd * (kk - 1) + 1 + oo
            for h, kk, ss, oo, dd in zip(sizes, k, s, op, d, strict=True)
        )
        taps = []
        for tap in itertools.product(*(range(kk) for kk in k)):
            where = tuple(
                slice(t * dd, t * dd + (h - 1) * ss + 1, ss)
                for t, h, ss, dd in zip(tap, sizes, s, d, strict=True)
            )
            taps.append((tap, where))
        return taps, full

    def _crop(self, full: Shape) -> tuple[slice, ...]:
        p = self._attrs()[2]
        out = tuple(f - 2 * pp for f, pp in zip(full, p, strict=True))
        return tuple(slice(pp, pp + o) for pp, o in zip(p, out, strict=True))

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]  # (N, C, *S)
        n, c = x.shape[:2]
        g, f = self.groups, self.filters
        taps, full = self._taps(x.shape[1:])
        w = p["weight"].astype(x.dtype, copy=False).reshape(g, c // g, f // g, len(taps))
        xg = x.reshape(n, g, c // g, -1)  # (N, G, C/G, S)
        buf = np.zeros((n, g, f // g, *full), dtype=x.dtype)
        for j, (_, where) in enumerate(taps):
            contrib = np.einsum("ngcs,gcf->ngfs", xg, w[..., j])
            buf[(slice(None),) * 3 + where] += contrib.reshape(n, g, f // g, *x.shape[2:])
        y = buf.reshape(n, f, *full)[(slice(None), slice(None), *self._crop(full))]
        if self.bias:
            y = y + p["bias"].astype(x.dtype, copy=False).reshape(-1, *([1] * self.ndim))
        return np.ascontiguousarray(y), (x, full)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        x, full = cache
        n, c = x.shape[:2]
        g, f = self.groups, self.filters
        taps, _ = self._taps(x.shape[1:])
        dbuf = np.zeros((n, f, *full), dtype=dy.dtype)
        dbuf[(slice(None), slice(None), *self._crop(full))] = dy
        dbuf = dbuf.reshape(n, g, f // g, *full)
        w = p["weight"].astype(dy.dtype, copy=False).reshape(g, c // g, f // g, len(taps))
        xg = x.reshape(n, g, c // g, -1)
        dx = np.zeros_like(xg)
        dw = np.zeros(w.shape, dtype=dy.dtype)
        for j, (_, where) in enumerate(taps):
            d = dbuf[(slice(None),) * 3 + where].reshape(n, g, f // g, -1)  # (N, G, F/G, S)
            dx += np.einsum("ngfs,gcf->ngcs", d, w[..., j])
            dw[..., j] = np.einsum("ngfs,ngcs->gcf", d, xg)
        grads = {"weight": dw.reshape(p["weight"].shape)}
        if self.bias:
            grads["bias"] = dy.sum(axis=(0, *range(2, dy.ndim)))
        return [dx.reshape(x.shape)], grads

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        k, s, p, op, d = self._attrs()
        ins = [io.inputs[0], io.param("weight")]
        if self.bias:
            ins.append(io.param("bias"))
        attrs = {
            "kernel_shape": list(k),
            "strides": list(s),
            "pads": list(p) * 2,
            "output_padding": list(op),
            "dilations": list(d),
            "group": self.groups,
        }
        return [OnnxNode("ConvTranspose", tuple(ins), (io.output,), attrs)]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        _, s, pad, op, d = self._attrs()
        fn = getattr(torch.nn.functional, f"conv_transpose{self.ndim}d")
        return fn(xs[0], p["weight"], p.get("bias"), s, pad, op, self.groups, d)


class ConvTranspose2d(ConvTransposeNd):
    op: Literal["conv_transpose2d"] = "conv_transpose2d"

    ndim: ClassVar[int] = 2
    summary: ClassVar[str] = (
        f"2-D transposed convolution over [C, H, W] ({RULE}); weight (C, filters/groups, kh, kw)"
    )

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(filters=3, kernel=2, stride=2), ((2, 3, 4),)),
            Example(cls(filters=2, kernel=3, stride=2, padding=1, output_padding=1), ((3, 3, 3),)),
            Example(cls(filters=4, kernel=(3, 2), dilation=2, groups=2, bias=False), ((2, 3, 3),)),
        ]


class ConvTranspose1d(ConvTransposeNd):
    op: Literal["conv_transpose1d"] = "conv_transpose1d"

    ndim: ClassVar[int] = 1
    summary: ClassVar[str] = (
        "1-D transposed convolution over [C, L]; attributes as conv_transpose2d"
    )

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(filters=3, kernel=3, stride=2), ((2, 5),)),
            Example(cls(filters=2, kernel=4, stride=3, padding=2, output_padding=2), ((4, 4),)),
        ]
