"""Upsampling by an integer factor, as torch.nn.Upsample (align_corners=False).

Both modes are separable linear maps, so each spatial axis is one (out, in) interpolation
matrix: y = A_h x A_w^T, and the backward pass is the transpose, dx = A_h^T dy A_w. Nearest picks
source row o // s; bilinear reads source coordinate (o + 0.5) / s - 0.5, clamped at the edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

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
)


def interpolation(size: int, scale: int, mode: str) -> Array:
    """The (size * scale, size) matrix that upsamples one axis."""
    out = np.arange(size * scale)
    a = np.zeros((size * scale, size))
    if mode == "nearest":
        a[out, out // scale] = 1.0
        return a
    src = np.maximum((out + 0.5) / scale - 0.5, 0.0)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    frac = src - lo
    np.add.at(a, (out, lo), 1 - frac)
    np.add.at(a, (out, hi), frac)
    return a


class Upsample2d(Op):
    """Upsample [C, H, W] to [C, H*scale, W*scale] (U-Net and autoencoder decoders)."""

    op: Literal["upsample2d"] = "upsample2d"
    scale: int = Field(default=2, ge=1)
    mode: Literal["nearest", "bilinear"] = "nearest"

    positional: ClassVar[tuple[str, ...]] = ("scale",)
    category: ClassVar[str] = "shape"
    summary: ClassVar[str] = (
        "upsample [C, H, W] by an integer factor, as nn.Upsample: "
        "`upsample2d(scale=2, mode=nearest|bilinear)`"
    )

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = inputs[0]
        expect_rank("upsample2d", x, (3,), "[C, H, W]")
        return (x[0], x[1] * self.scale, x[2] * self.scale)

    def _matrices(self, x: Array) -> tuple[Array, Array]:
        h, w = x.shape[2:]
        return (
            interpolation(h, self.scale, self.mode).astype(x.dtype),
            interpolation(w, self.scale, self.mode).astype(x.dtype),
        )

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        ah, aw = self._matrices(x)
        return ah @ x @ aw.T, (ah, aw)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        ah, aw = cache
        return [ah.T @ dy @ aw], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        # The forward's two matrix products, not Resize: ONNX's shape inference for Resize
        # (onnx 1.23, with or without opset 18's `axes`) loses the symbolic batch size, which
        # every exported model keeps; MatMul broadcasts A_h over (N, C) and keeps it.
        _, h, w = io.input_shapes[0]
        ah = io.const("upsample_rows", interpolation(h, self.scale, self.mode).astype(np.float32))
        awt = interpolation(w, self.scale, self.mode).T.astype(np.float32)
        rows = io.tmp("upsample_rows")
        return [
            OnnxNode("MatMul", (ah, io.inputs[0]), (rows,)),
            OnnxNode("MatMul", (rows, io.const("upsample_cols", awt)), (io.output,)),
        ]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        if self.mode == "nearest":
            return torch.nn.functional.interpolate(xs[0], scale_factor=self.scale, mode="nearest")
        return torch.nn.functional.interpolate(
            xs[0], scale_factor=self.scale, mode="bilinear", align_corners=False
        )

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(), ((2, 3, 4),)),
            Example(cls(scale=3, mode="bilinear"), ((2, 3, 2),)),
            Example(cls(mode="bilinear"), ((1, 4, 5),)),
        ]
