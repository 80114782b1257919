"""Activations. Most are a few lines: their function, their derivative, their ONNX operator.

The ones with parameters (prelu), randomness (rrelu) or a reduction (maxout, softmax) are full ops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from netspec.errors import ShapeError
from netspec.ops.base import (
    Array,
    Ctx,
    Elementwise,
    Example,
    Grads,
    OnnxIO,
    OnnxNode,
    Op,
    Params,
    Shape,
    expect_rank,
)
from netspec.ops.functional import normal_cdf, sigmoid, softmax


def _scalar(io: OnnxIO, hint: str, value: float) -> str:
    return io.const(hint, np.array(value, dtype=np.float32))


class Identity(Elementwise):
    op: Literal["identity"] = "identity"
    summary: ClassVar[str] = "y = x (a named no-op)"
    onnx_op: ClassVar[str] = "Identity"

    def f(self, x: Array) -> Array:
        return x.copy()  # a fresh array: the executor may accumulate into outputs in place

    def df(self, x: Array, y: Array) -> Array:
        return np.ones_like(x)

    def torch_f(self, torch: Any, x: Any) -> Any:
        return x

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((2, 3),))]


class Step(Elementwise):
    """Heaviside step, the perceptron's activation: 1 if x > 0 else 0.

    Its true derivative is zero almost everywhere, so backward passes dy straight through
    (the straight-through estimator, dx = dy); the perceptron learning rule itself belongs to
    the trainer, not to this op.
    """

    op: Literal["step"] = "step"
    summary: ClassVar[str] = "1 if x > 0 else 0 (perceptron); backward is straight-through"
    differentiable: ClassVar[bool] = False

    def f(self, x: Array) -> Array:
        return (x > 0).astype(x.dtype)

    def df(self, x: Array, y: Array) -> Array:
        return np.ones_like(x)

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        # Relu(Sign(x)) is exactly 1 for x > 0 and 0 otherwise, and keeps the dtype.
        sign = io.tmp("sign")
        return [
            OnnxNode("Sign", (io.inputs[0],), (sign,)),
            OnnxNode("Relu", (sign,), (io.output,)),
        ]

    def torch_f(self, torch: Any, x: Any) -> Any:
        # Straight through: the value is exactly the step (x - x.detach() is exactly 0) and the
        # gradient is dy, as backward's. (x + (step - x).detach() would round the 1s.)
        return (x > 0).to(x.dtype) + (x - x.detach())

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((6,),)), Example(cls(), ((2, 3, 3),))]


class Relu(Elementwise):
    op: Literal["relu"] = "relu"
    rectifier: ClassVar[bool] = True
    commutes_with_max: ClassVar[bool] = True
    summary: ClassVar[str] = "max(0, x)"
    onnx_op: ClassVar[str] = "Relu"

    def f(self, x: Array) -> Array:
        return np.maximum(x, 0)

    def df(self, x: Array, y: Array) -> Array:
        return (x > 0).astype(x.dtype)

    # x > 0 exactly where y > 0: the cache is y alone, and backward multiplies dy by that mask
    # as booleans, without a float copy of it (a ResNet-20 activation (32, 16, 32, 32),
    # interleaved: 0.86 -> 0.63 ms), and the tape holds one array instead of two.
    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        y = np.maximum(xs[0], 0)
        return y, y

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        return [np.multiply(dy, cache > 0)], {}

    def torch_f(self, torch: Any, x: Any) -> Any:
        return torch.relu(x)  # gradient 0 at the kink, as df

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((3, 4, 4),)), Example(cls(), ((7,),))]


class LeakyRelu(Elementwise):
    op: Literal["leaky_relu"] = "leaky_relu"
    rectifier: ClassVar[bool] = True
    alpha: float = 0.01

    positional: ClassVar[tuple[str, ...]] = ("alpha",)
    summary: ClassVar[str] = "x if x > 0 else alpha * x: `leaky_relu(alpha=0.01)`"
    onnx_op: ClassVar[str] = "LeakyRelu"

    def f(self, x: Array) -> Array:
        return np.where(x > 0, x, self.alpha * x)

    def df(self, x: Array, y: Array) -> Array:
        return np.where(x > 0, 1, self.alpha).astype(x.dtype)

    def onnx_attrs(self) -> dict[str, Any]:
        return {"alpha": float(self.alpha)}

    def torch_f(self, torch: Any, x: Any) -> Any:
        return torch.nn.functional.leaky_relu(x, self.alpha)  # slope alpha at 0, as df

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((8,),)), Example(cls(alpha=0.2), ((2, 3, 3),))]


class Clip(Elementwise):
    """x limited to [min, max], ONNX's Clip; either bound may be left open. `clip(0, 6)` is
    ReLU6, which MobileNet's exports write as Clip."""

    op: Literal["clip"] = "clip"
    min: float | None = None
    max: float | None = None

    positional: ClassVar[tuple[str, ...]] = ("min", "max")
    summary: ClassVar[str] = "x limited to [min, max], either open: `clip(0, 6)` is ReLU6"
    onnx_op: ClassVar[str] = "Clip"

    @model_validator(mode="after")
    def _bounds(self) -> Clip:
        if self.min is None and self.max is None:
            raise ValueError("clip needs min, max or both, e.g. clip(0, 6)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"clip's min must not exceed its max; got min={self.min}, max={self.max}"
            )
        return self

    def f(self, x: Array) -> Array:
        return np.clip(x, self.min, self.max).astype(x.dtype, copy=False)

    def df(self, x: Array, y: Array) -> Array:
        # torch.clamp's: the gradient passes where the bounds hold, ends included.
        inside = np.ones(x.shape, dtype=bool)
        if self.min is not None:
            inside &= x >= self.min
        if self.max is not None:
            inside &= x <= self.max
        return inside.astype(x.dtype)

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        if io.opset < 11:  # the bounds were attributes before opset 11
            given = {"min": self.min, "max": self.max}
            attrs = {k: float(v) for k, v in given.items() if v is not None}
            return [OnnxNode("Clip", (io.inputs[0],), (io.output,), attrs)]
        bounds = [
            "" if v is None else _scalar(io, name, float(v))
            for name, v in (("clip_min", self.min), ("clip_max", self.max))
        ]
        while bounds and not bounds[-1]:
            bounds.pop()
        return [OnnxNode("Clip", (io.inputs[0], *bounds), (io.output,))]

    def torch_f(self, torch: Any, x: Any) -> Any:
        return torch.clamp(x, self.min, self.max)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(min=0.0, max=6.0), ((3, 4, 4),)),
            Example(cls(min=-0.5), ((7,),)),
            Example(cls(max=0.25), ((2, 5),)),
        ]


