"""Normalisation and regularisation: batchnorm, AlexNet's local response norm, dropout.

All work on the channel axis 0 of per-sample (C,), (C, L) or (C, H, W) tensors, i.e. batch-first
axis 1, as PyTorch and ONNX do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

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
    channel_sums,
    expect_rank,
)


def _per_channel(a: Array, x: Array) -> Array:
    """A (C,) array shaped to broadcast against batch-first x: (C, 1, ...), in x's dtype."""
    return a.astype(x.dtype, copy=False).reshape(-1, *([1] * (x.ndim - 2)))


class BatchNorm(Op):
    """Batch normalisation (Ioffe and Szegedy 2015) with PyTorch's semantics.

    Training normalises with the batch's biased variance and moves the running statistics
    towards the batch's (unbiased) ones: running = (1 - momentum) * running + momentum * batch.
    Inference uses the running statistics.
    """

    op: Literal["batchnorm"] = "batchnorm"
    init_transparent: ClassVar[bool] = True
    eps: float = Field(default=1e-5, gt=0)
    momentum: float = Field(default=0.1, ge=0, le=1)

    category: ClassVar[str] = "norm"
    channels_first: ClassVar[bool] = True
    summary: ClassVar[str] = (
        "batch normalisation over channels: `batchnorm(eps=1e-5, momentum=0.1)`; "
        "weight, bias (C), running_mean, running_var"
    )

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        expect_rank("batchnorm", inputs[0], (1, 2, 3), "channels first")
        return inputs[0]

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        c = inputs[0][0]
        return {"weight": (c,), "bias": (c,)}

    def state_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        c = inputs[0][0]
        return {"running_mean": (c,), "running_var": (c,)}

    def initial_param(self, name: str, shape: Shape) -> Array | None:
        fill = 1.0 if name == "weight" else 0.0
        return np.full(shape, fill, dtype=np.float32)

    def initial_state(self, name: str, shape: Shape) -> Array:
        fill = 1.0 if name == "running_var" else 0.0
        return np.full(shape, fill, dtype=np.float32)

    # Every pass over the activations is the cost here (13% of a ResNet-20 step before): the
    # per-channel sums are BLAS dot products on an (N, C, S) view, the mean and variance of the
    # backward formula come from the two parameter gradients, and dx is one affine map of dy
    # and xhat. The cache is the centred x, not xhat = centred * inv_std: the scale folds into
    # the per-channel factors of y and of dx, which saves forward a pass. Forward 5 passes in
    # training (2 in inference) and backward 5, from 10 and 11 at first.

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]  # (N, C, ...)
        x3 = x.reshape(x.shape[0], x.shape[1], -1)  # (N, C, S)
        m = x3.shape[0] * x3.shape[2]  # values per channel
        weight = p["weight"].astype(x.dtype, copy=False)
        bias = p["bias"].astype(x.dtype, copy=False)
        if not ctx.train:  # running statistics: y = x * a + (bias - mean * a), two passes
            mean = p["running_mean"].astype(x.dtype, copy=False)
            var = p["running_var"].astype(x.dtype, copy=False)
            inv_std = 1 / np.sqrt(var + np.asarray(self.eps, dtype=x.dtype))  # (C,)
            a = weight * inv_std
            y = x3 * a[:, None]
            y += (bias - mean * a)[:, None]
            return y.reshape(x.shape), (x3, mean, inv_std, False)  # backward centres x itself
        mean = channel_sums(x3) / m
        centred = x3 - mean[:, None]
        var = channel_sums(centred, centred) / m  # biased: what the batch is normalised with
        unbiased = var * (m / max(m - 1, 1))
        for name, batch in (("running_mean", mean), ("running_var", unbiased)):
            run = p[name]
            run *= 1 - self.momentum
            run += self.momentum * batch
        inv_std = 1 / np.sqrt(var + np.asarray(self.eps, dtype=x.dtype))  # (C,)
        y = centred * (weight * inv_std)[:, None]  # = xhat * weight
        y += bias[:, None]
        return y.reshape(x.shape), (centred, None, inv_std, True)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        centred, mean, inv_std, train = cache  # centred (N, C, S) = xhat / inv_std
        if mean is not None:  # inference kept x and the running mean
            centred = centred - mean[:, None]
        dy3 = dy.reshape(centred.shape)
        sum_dy = channel_sums(dy3)
        sum_dy_xhat = channel_sums(dy3, centred) * inv_std
        grads = {"weight": sum_dy_xhat, "bias": sum_dy}
        scale = p["weight"].astype(dy.dtype, copy=False) * inv_std  # (C,)
        if not train:  # running statistics are constants: only the affine map remains
            return [dy * _per_channel(scale, dy)], grads
        # The mean and variance depend on every x of the channel; the standard closed form
        # dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = weight * dy,
        # whose two means are the bias and weight gradients over m.
        m = centred.shape[0] * centred.shape[2]
        dx = centred * (-scale * sum_dy_xhat * inv_std / m)[:, None]
        dx += (-scale * sum_dy / m)[:, None]
        dx += dy3 * scale[:, None]
        return [dx.reshape(dy.shape)], grads

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        ins = (
            io.inputs[0],
            io.param("weight"),
            io.param("bias"),
            io.param("running_mean"),
            io.param("running_var"),
        )
        return [OnnxNode("BatchNormalization", ins, (io.output,), {"epsilon": float(self.eps)})]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        # PyTorch's own rule, which forward follows: training normalises with the biased batch
        # variance and moves the running buffers (in place) towards the unbiased one. Unlike
        # forward it refuses a channel with a single value in training.
        return torch.nn.functional.batch_norm(
            xs[0],
            p["running_mean"],
            p["running_var"],
            p["weight"],
            p["bias"],
            training=train,
            momentum=self.momentum,
            eps=self.eps,
        )

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(), ((4,),)),
            Example(cls(momentum=0.5), ((3, 5),)),
            Example(cls(eps=1e-3), ((2, 3, 3),)),
            Example(cls(), ((2, 4, 5),)),  # 20 values per channel: the BLAS sums
        ]


