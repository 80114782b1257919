"""Token embedding: a lookup table from integer ids to learned vectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.ops.base import Array, Ctx, Example, Grads, OnnxIO, OnnxNode, Op, Params, Shape
from netspec.ops.init import Init


class Embedding(Op):
    """Row lookup in a (vocab, dim) table: int64 ids (T,) -> vectors (T, dim)."""

    op: Literal["embedding"] = "embedding"
    default_init: ClassVar[Init | None] = Init(name="normal", std=1.0)  # as PyTorch
    vocab: int = Field(ge=1)
    dim: int = Field(ge=1)

    positional: ClassVar[tuple[str, ...]] = ("vocab", "dim")
    summary: ClassVar[str] = "int64 ids [T] -> vectors [T, dim]: `embedding(vocab, dim)`"
    input_dtype: ClassVar[str] = "int64"

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        return (*inputs[0], self.dim)

    def layout(self, inputs: Sequence[Shape], layouts: Sequence[str | None]) -> str | None:
        return "TF" if len(inputs[0]) == 1 else None

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {"weight": (self.vocab, self.dim)}

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        ids = xs[0]
        check_ids(ids, self.vocab)
        return p["weight"][ids], ids  # (N, T, dim)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        ids = cache
        dw = np.zeros((self.vocab, self.dim), dtype=dy.dtype)
        # add.at, not +=: a token that occurs twice must receive both gradients.
        np.add.at(dw, ids.reshape(-1), dy.reshape(-1, self.dim))
        return [None], {"weight": dw}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        table = io.param("weight")
        return [OnnxNode("Gather", (table, io.inputs[0]), (io.output,), {"axis": 0})]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        # Ids outside the table are torch's IndexError here, not check_ids' message: a data
        # check belongs before the loop (a min/max per batch would stall a GPU).
        return torch.nn.functional.embedding(xs[0], p["weight"])

    @classmethod
    def examples(cls) -> list[Example]:
        # For integer inputs low/high is the id range [low, high).
        return [Example(cls(vocab=10, dim=4), ((6,),), low=0, high=10)]


def check_ids(ids: Array, vocab: int) -> None:
    """Refuse ids outside the table: NumPy (and ONNX's Gather) would silently wrap negative
    ones around it. The NumPy engine and the ONNX input check both call this."""
    if ids.size and (ids.min() < 0 or ids.max() >= vocab):
        raise NetspecError.at(
            f"embedding ids must lie in [0, {vocab}), got values from {ids.min()} to {ids.max()}",
            hint="check the tokeniser's vocabulary size against `embedding(vocab, ...)`",
            exit_code=EXIT_RUNTIME,
        )