class PRelu(Op):
    """Leaky relu with a learned slope, one shared or one per channel (axis 0); starts at 0.25."""

    op: Literal["prelu"] = "prelu"
    rectifier: ClassVar[bool] = True
    channels: Literal["shared", "per_channel"] = "shared"

    category: ClassVar[str] = "activation"
    summary: ClassVar[str] = (
        "leaky relu with a learned slope (init 0.25): `prelu(channels=shared|per_channel)`"
    )

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        return inputs[0]

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {"slope": (inputs[0][0],) if self.channels == "per_channel" else (1,)}

    def initial_param(self, name: str, shape: Shape) -> Array | None:
        return np.full(shape, 0.25, dtype=np.float32)

    def _slope(self, a: Array, rank: int) -> Array:
        """The slope shaped to broadcast against a per-sample tensor of this rank."""
        return a.reshape(-1, *([1] * (rank - 1)))

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        a = self._slope(p["slope"].astype(x.dtype, copy=False), x.ndim - 1)  # (C|1, 1, ...)
        return np.where(x > 0, x, a * x), x

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        x = cache
        a = self._slope(p["slope"].astype(x.dtype, copy=False), x.ndim - 1)
        neg = x <= 0
        dx = np.where(neg, a * dy, dy)
        da = np.where(neg, dy * x, 0)
        if self.channels == "per_channel":
            da = da.sum(axis=(0, *range(2, x.ndim)))  # (C,)
        else:
            da = da.sum().reshape(1)
        return [dx], {"slope": da}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        rank = len(io.input_shapes[0])
        # ONNX broadcasts the slope from the right: (C,) must become (C, 1, 1) for (N, C, H, W).
        slope = io.derived("slope_b", lambda p: self._slope(p["slope"], rank).copy())
        return [OnnxNode("PRelu", (io.inputs[0], slope), (io.output,))]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        # F.prelu's slope is (C,) on axis 1 or (1,) shared, as ours; x <= 0 takes the slope.
        return torch.nn.functional.prelu(xs[0], p["slope"])

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(), ((6,),)),
            Example(cls(channels="per_channel"), ((3, 2, 2),)),
            Example(cls(channels="per_channel"), ((5,),)),
        ]


