"""Per-sample normalisation: layernorm over the last axis, groupnorm over channel groups.

Neither keeps running statistics: training and inference compute the same function, so the
NumPy, ONNX and torch back ends agree in both modes. Both share one normalisation of the last
axis of a (rows, m) view and its closed-form backward (llm.c's layernorm):
dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
"""

from __future__ import annotations

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
    OpsetError,
    Params,
    Shape,
    expect_rank,
    numel,
)


def nearest_divisors(n: int, k: int, count: int = 2) -> list[int]:
    """The divisors of n closest to k (ties: the smaller first), for "try heads=4" hints."""
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return sorted(sorted(divisors, key=lambda d: (abs(d - k), d))[:count])


def normalize(x: Array, eps: float) -> tuple[Array, Array]:
    """(xhat, inv_std) of x over its last axis, biased variance, in x's dtype."""
    mean = x.mean(axis=-1, keepdims=True)
    xhat = x - mean
    var = np.mean(xhat * xhat, axis=-1, keepdims=True)
    inv_std = 1 / np.sqrt(var + np.asarray(eps, dtype=x.dtype))
    xhat *= inv_std
    return xhat, inv_std


def normalize_backward(dxhat: Array, xhat: Array, inv_std: Array) -> Array:
    """dx of normalize, given the gradient of xhat."""
    mean_d = dxhat.mean(axis=-1, keepdims=True)
    mean_dx = np.mean(dxhat * xhat, axis=-1, keepdims=True)
    return inv_std * (dxhat - mean_d - xhat * mean_dx)  # type: ignore[no-any-return]


def _ones_weights(name: str, shape: Shape) -> Array:
    """weight 1 and bias 0, as PyTorch starts its norms."""
    return np.full(shape, 1.0 if name == "weight" else 0.0, dtype=np.float32)


class LayerNorm(Op):
    """Layer normalisation (Ba et al. 2016) over the last axis, as torch.nn.LayerNorm(D)."""

    op: Literal["layernorm"] = "layernorm"
    eps: float = Field(default=1e-5, gt=0)

    positional: ClassVar[tuple[str, ...]] = ("eps",)
    init_transparent: ClassVar[bool] = True
    category: ClassVar[str] = "norm"
    summary: ClassVar[str] = (
        "normalise the last axis of each sample ([T, D]: each token): `layernorm(eps=1e-5)`; "
        "weight, bias (D)"
    )

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        return inputs[0]

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        d = inputs[0][-1]
        return {"weight": (d,), "bias": (d,)}

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        return numel(output)  # the affine map; the statistics are a few adds per value

    def initial_param(self, name: str, shape: Shape) -> Array | None:
        return _ones_weights(name, shape)

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]  # (N, ..., D)
        xhat, inv_std = normalize(x, self.eps)
        w = p["weight"].astype(x.dtype, copy=False)
        return xhat * w + p["bias"].astype(x.dtype, copy=False), (xhat, inv_std)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        xhat, inv_std = cache
        axes = tuple(range(dy.ndim - 1))
        grads = {"weight": np.sum(dy * xhat, axis=axes), "bias": dy.sum(axis=axes)}
        dx = normalize_backward(dy * p["weight"].astype(dy.dtype, copy=False), xhat, inv_std)
        return [dx], grads

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        if io.opset < 17:
            return _layernorm_decomposed(io, self.eps)
        ins = (io.inputs[0], io.param("weight"), io.param("bias"))
        attrs = {"axis": -1, "epsilon": float(self.eps)}
        return [OnnxNode("LayerNormalization", ins, (io.output,), attrs)]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        x = xs[0]
        return torch.nn.functional.layer_norm(x, (x.shape[-1],), p["weight"], p["bias"], self.eps)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(), ((5, 6),)),
            Example(cls(eps=1e-3), ((7,),)),
            Example(cls(), ((2, 3, 4),)),
        ]


def _layernorm_decomposed(io: OnnxIO, eps: float) -> list[OnnxNode]:
    """LayerNormalization before opset 17: the mean, variance and affine map spelt out."""
    x = io.inputs[0]
    axes = {"axes": [-1], "keepdims": 1}  # an attribute until opset 18: this runs below 17
    mean, centred, sq, var, std, xhat, scaled = (io.tmp(f"ln_{k}") for k in "mcsvdxw")
    nodes = [
        OnnxNode("ReduceMean", (x,), (mean,), axes),
        OnnxNode("Sub", (x, mean), (centred,)),
        OnnxNode("Mul", (centred, centred), (sq,)),
        OnnxNode("ReduceMean", (sq,), (var,), axes),
    ]
    eps_c = io.const("ln_eps", np.array(eps, dtype=np.float32))
    var_eps = io.tmp("ln_ve")
    return [
        *nodes,
        OnnxNode("Add", (var, eps_c), (var_eps,)),
        OnnxNode("Sqrt", (var_eps,), (std,)),
        OnnxNode("Div", (centred, std), (xhat,)),
        OnnxNode("Mul", (xhat, io.param("weight")), (scaled,)),
        OnnxNode("Add", (scaled, io.param("bias")), (io.output,)),
    ]


