"""Ops that only rearrange: flatten, reshape, transpose, pad."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

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

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        return xs[0].flatten(1)

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((2, 3, 4),))]


class Reshape(Op):
    """View the per-sample tensor with another shape of the same size; one -1 is inferred."""

    op: Literal["reshape"] = "reshape"
    shape: tuple[int, ...] = Field(min_length=1)

    positional: ClassVar[tuple[str, ...]] = ("shape",)
    category: ClassVar[str] = "shape"
    summary: ClassVar[str] = (
        "same values, new per-sample shape: `reshape([4, 7, 7])`, one -1 allowed"
    )

    @field_validator("shape")
    @classmethod
    def _dims(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if v.count(-1) > 1 or any(d < 1 and d != -1 for d in v):
            raise ValueError(f"dimensions must be >= 1, with at most one -1; got {list(v)}")
        return v

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        total = numel(x)
        known = numel(tuple(d for d in self.shape if d != -1))
        if -1 in self.shape:
            if total % known == 0:
                return tuple(total // known if d == -1 else d for d in self.shape)
            why = f"{total} is not a multiple of {known}"
        elif known == total:
            return self.shape
        else:
            why = f"{total} values do not fit {known}"
        raise ShapeError(
            f"cannot reshape input {list(x)} to {list(self.shape)}: {why}",
            hint=f"the target must hold exactly {total} values per sample",
        )

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        return x.reshape(x.shape[0], *self.shape), x.shape

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        return [dy.reshape(cache)], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        # 0 copies the (dynamic) batch size; the rest is the resolved per-sample shape.
        shape = io.const("reshape_shape", np.array([0, *io.output_shape], dtype=np.int64))
        return [OnnxNode("Reshape", (io.inputs[0], shape), (io.output,))]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        x = xs[0]
        # The resolved shape, not a -1: an empty batch has no size to infer it from.
        return x.reshape(x.shape[0], *self.infer_shape([tuple(x.shape[1:])]))

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(shape=(3, 8)), ((2, 3, 4),)),
            Example(cls(shape=(2, -1, 3)), ((12,),)),
        ]


class Transpose(Op):
    """Permute the per-sample axes; the batch axis stays first. `transpose(perm=[1, 0])` turns
    an embedding's or RNN's [T, F] into the [C, L] that conv1d, pools and batchnorm read."""

    op: Literal["transpose"] = "transpose"
    perm: tuple[int, ...] = Field(min_length=1)

    positional: ClassVar[tuple[str, ...]] = ("perm",)
    category: ClassVar[str] = "shape"
    summary: ClassVar[str] = (
        "permute per-sample axes: `transpose(perm=[1, 0])` maps [T, F] -> [F, T]"
    )

    @field_validator("perm")
    @classmethod
    def _permutation(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if sorted(v) != list(range(len(v))):
            raise ValueError(
                f"perm must list each axis 0..{len(v) - 1} once (per-sample axes, the batch "
                f"axis excluded); got {list(v)}"
            )
        return v

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        if len(x) != len(self.perm):
            raise ShapeError(
                f"perm {list(self.perm)} permutes {len(self.perm)} axes but the input "
                f"{list(x)} has {len(x)}",
                hint="perm names every per-sample axis once, the batch axis excluded",
            )
        return tuple(x[i] for i in self.perm)

    def _axes(self) -> tuple[int, ...]:
        return (0, *(i + 1 for i in self.perm))

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        return np.ascontiguousarray(xs[0].transpose(self._axes())), None

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        return [np.ascontiguousarray(dy.transpose(np.argsort(self._axes())))], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        return [OnnxNode("Transpose", (io.inputs[0],), (io.output,), {"perm": list(self._axes())})]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        return xs[0].permute(*self._axes())

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(perm=(1, 0)), ((3, 4),)),
            Example(cls(perm=(2, 0, 1)), ((2, 3, 4),)),
        ]


class Pad(Op):
    """Constant padding of per-sample axes; `pads` is ONNX's [begin_0, ..., end_0, ...] without the
    batch axis. `pad([8, 0, 0, 8, 0, 0])` on (C, H, W) is ResNet's parameter-free shortcut."""

    op: Literal["pad"] = "pad"
    pads: tuple[int, ...] = Field(min_length=2)
    value: float = 0.0

    positional: ClassVar[tuple[str, ...]] = ("pads",)
    category: ClassVar[str] = "shape"
    summary: ClassVar[str] = (
        "constant padding, ONNX order [begins..., ends...]: `pad([8, 0, 0, 8, 0, 0], value=0.0)`"
    )

    @field_validator("pads")
    @classmethod
    def _non_negative(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) % 2 or any(d < 0 for d in v):
            raise ValueError(f"pads must be an even number of values >= 0, got {list(v)}")
        return v

    def _pairs(self, rank: int) -> list[tuple[int, int]]:
        if len(self.pads) != 2 * rank:
            raise ShapeError(
                f"pads {list(self.pads)} has {len(self.pads)} values but a {rank}-D input needs "
                f"{2 * rank} (a begin and an end per axis)"
            )
        return list(zip(self.pads[:rank], self.pads[rank:], strict=True))

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        return tuple(d + b + e for d, (b, e) in zip(x, self._pairs(len(x)), strict=True))

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        pairs = self._pairs(x.ndim - 1)
        y = np.pad(x, [(0, 0), *pairs], constant_values=self.value)
        return y, (x.shape, pairs)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        shape, pairs = cache
        inner = tuple(slice(b, b + d) for (b, _), d in zip(pairs, shape[1:], strict=True))
        return [dy[(slice(None), *inner)]], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        rank = len(io.input_shapes[0])
        pads = [0, *self.pads[:rank], 0, *self.pads[rank:]]  # the batch axis is never padded
        ins = (
            io.inputs[0],
            io.const("pads", np.array(pads, dtype=np.int64)),
            io.const("pad_value", np.array(self.value, dtype=np.float32)),
        )
        return [OnnxNode("Pad", ins, (io.output,), {"mode": "constant"})]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        x = xs[0]
        pairs = self._pairs(x.dim() - 1)
        # F.pad lists (begin, end) from the last axis backwards; the batch axis is not padded.
        flat = [v for pair in reversed(pairs) for v in pair]
        return torch.nn.functional.pad(x, flat, value=self.value)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(pads=(2, 0, 0, 2, 0, 0)), ((3, 2, 2),)),
            Example(cls(pads=(1, 2), value=-1.5), ((4,),)),
            Example(cls(pads=(0, 1, 1, 0)), ((2, 3),)),
        ]