class RRelu(Op):
    """Randomised leaky relu: in training each negative element gets a slope drawn uniformly from
    [lower, upper]; at inference the fixed mean slope (lower + upper) / 2 (as PyTorch)."""

    op: Literal["rrelu"] = "rrelu"
    rectifier: ClassVar[bool] = True
    random: ClassVar[bool] = True
    lower: float = Field(default=1 / 8, ge=0)
    upper: float = Field(default=1 / 3, ge=0)

    category: ClassVar[str] = "activation"
    summary: ClassVar[str] = (
        "leaky relu, slope ~ U[lower, upper] in training, the mean at inference: "
        "`rrelu(lower=1/8, upper=1/3)`"
    )

    @model_validator(mode="after")
    def _ordered(self) -> RRelu:
        if self.lower > self.upper:
            raise ValueError(f"lower ({self.lower}) must not exceed upper ({self.upper})")
        return self

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        return inputs[0]

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        if ctx.train:
            a = ctx.rng.uniform(self.lower, self.upper, size=x.shape).astype(x.dtype)
        else:
            a = np.asarray((self.lower + self.upper) / 2, dtype=x.dtype)
        # Cached: backward needs the same draw. At x = 0 the slope is a, as in torch (and in
        # leaky_relu here): the gradient at the kink is the negative side's.
        slope = np.where(x > 0, 1, a).astype(x.dtype)
        return x * slope, slope

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        return [dy * cache], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        alpha = float((self.lower + self.upper) / 2)
        return [OnnxNode("LeakyRelu", (io.inputs[0],), (io.output,), {"alpha": alpha})]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        # Training draws the slopes from torch's generator (x <= 0 too, as forward); inference
        # is leaky relu with the mean slope.
        return torch.nn.functional.rrelu(xs[0], self.lower, self.upper, training=train)

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((7,),)), Example(cls(lower=0.1, upper=0.3), ((2, 3, 3),))]


