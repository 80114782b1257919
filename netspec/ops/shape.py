"""Ops that only rearrange: flatten, reshape, pad."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

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
    numel,
)


class Flatten(Op):
    """Collapse every per-sample axis into one: [C, H, W] -> [C*H*W]."""

    op: Literal["flatten"] = "flatten"

    category: ClassVar[str] = "shape"
    summary: ClassVar[str] = "[C, H, W] -> [C*H*W]"

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        return (numel(inputs[0]),)

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        return [dy.reshape(cache)], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        return [OnnxNode("Flatten", (io.inputs[0],), (io.output,), {"axis": 1})]

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((2, 3, 4),))]
