"""The op registry: one import and one tuple entry per op. Nothing is scraped from globals()."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from netspec.ops.activation import Relu, Sigmoid, Tanh
from netspec.ops.base import Op
from netspec.ops.dense import Dense
from netspec.ops.io import Input
from netspec.ops.merge import Add, Concat
from netspec.ops.shape import Flatten

OP_CLASSES: tuple[type[Op], ...] = (
    Input,
    Dense,
    Flatten,
    Add,
    Concat,
    Relu,
    Sigmoid,
    Tanh,
)

OPS: dict[str, type[Op]] = {cls.kind(): cls for cls in OP_CLASSES}

if TYPE_CHECKING:
    AnyOp = Op
else:
    # A discriminated union over every registered op, keyed by the `op` field.
    AnyOp = Annotated[Union[OP_CLASSES], Field(discriminator="op")]  # noqa: UP007

__all__ = ["OPS", "OP_CLASSES", "AnyOp", "Op"]
