"""The network's inputs: a placeholder op with a declared per-sample shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from netspec.ops.base import Array, Ctx, Example, Grads, OnnxIO, OnnxNode, Op, Params, Shape


class Input(Op):
    """A graph input; its shape excludes the batch dimension, which is always implicit."""

    op: Literal["input"] = "input"
    shape: tuple[int, ...] = Field(min_length=1)
    dtype: Literal["float32", "int64"] = "float32"

    arity: ClassVar[int | None] = 0
    category: ClassVar[str] = "io"
    summary: ClassVar[str] = "network input: `input x: [C, H, W]`, or `int64[T]` for token ids"

    def model_post_init(self, __context: Any) -> None:
        if any(d < 1 for d in self.shape):
            raise ValueError(f"every dimension must be >= 1, got {list(self.shape)}")

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        return self.shape

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        return xs[0], None

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        return [dy], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        return None  # graph inputs are declared by the exporter

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        return xs[0]  # netspec.torch makes graph inputs placeholders; as forward otherwise

    @classmethod
    def examples(cls) -> list[Example]:
        return []  # not an operator one can feed: exercised by every network
