"""Multi-head attention over [T, D] (Vaswani et al. 2017), as torch.nn.MultiheadAttention:
self-attention `attention(heads)`, or cross-attention `attention(x, memory, heads=...)`, whose
queries come from x [T, D] and keys and values from memory [S, D] (torch's kdim = vdim = D,
so the parameters are the same).

The parameters are torch's, under its names: in_proj_weight (3D, D) stacking the q, k and v
projections, in_proj_bias (3D), out_proj.weight (D, D) and out_proj.bias (D), so a state dict
maps one to one. Per head h of width d = D / heads:

    a_h = softmax(q_h k_h^T / sqrt(d) [+ causal mask]),  o_h = dropout(a_h) v_h,
    y = concat_h(o_h) Wo^T + bo,

with q = x Wq^T + bq and k, v from memory (x itself for self-attention). A key-padding mask is
not supported yet.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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
    Params,
    Shape,
    expect_rank,
)
from netspec.ops.functional import softmax
from netspec.ops.normalize import nearest_divisors


def causal_mask(t: int) -> Array:
    """(T, T) additive mask: -inf where a position would see a later one."""
    return np.triu(np.full((t, t), -np.inf), k=1)


def _rows(
    name: str, start: int, count: int, factor: float, transpose: bool
) -> Callable[[Params], Array]:
    """An ONNX initializer: rows [start, start + count) of a parameter, scaled, maybe as W^T."""

    def pick(p: Params) -> Array:
        rows = p[name][start : start + count] * factor
        return rows.T if transpose else rows

    return pick


class Attention(Op):
    """Multi-head attention with torch.nn.MultiheadAttention's parameters and numerics."""

    op: Literal["attention"] = "attention"
    heads: int = Field(ge=1)
    causal: bool = False
    dropout: float = Field(default=0.0, ge=0, lt=1)
    bias: bool = True

    positional: ClassVar[tuple[str, ...]] = ("heads",)
    extra_inputs: ClassVar[int] = 1  # the memory of a cross-attention
    summary: ClassVar[str] = (
        "multi-head attention over [T, D], as nn.MultiheadAttention: "
        "`attention(heads, causal=false, dropout=0.0, bias=true)`; cross-attention with keys "
        "and values from memory [S, D]: `attention(x, memory, heads=...)`; "
        "in_proj_weight (3D, D), in_proj_bias (3D), out_proj.weight (D, D), out_proj.bias (D)"
    )

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = inputs[0]
        expect_rank("attention", x, (2,), "[T, D]: positions by features")
        d = x[1]
        if d % self.heads:
            near = " or ".join(f"heads={h}" for h in nearest_divisors(d, self.heads))
            raise ShapeError(
                f"the feature size D={d} of input {list(x)} must split into {self.heads} "
                f"equal heads, but {d} is not divisible by {self.heads}",
                hint=f"the nearest head counts that divide {d}: {near}",
            )
        if len(inputs) > 1:
            self._check_memory(x, inputs[1])
        return x

    def _check_memory(self, x: Shape, memory: Shape) -> None:
        expect_rank("attention's memory", memory, (2,), "[S, D]: positions by features")
        if memory[1] != x[1]:
            raise ShapeError(
                f"cross-attention reads keys and values of the queries' size D={x[1]}, but "
                f"the memory {list(memory)} has {memory[1]} features",
                hint=f"project the memory with `dense({x[1]})` first",
            )
        if self.causal:
            raise ShapeError(
                "a causal mask hides later positions of the same sequence, but a "
                "cross-attention's keys are the memory's positions, not the queries'",
                hint="drop causal=true here: a decoder masks its self-attention, and its "
                "cross-attention sees all of the memory",
            )

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        d = inputs[0][1]
        shapes: dict[str, Shape] = {"in_proj_weight": (3 * d, d)}
        if self.bias:
            shapes["in_proj_bias"] = (3 * d,)
        shapes["out_proj.weight"] = (d, d)
        if self.bias:
            shapes["out_proj.bias"] = (d,)
        return shapes

    def initial_param(self, name: str, shape: Shape) -> Array | None:
        # torch starts both biases at 0; the weights get the default Glorot uniform, as torch.
        return np.zeros(shape, dtype=np.float32) if name.endswith("bias") else None

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        t, d = inputs[0]
        s = inputs[-1][0]  # keys: the memory's positions, or the queries'
        return 2 * t * d * d + 2 * s * d * d + 2 * t * s * d  # projections; q k^T and a v

    def _merge(self, g: Array) -> Array:
        """(N, H, L, D/H) -> (N, L, D): the heads side by side."""
        n, h, length, w = g.shape
        return g.transpose(0, 2, 1, 3).reshape(n, length, h * w)

    def _heads(self, a: Array) -> Array:
        """(N, T, D) -> (N, H, T, D/H)."""
        n, t, d = a.shape
        return a.reshape(n, t, self.heads, d // self.heads).transpose(0, 2, 1, 3)

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]  # (N, T, D)
        memory = xs[1] if len(xs) > 1 else None  # (N, S, D)
        n, t, d = x.shape
        w_in, w_out = (
            p[k].astype(x.dtype, copy=False) for k in ("in_proj_weight", "out_proj.weight")
        )
        b_in = p["in_proj_bias"].astype(x.dtype, copy=False) if self.bias else None
        if memory is None:
            qkv = x @ w_in.T  # (N, T, 3D): the three projections in one product
            if b_in is not None:
                qkv += b_in
            q, k, v = (self._heads(qkv[..., i * d : (i + 1) * d]) for i in range(3))
        else:
            q_, kv = x @ w_in[:d].T, memory @ w_in[d:].T  # (N, T, D), (N, S, 2D)
            if b_in is not None:
                q_ += b_in[:d]
                kv += b_in[d:]
            q, k, v = self._heads(q_), self._heads(kv[..., :d]), self._heads(kv[..., d:])
        scale = np.asarray(1 / math.sqrt(d // self.heads), dtype=x.dtype)
        # The scale goes on q (N*H*T*d/H values) rather than on the scores (N*H*T*S).
        s = (q * scale) @ k.transpose(0, 1, 3, 2)  # (N, H, T, S)
        if self.causal:
            s += causal_mask(t).astype(x.dtype)
        a = softmax(s, axis=-1)
        mask = None
        if ctx.train and self.dropout > 0:  # torch drops attention weights, not outputs
            keep = ctx.rng.random(a.shape) >= self.dropout
            mask = keep.astype(x.dtype) / np.asarray(1 - self.dropout, dtype=x.dtype)
        a_used = a if mask is None else a * mask
        o = (a_used @ v).transpose(0, 2, 1, 3).reshape(n, t, d)  # heads concatenated
        y = o @ w_out.T
        if self.bias:
            y += p["out_proj.bias"].astype(x.dtype, copy=False)
        return y, (x, memory, q, k, v, a, mask, o, scale)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        x, memory, q, k, v, a, mask, o, scale = cache
        d = x.shape[-1]
        w_in, w_out = (
            p[k_].astype(dy.dtype, copy=False) for k_ in ("in_proj_weight", "out_proj.weight")
        )
        grads: Grads = {"out_proj.weight": dy.reshape(-1, d).T @ o.reshape(-1, d)}
        do = self._heads(dy @ w_out)  # (N, H, T, d/H)
        a_used = a if mask is None else a * mask
        dv = a_used.transpose(0, 1, 3, 2) @ do
        da = do @ v.transpose(0, 1, 3, 2)  # (N, H, T, S)
        if mask is not None:
            da *= mask
        # through the softmax: a * (da - sum(da * a)), in place on da (a fresh array); the
        # scale goes on dq and dk, as it went on q, where there are fewer values than scores
        da -= np.sum(da * a, axis=-1, keepdims=True)
        da *= a
        dq, dk = da @ k, da.transpose(0, 1, 3, 2) @ q
        dq *= scale
        dk *= scale
        if self.bias:
            grads["out_proj.bias"] = dy.sum(axis=(0, 1))
        if memory is None:
            dqkv = np.concatenate([self._merge(g) for g in (dq, dk, dv)], axis=-1)  # (N, T, 3D)
            grads["in_proj_weight"] = dqkv.reshape(-1, 3 * d).T @ x.reshape(-1, d)
            if self.bias:
                grads["in_proj_bias"] = dqkv.sum(axis=(0, 1))
            return [dqkv @ w_in], grads
        dq_ = self._merge(dq)  # (N, T, D)
        dkv = np.concatenate([self._merge(dk), self._merge(dv)], axis=-1)  # (N, S, 2D)
        grads["in_proj_weight"] = np.concatenate(
            [
                dq_.reshape(-1, d).T @ x.reshape(-1, d),
                dkv.reshape(-1, 2 * d).T @ memory.reshape(-1, d),
            ]
        )
        if self.bias:
            grads["in_proj_bias"] = np.concatenate([dq_.sum(axis=(0, 1)), dkv.sum(axis=(0, 1))])
        return [dq_ @ w_in[:d], dkv @ w_in[d:]], grads

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        t, d = io.input_shapes[0]
        h = self.heads
        scale = 1 / math.sqrt(d // h)
        s = io.input_shapes[-1][0]  # the keys' positions: the memory's, or the queries'
        split = io.const("attn_heads", np.array([0, t, h, d // h], dtype=np.int64))
        split_kv = split if s == t else io.const("attn_kv", np.array([0, s, h, d // h], np.int64))
        merge = io.const("attn_merge", np.array([0, t, d], dtype=np.int64))
        nodes: list[OnnxNode] = []
        heads = []
        for i, (name, perm) in enumerate(
            (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3]))
        ):
            # The 1/sqrt(d) of the scores is folded into q's projection.
            f = scale if name == "q" else 1.0
            w = io.derived(f"w{name}", _rows("in_proj_weight", i * d, d, f, transpose=True))
            proj = io.tmp(f"attn_{name}")
            source = io.inputs[0] if name == "q" else io.inputs[-1]
            nodes.append(OnnxNode("MatMul", (source, w), (proj,)))
            if self.bias:
                b = io.derived(f"b{name}", _rows("in_proj_bias", i * d, d, f, transpose=False))
                biased = io.tmp(f"attn_{name}b")
                nodes.append(OnnxNode("Add", (proj, b), (biased,)))
                proj = biased
            split_t, head = io.tmp(f"attn_{name}4"), io.tmp(f"attn_{name}h")
            shape = split if name == "q" else split_kv
            nodes.append(OnnxNode("Reshape", (proj, shape), (split_t,)))
            nodes.append(OnnxNode("Transpose", (split_t,), (head,), {"perm": perm}))
            heads.append(head)
        scores, probs, ctx_h, ctx_t, ctx_m = (
            io.tmp(f"attn_{s}") for s in ("s", "a", "o", "ot", "om")
        )
        nodes.append(OnnxNode("MatMul", (heads[0], heads[1]), (scores,)))
        if self.causal:
            masked = io.tmp("attn_masked")
            mask = io.const("attn_causal", causal_mask(t).astype(np.float32))
            nodes.append(OnnxNode("Add", (scores, mask), (masked,)))
            scores = masked
        nodes += [
            OnnxNode("Softmax", (scores,), (probs,), {"axis": -1}),
            OnnxNode("MatMul", (probs, heads[2]), (ctx_h,)),
            OnnxNode("Transpose", (ctx_h,), (ctx_t,), {"perm": [0, 2, 1, 3]}),
            OnnxNode("Reshape", (ctx_t, merge), (ctx_m,)),
        ]
        wo = io.derived("wo", lambda p: p["out_proj.weight"].T)
        if not self.bias:
            return [*nodes, OnnxNode("MatMul", (ctx_m, wo), (io.output,))]
        out = io.tmp("attn_out")
        return [
            *nodes,
            OnnxNode("MatMul", (ctx_m, wo), (out,)),
            OnnxNode("Add", (out, io.param("out_proj.bias")), (io.output,)),
        ]

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        x = xs[0]
        n, t, d = x.shape
        linear = torch.nn.functional.linear
        w, b = p["in_proj_weight"], p.get("in_proj_bias")

        def heads(a: Any) -> Any:
            return a.reshape(n, a.shape[1], self.heads, d // self.heads).transpose(1, 2)

        if len(xs) == 1:
            q, k, v = (heads(c) for c in linear(x, w, b).split(d, dim=-1))
        else:
            q = heads(linear(x, w[:d], None if b is None else b[:d]))
            kv = linear(xs[1], w[d:], None if b is None else b[d:])
            k, v = (heads(c) for c in kv.split(d, dim=-1))
        s = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        if self.causal:
            s = s + torch.tensor(causal_mask(t), dtype=x.dtype, device=x.device)
        a = torch.softmax(s, dim=-1)
        a = torch.nn.functional.dropout(a, self.dropout, training=train)
        o = (a @ v).transpose(1, 2).reshape(n, t, d)
        return torch.nn.functional.linear(o, p["out_proj.weight"], p.get("out_proj.bias"))

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(heads=2, dropout=0.3), ((4, 6),)),
            Example(cls(heads=2), ((5, 4),)),
            Example(cls(heads=3, causal=True), ((4, 6),)),
            Example(cls(heads=1, bias=False), ((3, 5),)),
            Example(cls(heads=2), ((4, 6), (3, 6))),  # cross-attention: S != T
            Example(cls(heads=3, bias=False, dropout=0.2), ((2, 6), (5, 6))),
        ]
