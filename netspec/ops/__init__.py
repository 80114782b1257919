"""The op registry: one import and one tuple entry per op. Nothing is scraped from globals()."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from netspec.ops.activation import (
    Clip,
    Elu,
    Gelu,
    Identity,
    LeakyRelu,
    Maxout,
    PRelu,
    Relu,
    RRelu,
    Sigmoid,
    Softmax,
    Softplus,
    Step,
    Swish,
    Tanh,
)
from netspec.ops.attention import Attention
from netspec.ops.base import Op
from netspec.ops.conv import Conv1d, Conv2d
from netspec.ops.deconv import ConvTranspose1d, ConvTranspose2d
from netspec.ops.dense import Dense
from netspec.ops.embedding import Embedding
from netspec.ops.io import Input
from netspec.ops.merge import Add, Concat, Mul
from netspec.ops.norm import BatchNorm, Dropout, Lrn
from netspec.ops.normalize import GroupNorm, LayerNorm
from netspec.ops.pool import (
    AvgPool1d,
    AvgPool2d,
    GlobalAvgPool,
    GlobalMaxPool,
    MaxPool1d,
    MaxPool2d,
)
from netspec.ops.recurrent import Bidirectional, Gru, Lstm, Rnn
from netspec.ops.resize import Upsample2d
from netspec.ops.sequence import Mean, Positional, Sinusoidal, Slice
from netspec.ops.shape import Flatten, Pad, Reshape, Transpose

OP_CLASSES: tuple[type[Op], ...] = (
    Input,
    Dense,
    Conv2d,
    Conv1d,
    ConvTranspose2d,
    ConvTranspose1d,
    MaxPool2d,
    AvgPool2d,
    MaxPool1d,
    AvgPool1d,
    GlobalAvgPool,
    GlobalMaxPool,
    Upsample2d,
    Flatten,
    Reshape,
    Transpose,
    Pad,
    Mean,
    Slice,
    Embedding,
    Positional,
    Sinusoidal,
    Attention,
    BatchNorm,
    Lrn,
    LayerNorm,
    GroupNorm,
    Dropout,
    Add,
    Mul,
    Concat,
    Relu,
    Sigmoid,
    Tanh,
    Identity,
    Step,
    LeakyRelu,
    Clip,
    PRelu,
    RRelu,
    Maxout,
    Softplus,
    Elu,
    Gelu,
    Swish,
    Softmax,
    Rnn,
    Lstm,
    Gru,
    Bidirectional,
)

OPS: dict[str, type[Op]] = {cls.kind(): cls for cls in OP_CLASSES}

if TYPE_CHECKING:
    AnyOp = Op
else:
    # A discriminated union over every registered op, keyed by the `op` field.
    AnyOp = Annotated[Union[OP_CLASSES], Field(discriminator="op")]  # noqa: UP007

__all__ = ["OPS", "OP_CLASSES", "AnyOp", "Op"]
