"""Activations. Each is a few lines: its function, its derivative, its ONNX operator."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from netspec.ops.base import Array, Elementwise, Example


class Relu(Elementwise):
    op: Literal["relu"] = "relu"
    summary: ClassVar[str] = "max(0, x)"
    onnx_op: ClassVar[str] = "Relu"
    has_torch_twin: ClassVar[bool] = True

    def f(self, x: Array) -> Array:
        return np.maximum(x, 0)

    def df(self, x: Array, y: Array) -> Array:
        return (x > 0).astype(x.dtype)

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((3, 4, 4),)), Example(cls(), ((7,),))]


class Sigmoid(Elementwise):
    op: Literal["sigmoid"] = "sigmoid"
    summary: ClassVar[str] = "1 / (1 + e^-x)"
    onnx_op: ClassVar[str] = "Sigmoid"
    has_torch_twin: ClassVar[bool] = True

    def f(self, x: Array) -> Array:
        # Split by sign so exp never overflows.
        out = np.empty_like(x)
        pos = x >= 0
        out[pos] = 1 / (1 + np.exp(-x[pos]))
        ex = np.exp(x[~pos])
        out[~pos] = ex / (1 + ex)
        return out

    def df(self, x: Array, y: Array) -> Array:
        return y * (1 - y)

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((6,),), low=-5, high=5)]


class Tanh(Elementwise):
    op: Literal["tanh"] = "tanh"
    summary: ClassVar[str] = "hyperbolic tangent"
    onnx_op: ClassVar[str] = "Tanh"
    has_torch_twin: ClassVar[bool] = True

    def f(self, x: Array) -> Array:
        return np.tanh(x)

    def df(self, x: Array, y: Array) -> Array:
        return 1 - y * y

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((2, 5),), low=-3, high=3)]
