"""Ops around sequence models over [T, D]: positions (learned or sinusoidal), mean pooling and
slicing (a class token)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

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
)
from netspec.ops.init import Init


class Mean(Op):
    """The mean over one per-sample axis, which disappears: [T, D] -> [D] with axis=0 (the
    sequence pooling of a classifier head)."""

    op: Literal["mean"] = "mean"
    axis: int

    positional: ClassVar[tuple[str, ...]] = ("axis",)
    category: ClassVar[str] = "shape"
    summary: ClassVar[str] = (
        "average over one per-sample axis, removing it: `mean(0)` on [T, D] gives [D]"
    )

    def _axis(self, rank: int) -> int:
        if not -rank <= self.axis < rank:
            raise ShapeError(
                f"axis {self.axis} is out of range for a {rank}-D input "
                f"(per-sample axes {-rank}..{rank - 1})"
            )
        return self.axis % rank

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = inputs[0]
        axis = self._axis(len(x))
        return x[:axis] + x[axis + 1 :]

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        axis = self._axis(x.ndim - 1) + 1
        return x.mean(axis=axis), (x.shape, axis)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        shape, axis = cache
        dx = np.broadcast_to(np.expand_dims(dy / shape[axis], axis), shape)
        return [np.ascontiguousarray(dx)], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        axis = self._axis(len(io.input_shapes[0])) + 1
        if io.opset >= 18:  # ReduceMean's axes moved from an attribute to an input
            axes = io.const("mean_axes", np.array([axis], dtype=np.int64))
            return [OnnxNode("ReduceMean", (io.inputs[0], axes), (io.output,), {"keepdims": 0})]
        attrs = {"axes": [axis], "keepdims": 0}
        return [OnnxNode("ReduceMean", (io.inputs[0],), (io.output,), attrs)]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        x = xs[0]
        return x.mean(dim=self._axis(x.dim() - 1) + 1)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(axis=0), ((5, 4),)),
            Example(cls(axis=-1), ((3, 2, 4),)),
            Example(cls(axis=1), ((2, 3, 4),)),
        ]


def _sequence(op: str, x: Shape, max_len: int | None = None) -> None:
    expect_rank(op, x, (2,), "[T, D]: positions by features")
    if max_len is not None and x[0] > max_len:
        raise ShapeError(
            f"the sequence has {x[0]} positions but positional(max_len={max_len}) has a "
            f"vector for {max_len} only (input {list(x)})",
            hint=f"raise max_len to at least {x[0]}",
        )


class Positional(Op):
    """Learned absolute positions (BERT, GPT-2): x[t] + weight[t] for the first T rows of a
    (max_len, D) table; any length up to max_len runs."""

    op: Literal["positional"] = "positional"
    max_len: int = Field(ge=1)
    # GPT-2 and BERT start positions at normal(0, 0.02).
    default_init: ClassVar[Init | None] = Init(name="normal", std=0.02)

    positional: ClassVar[tuple[str, ...]] = ("max_len",)
    category: ClassVar[str] = "layer"
    summary: ClassVar[str] = (
        "add a learned vector per position to [T, D]: `positional(max_len)`; weight (max_len, D)"
    )

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        _sequence("positional", inputs[0], self.max_len)
        return inputs[0]

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {"weight": (self.max_len, inputs[0][1])}

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        t = x.shape[1]
        return x + p["weight"][:t].astype(x.dtype, copy=False), t

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        dw = np.zeros(p["weight"].shape, dtype=dy.dtype)
        dw[:cache] = dy.sum(axis=0)
        return [dy], {"weight": dw}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        t = io.input_shapes[0][0]
        rows = io.derived("weight_rows", lambda p: p["weight"][:t])
        return [OnnxNode("Add", (io.inputs[0], rows), (io.output,))]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        x = xs[0]
        return x + p["weight"][: x.shape[1]]

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(max_len=8), ((5, 4),)), Example(cls(max_len=3), ((3, 6),))]


def sinusoids(t: int, d: int) -> Array:
    """Vaswani et al.'s table: PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(same)."""
    pos = np.arange(t, dtype=np.float64)[:, None]
    freq = np.exp(-math.log(10000.0) * np.arange(0, d, 2, dtype=np.float64) / d)  # (ceil(d/2),)
    pe = np.zeros((t, d))
    pe[:, 0::2] = np.sin(pos * freq)
    pe[:, 1::2] = np.cos(pos * freq[: d // 2])
    return pe


class Sinusoidal(Op):
    """Fixed sinusoidal positions (Vaswani et al. 2017) added to [T, D]: no parameters, any T."""

    op: Literal["sinusoidal"] = "sinusoidal"

    category: ClassVar[str] = "layer"
    summary: ClassVar[str] = "add the fixed sin/cos position table of Vaswani et al. to [T, D]"

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        _sequence("sinusoidal", inputs[0])
        return inputs[0]

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        return x + sinusoids(*x.shape[1:]).astype(x.dtype), None

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        return [dy], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        table = io.const("sinusoids", sinusoids(*io.input_shapes[0]).astype(np.float32))
        return [OnnxNode("Add", (io.inputs[0], table), (io.output,))]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        x = xs[0]
        table = torch.tensor(sinusoids(*x.shape[1:]), dtype=x.dtype, device=x.device)
        return x + table

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((5, 4),)), Example(cls(), ((3, 7),))]