class GroupNorm(Op):
    """Group normalisation (Wu and He 2018) over [C, ...], as torch.nn.GroupNorm(groups, C):
    each sample's channels split into `groups` groups, each normalised over its channels and
    positions, then a per-channel affine map."""

    op: Literal["groupnorm"] = "groupnorm"
    groups: int = Field(ge=1)
    eps: float = Field(default=1e-5, gt=0)

    positional: ClassVar[tuple[str, ...]] = ("groups", "eps")
    init_transparent: ClassVar[bool] = True
    category: ClassVar[str] = "norm"
    summary: ClassVar[str] = (
        "normalise groups of channels of each sample: `groupnorm(groups, eps=1e-5)` over "
        "[C, ...], groups must divide C; weight, bias (C)"
    )

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = inputs[0]
        expect_rank("groupnorm", x, (1, 2, 3), "channels first")
        c = x[0]
        if c % self.groups:
            near = " or ".join(str(d) for d in nearest_divisors(c, self.groups))
            raise ShapeError(
                f"groups={self.groups} must divide the {c} channels of input {list(x)}: "
                f"{c} is not divisible by {self.groups}",
                hint=f"the nearest group counts that divide {c}: {near}",
            )
        return x

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        c = inputs[0][0]
        return {"weight": (c,), "bias": (c,)}

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        return numel(output)

    def initial_param(self, name: str, shape: Shape) -> Array | None:
        return _ones_weights(name, shape)

    def _per_channel(self, a: Array, x: Array) -> Array:
        return a.astype(x.dtype, copy=False).reshape(-1, *([1] * (x.ndim - 2)))

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]  # (N, C, ...)
        xhat, inv_std = normalize(x.reshape(x.shape[0], self.groups, -1), self.eps)
        xhat = xhat.reshape(x.shape)
        y = xhat * self._per_channel(p["weight"], x) + self._per_channel(p["bias"], x)
        return y, (xhat, inv_std)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        xhat, inv_std = cache
        axes = (0, *range(2, dy.ndim))
        grads = {"weight": np.sum(dy * xhat, axis=axes), "bias": dy.sum(axis=axes)}
        dxhat = dy * self._per_channel(p["weight"], dy)
        n, g = dy.shape[0], self.groups
        dx = normalize_backward(dxhat.reshape(n, g, -1), xhat.reshape(n, g, -1), inv_std)
        return [dx.reshape(dy.shape)], grads

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        # ONNX's GroupNormalization (opset 18) took per-group scales and was redefined in 21;
        # one LayerNormalization over (N, G, C/G * S) then a per-channel affine map is exact
        # at every opset from 17 and needs neither.
        if io.opset < 17:
            raise OpsetError("groupnorm needs opset 17 (LayerNormalization)")
        shape = io.input_shapes[0]
        m = numel(shape) // self.groups
        grouped = io.const("gn_grouped", np.array([0, self.groups, m], dtype=np.int64))
        back = io.const("gn_back", np.array([0, *shape], dtype=np.int64))
        per_channel = (shape[0], *([1] * (len(shape) - 1)))
        w = io.derived("weight_c", lambda p: p["weight"].reshape(per_channel))
        b = io.derived("bias_c", lambda p: p["bias"].reshape(per_channel))
        ones = io.const("gn_ones", np.ones(m, dtype=np.float32))
        zeros = io.const("gn_zeros", np.zeros(m, dtype=np.float32))
        x3, n3, n_, scaled = (io.tmp(f"gn_{k}") for k in ("in", "norm3", "norm", "scaled"))
        attrs = {"axis": -1, "epsilon": float(self.eps)}
        return [
            OnnxNode("Reshape", (io.inputs[0], grouped), (x3,)),
            OnnxNode("LayerNormalization", (x3, ones, zeros), (n3,), attrs),
            OnnxNode("Reshape", (n3, back), (n_,)),
            OnnxNode("Mul", (n_, w), (scaled,)),
            OnnxNode("Add", (scaled, b), (io.output,)),
        ]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        return torch.nn.functional.group_norm(xs[0], self.groups, p["weight"], p["bias"], self.eps)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(groups=2), ((4, 3, 3),)),
            Example(cls(groups=3, eps=1e-3), ((6, 5),)),
            Example(cls(groups=1), ((3, 2, 2),)),
            Example(cls(groups=4), ((4, 2),)),
        ]
