"""Fully connected layer: y = x W^T + b, on the last axis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

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
from netspec.ops.init import Init, InitName


class Dense(Op):
    op: Literal["dense"] = "dense"
    units: int = Field(ge=1)
    bias: bool = True
    in_features: int | None = Field(default=None, ge=1)  # inferred; checked when given
    init: InitName | None = None

    positional: ClassVar[tuple[str, ...]] = ("units",)
    summary: ClassVar[str] = "fully connected: `dense(units, bias=true)`; weight (units, in)"

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        expect_rank("dense", x, (1, 2), "features, or time steps x features")
        if self.in_features is not None and self.in_features != x[-1]:
            raise ShapeError(
                f"dense declares in_features={self.in_features} but its input has {x[-1]} "
                f"features (input shape {list(x)})",
                hint=f"change in_features to {x[-1]}, or drop it: netspec infers it",
            )
        return (*x[:-1], self.units)

    def layout(self, inputs: Sequence[Shape], layouts: Sequence[str | None]) -> str | None:
        return "TF" if len(inputs[0]) == 2 else None  # dense over time: [T, units]

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {"weight": (self.units, inputs[0][-1])}
        if self.bias:
            shapes["bias"] = (self.units,)
        return shapes

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        steps = inputs[0][0] if len(inputs[0]) == 2 else 1
        return steps * inputs[0][-1] * self.units

    def init_hint(self) -> Init | None:
        return self.init

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]  # (N, F) or (N, T, F)
        y = x @ p["weight"].T  # (N, [T,] U)
        if self.bias:
            y += p["bias"]
        return y, (x, ctx.input_grad)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        x, input_grad = cache
        x2 = x.reshape(-1, x.shape[-1])  # (N*T, F)
        dy2 = dy.reshape(-1, dy.shape[-1])  # (N*T, U)
        grads = {"weight": dy2.T @ x2}  # (U, F)
        if self.bias:
            grads["bias"] = dy2.sum(axis=0)
        return [dy @ p["weight"] if input_grad else None], grads

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        x, w = io.inputs[0], io.param("weight")
        if len(io.input_shapes[0]) == 1:  # Gemm is 2-D only, and fuses the bias
            ins = (x, w, io.param("bias")) if self.bias else (x, w)
            return [OnnxNode("Gemm", ins, (io.output,), {"transB": 1})]
        wt = io.derived("weight_t", lambda p: p["weight"].T.copy())
        if not self.bias:
            return [OnnxNode("MatMul", (x, wt), (io.output,))]
        mm = io.tmp("matmul")
        return [
            OnnxNode("MatMul", (x, wt), (mm,)),
            OnnxNode("Add", (mm, io.param("bias")), (io.output,)),
        ]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        return torch.nn.functional.linear(xs[0], p["weight"], p.get("bias"))

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(units=3), ((5,),)),
            Example(cls(units=4, bias=False), ((6,),)),
            Example(cls(units=2), ((3, 5),)),
        ]