class Maxout(Op):
    """Maxout (Goodfellow et al. 2013): groups of k consecutive units along axis 0 (the features of
    a 1-D input, the channels of a (C, H, W) one) are reduced to their maximum."""

    op: Literal["maxout"] = "maxout"
    rectifier: ClassVar[bool] = True
    k: int = Field(ge=1)

    positional: ClassVar[tuple[str, ...]] = ("k",)
    category: ClassVar[str] = "activation"
    summary: ClassVar[str] = "max over groups of k units or channels: `maxout(k)`; [C] -> [C/k]"

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        expect_rank("maxout", x, (1, 3), "features, or channels x height x width")
        if x[0] % self.k:
            what = "features" if len(x) == 1 else "channels"
            raise ShapeError(
                f"the {what} (axis 0) must split into groups of k={self.k}, but input "
                f"{list(x)} has {x[0]}, which leaves {x[0] % self.k} over",
                hint=f"make the previous layer's width a multiple of {self.k}",
            )
        return (x[0] // self.k, *x[1:])

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        n, c, rest = x.shape[0], x.shape[1], x.shape[2:]
        groups = x.reshape(n, c // self.k, self.k, *rest)  # (N, C/k, k, ...)
        idx = groups.argmax(axis=2)[:, :, None]  # (N, C/k, 1, ...)
        y = np.take_along_axis(groups, idx, axis=2)[:, :, 0]
        return y, (idx, groups.shape, x.shape)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        idx, gshape, xshape = cache
        dg = np.zeros(gshape, dtype=dy.dtype)
        np.put_along_axis(dg, idx, dy[:, :, None], axis=2)  # the winner of each group takes dy
        return [dg.reshape(xshape)], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        c, *rest = io.input_shapes[0]
        shape = io.const("maxout_shape", np.array([0, c // self.k, self.k, *rest], np.int64))
        grouped = io.tmp("maxout_groups")
        nodes = [OnnxNode("Reshape", (io.inputs[0], shape), (grouped,))]
        if io.opset >= 18:  # ReduceMax's axes moved from an attribute to an input
            axes = io.const("maxout_axes", np.array([2], np.int64))
            nodes.append(OnnxNode("ReduceMax", (grouped, axes), (io.output,), {"keepdims": 0}))
        else:
            nodes.append(
                OnnxNode("ReduceMax", (grouped,), (io.output,), {"axes": [2], "keepdims": 0})
            )
        return nodes

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        x = xs[0]
        groups = x.reshape(x.shape[0], x.shape[1] // self.k, self.k, *x.shape[2:])
        # max(dim), not amax: the gradient goes to one winner per group (amax splits ties).
        return groups.max(dim=2).values

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(k=2), ((6,),)), Example(cls(k=3), ((6, 2, 2),))]


class Sigmoid(Elementwise):
    op: Literal["sigmoid"] = "sigmoid"
    summary: ClassVar[str] = "1 / (1 + e^-x)"
    onnx_op: ClassVar[str] = "Sigmoid"

    def f(self, x: Array) -> Array:
        return sigmoid(x)

    def df(self, x: Array, y: Array) -> Array:
        return y * (1 - y)

    def torch_f(self, torch: Any, x: Any) -> Any:
        return torch.sigmoid(x)

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((6,),), low=-5, high=5)]


class Tanh(Elementwise):
    op: Literal["tanh"] = "tanh"
    summary: ClassVar[str] = "hyperbolic tangent"
    onnx_op: ClassVar[str] = "Tanh"

    def f(self, x: Array) -> Array:
        return np.tanh(x)

    def df(self, x: Array, y: Array) -> Array:
        return 1 - y * y

    def torch_f(self, torch: Any, x: Any) -> Any:
        return torch.tanh(x)

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((2, 5),), low=-3, high=3)]


class Softplus(Elementwise):
    op: Literal["softplus"] = "softplus"
    summary: ClassVar[str] = "log(1 + e^x), a smooth relu"
    onnx_op: ClassVar[str] = "Softplus"

    def f(self, x: Array) -> Array:
        return np.logaddexp(0, x).astype(x.dtype, copy=False)  # never overflows

    def df(self, x: Array, y: Array) -> Array:
        return sigmoid(x)

    def torch_f(self, torch: Any, x: Any) -> Any:
        # Not F.softplus: it returns x itself above x = 20 (off by e^-20), and its exp
        # overflows for a large threshold. logaddexp is forward's formula.
        return torch.logaddexp(x, torch.zeros_like(x))

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((6,),), low=-5, high=5)]


class Elu(Elementwise):
    op: Literal["elu"] = "elu"
    rectifier: ClassVar[bool] = True
    alpha: float = 1.0

    positional: ClassVar[tuple[str, ...]] = ("alpha",)
    summary: ClassVar[str] = "x if x > 0 else alpha * (e^x - 1): `elu(alpha=1.0)`"
    onnx_op: ClassVar[str] = "Elu"

    def f(self, x: Array) -> Array:
        # expm1 of min(x, 0): the discarded branch must not overflow either.
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))

    def df(self, x: Array, y: Array) -> Array:
        return np.where(x > 0, 1, y + self.alpha).astype(x.dtype)

    def onnx_attrs(self) -> dict[str, Any]:
        return {"alpha": float(self.alpha)}

    def torch_f(self, torch: Any, x: Any) -> Any:
        return torch.nn.functional.elu(x, self.alpha)

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((6,),)), Example(cls(alpha=0.5), ((2, 3, 3),))]


def _phi(x: Array) -> Array:
    """The standard normal CDF, 0.5 * (1 + erf(x / sqrt 2)), in x's dtype."""
    return normal_cdf(x)