def _window_sum(a: Array, before: int, after: int) -> Array:
    """For each channel c, the sum of a over channels [c - before, c + after] (zeros outside)."""
    c = a.shape[1]
    pad = [(0, 0)] * a.ndim
    pad[1] = (before + 1, after)  # one extra zero in front turns a cumsum into window sums
    cs = np.cumsum(np.pad(a, pad), axis=1)
    size = before + after + 1
    return cs[:, size : size + c] - cs[:, :c]


class Lrn(Op):
    """Local response normalisation across channels (AlexNet), as PyTorch and ONNX define it:

    y = x / (bias + alpha / size * sum of x^2 over `size` neighbouring channels)^beta.

    The size must be odd: for an even one PyTorch and ONNX centre the window differently.
    """

    op: Literal["lrn"] = "lrn"
    size: int = Field(default=5, ge=1)
    alpha: float = 1e-4
    beta: float = 0.75
    bias: float = 2.0

    positional: ClassVar[tuple[str, ...]] = ("size",)
    category: ClassVar[str] = "norm"
    summary: ClassVar[str] = (
        "local response norm across channels (AlexNet): "
        "`lrn(size=5, alpha=1e-4, beta=0.75, bias=2.0)`"
    )

    @model_validator(mode="after")
    def _odd(self) -> Lrn:
        if self.size % 2 == 0:
            raise ValueError(
                f"size must be odd, got {self.size}: PyTorch and ONNX centre even windows "
                "differently"
            )
        return self

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        expect_rank("lrn", inputs[0], (2, 3), "channels first: [C, L] or [C, H, W]")
        return inputs[0]

    def _denominator(self, x: Array) -> Array:
        half = self.size // 2
        sq = _window_sum(x * x, half, half)
        return self.bias + (self.alpha / self.size) * sq  # (N, C, ...)

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        d = self._denominator(x)
        scale = d**-self.beta
        return x * scale, (x, d, scale)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        x, d, scale = cache
        # x_j enters its own output and the denominators of every channel whose window holds it;
        # the windows are symmetric, so "every window holding j" is again j's window.
        g = dy * x * scale / d
        half = self.size // 2
        coef = 2 * self.alpha * self.beta / self.size
        return [dy * scale - coef * x * _window_sum(g, half, half)], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        attrs = {
            "size": self.size,
            "alpha": float(self.alpha),
            "beta": float(self.beta),
            "bias": float(self.bias),
        }
        if len(io.input_shapes[0]) == 3:
            return [OnnxNode("LRN", (io.inputs[0],), (io.output,), attrs)]
        # onnxruntime's LRN takes 4-D tensors only: run a (C, L) input as (C, L, 1).
        shape = io.input_shapes[0]
        as4d = io.const("lrn_4d", np.array([0, *shape, 1], dtype=np.int64))
        back = io.const("lrn_3d", np.array([0, *shape], dtype=np.int64))
        x4, y4 = io.tmp("lrn_in"), io.tmp("lrn_out")
        return [
            OnnxNode("Reshape", (io.inputs[0], as4d), (x4,)),
            OnnxNode("LRN", (x4,), (y4,), attrs),
            OnnxNode("Reshape", (y4, back), (io.output,)),
        ]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        return torch.nn.functional.local_response_norm(
            xs[0], self.size, alpha=self.alpha, beta=self.beta, k=self.bias
        )

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(), ((7, 3, 3),)),
            Example(cls(size=3, alpha=0.5, beta=0.6, bias=1.0), ((4, 5),)),
        ]


class Dropout(Op):
    """Inverted dropout: in training zero each value with probability p and scale the survivors
    by 1 / (1 - p), so inference is the identity (and disappears from the ONNX graph)."""

    op: Literal["dropout"] = "dropout"
    init_transparent: ClassVar[bool] = True
    random: ClassVar[bool] = True
    p: float = Field(default=0.5, ge=0, lt=1)

    positional: ClassVar[tuple[str, ...]] = ("p",)
    category: ClassVar[str] = "norm"
    keeps_layout: ClassVar[bool] = True
    summary: ClassVar[str] = "zero values with probability p in training only: `dropout(0.5)`"

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        return inputs[0]

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        if not ctx.train or self.p == 0:
            return x.copy(), None
        keep = ctx.rng.random(x.shape) >= self.p
        mask = keep.astype(x.dtype) / np.asarray(1 - self.p, dtype=x.dtype)
        return x * mask, mask

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        return [dy if cache is None else dy * cache], {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        return None

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        # torch's generator draws the mask; the scaling 1 / (1 - p) is forward's.
        return torch.nn.functional.dropout(xs[0], self.p, training=train)

    @classmethod
    def examples(cls) -> list[Example]:
        return [Example(cls(), ((6,),)), Example(cls(p=0.2), ((2, 3, 3),))]