class Slice(Op):
    """Positions [start, end) of one per-sample axis, Python's way (negative counts from the
    end; end=None runs to it): `slice(0, 1)` keeps a ViT's class token, [T, D] -> [1, D]."""

    op: Literal["slice"] = "slice"
    start: int = 0
    end: int | None = None
    axis: int = 0

    positional: ClassVar[tuple[str, ...]] = ("start", "end")
    category: ClassVar[str] = "shape"
    summary: ClassVar[str] = (
        "positions [start, end) of a per-sample axis, negative from the end: "
        "`slice(0, 1, axis=0)` keeps the first token"
    )

    def _bounds(self, x: Shape) -> tuple[int, int, int]:
        rank = len(x)
        if not -rank <= self.axis < rank:
            raise ShapeError(f"axis {self.axis} is out of range for a {rank}-D input {list(x)}")
        axis = self.axis % rank
        lo, hi, _ = slice(self.start, self.end).indices(x[axis])
        if hi <= lo:
            raise ShapeError(
                f"slice({self.start}, {self.end}) keeps nothing of axis {axis} of input "
                f"{list(x)} (size {x[axis]})",
                hint=f"start and end must select positions within 0..{x[axis] - 1}",
            )
        return axis, lo, hi

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = inputs[0]
        axis, lo, hi = self._bounds(x)
        return (*x[:axis], hi - lo, *x[axis + 1 :])

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        axis, lo, hi = self._bounds(x.shape[1:])
        index = (slice(None),) * (axis + 1) + (slice(lo, hi),)
        return np.ascontiguousarray(x[index]), (x.shape, index)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        shape, index = cache
        dx = np.zeros(shape, dtype=dy.dtype)
        dx[index] = dy
        return [dx], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        axis, lo, hi = self._bounds(io.input_shapes[0])
        ins = (
            io.inputs[0],
            io.const("slice_start", np.array([lo], dtype=np.int64)),
            io.const("slice_end", np.array([hi], dtype=np.int64)),
            io.const("slice_axis", np.array([axis + 1], dtype=np.int64)),
        )
        return [OnnxNode("Slice", ins, (io.output,))]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        x = xs[0]
        axis, lo, hi = self._bounds(tuple(x.shape[1:]))
        return x.narrow(axis + 1, lo, hi - lo)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(start=0, end=1), ((5, 4),)),
            Example(cls(start=-3, axis=-1), ((2, 6),)),
            Example(cls(start=1, end=-1, axis=1), ((2, 5, 3),)),
        ]
