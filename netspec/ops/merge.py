"""Ops that join several tensors: residual `add`, gating `mul` and inception `concat`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from netspec.errors import ShapeError
from netspec.ops.base import Array, Ctx, Example, Grads, OnnxIO, OnnxNode, Op, Params, Shape


def _projection(shape: Shape) -> str:
    """How to make a shortcut match: a dense for vectors, a 1x1 convolution for [C, ...]."""
    if len(shape) == 1:
        return f"project one input with `dense({shape[0]})` so both have {shape[0]} features"
    conv = "conv1d" if len(shape) == 2 else "conv2d"
    return f"project the shortcut with a 1x1 {conv}, or pad its channels with `pad`"


class Add(Op):
    """Elementwise sum of two or more tensors of one shape (ResNet's shortcut)."""

    op: Literal["add"] = "add"

    arity: ClassVar[int | None] = None
    category: ClassVar[str] = "merge"
    keeps_layout: ClassVar[bool] = True
    summary: ClassVar[str] = "elementwise sum of equal shapes: `add(a, b)`"

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        first = inputs[0]
        for i, s in enumerate(inputs[1:], start=2):
            if s != first:
                what = "channel" if len(s) == len(first) and s[1:] == first[1:] else "shape"
                raise ShapeError(
                    f"needs equal shapes: input 1 is {list(first)} but input {i} is "
                    f"{list(s)} ({what} mismatch)",
                    hint=_projection(first) if what == "channel" else None,
                )
        return first

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        y = xs[0].copy()
        for x in xs[1:]:
            y += x
        return y, len(xs)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        return [dy] * cache, {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        if len(io.inputs) == 2:
            return [OnnxNode("Add", tuple(io.inputs), (io.output,))]
        return [OnnxNode("Sum", tuple(io.inputs), (io.output,))]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        y = xs[0]
        for x in xs[1:]:  # left to right, as forward sums
            y = y + x
        return y

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((2, 3, 3), (2, 3, 3))), Example(cls(), ((4,), (4,), (4,)))]


class Mul(Op):
    """Elementwise product of two or more tensors of one shape (gates, masks, GLU-style units)."""

    op: Literal["mul"] = "mul"

    arity: ClassVar[int | None] = None
    category: ClassVar[str] = "merge"
    summary: ClassVar[str] = "elementwise product of equal shapes: `mul(a, b)`"

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        first = inputs[0]
        for i, s in enumerate(inputs[1:], start=2):
            if s != first:
                raise ShapeError(
                    f"needs equal shapes: input 1 is {list(first)} but input {i} is {list(s)}"
                )
        return first

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        return (len(inputs) - 1) * int(np.prod(output))

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        y = xs[0].copy()
        for x in xs[1:]:
            y *= x
        return y, list(xs)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        # d/dx_i is the product of the others, formed directly: dividing y by x_i fails at 0.
        dxs: list[Array | None] = []
        for i in range(len(cache)):
            g = dy.copy()
            for j, x in enumerate(cache):
                if j != i:
                    g *= x
            dxs.append(g)
        return dxs, {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        names = list(io.inputs)
        nodes = []
        acc = names[0]
        for k, name in enumerate(names[1:], start=2):
            out = io.output if k == len(names) else io.tmp("mul")
            nodes.append(OnnxNode("Mul", (acc, name), (out,)))
            acc = out
        return nodes

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        y = xs[0]
        for x in xs[1:]:
            y = y * x
        return y

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((2, 3, 3), (2, 3, 3))), Example(cls(), ((4,), (4,), (4,)))]


class Concat(Op):
    """Join tensors along an axis (per-sample axes; 0 = channels), as inception does."""

    op: Literal["concat"] = "concat"
    axis: int = 0

    arity: ClassVar[int | None] = None
    category: ClassVar[str] = "merge"
    summary: ClassVar[str] = "join along a per-sample axis (0 = channels): `concat(a, b, axis=0)`"

    def _axis(self, rank: int) -> int:
        if not -rank <= self.axis < rank:
            raise ShapeError(f"axis {self.axis} is out of range for {rank}-D inputs")
        return self.axis % rank

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        first = inputs[0]
        axis = self._axis(len(first))
        for i, s in enumerate(inputs[1:], start=2):
            rest_a = first[:axis] + first[axis + 1 :]
            rest_b = s[:axis] + s[axis + 1 :]
            if len(s) != len(first) or rest_a != rest_b:
                raise ShapeError(
                    f"joining along axis {axis} needs equal sizes on every other axis: input 1 is "
                    f"{list(first)} but input {i} is {list(s)}",
                    hint="give every branch the same stride and padding so spatial sizes agree",
                )
        return (*first[:axis], sum(s[axis] for s in inputs), *first[axis + 1 :])

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        axis = self._axis(xs[0].ndim - 1) + 1
        sizes = [x.shape[axis] for x in xs]
        return np.concatenate(xs, axis=axis), (axis, sizes)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        axis, sizes = cache
        return list(np.split(dy, np.cumsum(sizes)[:-1], axis=axis)), {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        axis = self._axis(len(io.input_shapes[0])) + 1
        return [OnnxNode("Concat", tuple(io.inputs), (io.output,), {"axis": axis})]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        return torch.cat(list(xs), dim=self._axis(xs[0].dim() - 1) + 1)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(), ((2, 3, 3), (4, 3, 3))),
            Example(cls(axis=-1), ((2, 3), (2, 1), (2, 2))),
        ]