class Gelu(Elementwise):
    """GELU, the exact form x * Phi(x) with the normal CDF Phi (not the tanh approximation)."""

    op: Literal["gelu"] = "gelu"
    rectifier: ClassVar[bool] = True
    summary: ClassVar[str] = "x * Phi(x), the exact (erf) form"

    def f(self, x: Array) -> Array:
        return x * _phi(x)

    def df(self, x: Array, y: Array) -> Array:
        return _phi(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)

    # forward keeps Phi(x) for backward rather than y: erf is the costly part, computed once.
    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        cdf = _phi(x)
        return x * cdf, (x, cdf)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        x, cdf = cache
        g = x * x  # dx = dy * (Phi(x) + x * phi(x)), in place on one temporary
        g *= -0.5
        np.exp(g, out=g)
        g *= 1 / math.sqrt(2 * math.pi)
        g *= x
        g += cdf
        g *= dy
        return [g], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        x = io.inputs[0]
        if io.opset >= 20:
            return [OnnxNode("Gelu", (x,), (io.output,))]
        scaled, e, e1, xe = (io.tmp(h) for h in ("gelu_scaled", "gelu_erf", "gelu_1p", "gelu_x"))
        return [
            OnnxNode("Mul", (x, _scalar(io, "inv_sqrt2", 1 / math.sqrt(2))), (scaled,)),
            OnnxNode("Erf", (scaled,), (e,)),
            OnnxNode("Add", (e, _scalar(io, "one", 1.0)), (e1,)),
            OnnxNode("Mul", (x, e1), (xe,)),
            OnnxNode("Mul", (xe, _scalar(io, "half", 0.5)), (io.output,)),
        ]

    def torch_f(self, torch: Any, x: Any) -> Any:
        return torch.nn.functional.gelu(x, approximate="none")

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((8,),), low=-4, high=4), Example(cls(), ((2, 3, 3),))]


class Swish(Elementwise):
    """Swish, also known as SiLU: x * sigmoid(x)."""

    op: Literal["swish"] = "swish"
    rectifier: ClassVar[bool] = True
    summary: ClassVar[str] = "x * sigmoid(x) (SiLU)"

    def f(self, x: Array) -> Array:
        return x * sigmoid(x)

    def df(self, x: Array, y: Array) -> Array:
        s = sigmoid(x)
        return s * (1 + x * (1 - s))

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        s = io.tmp("swish_sigmoid")
        return [
            OnnxNode("Sigmoid", (io.inputs[0],), (s,)),
            OnnxNode("Mul", (io.inputs[0], s), (io.output,)),
        ]

    def torch_f(self, torch: Any, x: Any) -> Any:
        return torch.nn.functional.silu(x)

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((6,),), low=-5, high=5)]


class Softmax(Op):
    """exp(x) / sum(exp(x)) along one per-sample axis, shifted by the max so exp never overflows."""

    op: Literal["softmax"] = "softmax"
    axis: int = -1

    category: ClassVar[str] = "activation"
    summary: ClassVar[str] = "normalised exponentials along a per-sample axis: `softmax(axis=-1)`"

    def _axis(self, rank: int) -> int:
        if not -rank <= self.axis < rank:
            raise ShapeError(f"softmax axis {self.axis} is out of range for {rank}-D inputs")
        return self.axis % rank

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        self._axis(len(inputs[0]))
        return inputs[0]

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        axis = self._axis(x.ndim - 1) + 1
        y = softmax(x, axis)
        return y, (y, axis)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        y, axis = cache
        return [y * (dy - (dy * y).sum(axis=axis, keepdims=True))], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        axis = self._axis(len(io.input_shapes[0])) + 1
        # From opset 13 (the exporter's minimum) Softmax normalises along this one axis only.
        return [OnnxNode("Softmax", (io.inputs[0],), (io.output,), {"axis": axis})]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        return torch.softmax(xs[0], dim=self._axis(xs[0].dim() - 1) + 1)

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((5,),), low=-3, high=3), Example(cls(axis=0), ((3, 2, 2),))]
