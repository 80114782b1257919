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

The NumPy kernel keeps the scores unnormalised, e = exp(s - shift), with r = 1 / sum(e) per row
(a = r e): the sums come out of the same product as e v (v is given a column of ones), and the
softmax's backward a * (da - sum(a * da)) takes sum(a * da) = sum(do * o), over the outputs'
d/H values rather than the S scores, as one more column of that product. Every pass over the
N*H*T*S scores that is left is a plain, unbroadcast one.
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
from netspec.ops.normalize import nearest_divisors


def causal_mask(t: int) -> Array:
    """(T, T) additive mask: -inf where a position would see a later one."""
    return np.triu(np.full((t, t), -np.inf), k=1)


# A row whose exponentials sum below this was shifted by its matrix's max far above its own: its
# matrix is redone with the row max before anything that matters underflows (1e-20 * 2^-24 is
# still a normal float32).
_TINY = 1e-20
_CHUNK = 1 << 20  # bytes of scores the backward handles at a time: about L2's size


def _scores_exp(q: Array, k: Array, causal: bool, exact: bool = False) -> Array:
    """exp(q k^T [+ causal mask] - shift) per (sample, head): softmax up to a factor per row.

    Any shift per row gives the same softmax. The fast one is each matrix's max, not each row's:
    it reads the scores as one run of T*S values (a max over 128-long rows costs 5x more), and
    the subtraction broadcasts over one loop; `exact` shifts by the row max."""
    s = q @ k.swapaxes(-1, -2)  # (N, H, T, S)
    if causal:
        s += causal_mask(s.shape[-1]).astype(s.dtype)
    s -= s.max(axis=-1 if exact else (-2, -1), keepdims=True)
    return np.exp(s, out=s)


def _weigh(e: Array, mask: Array | None, v1: Array) -> Array:
    """[(e * mask) v, sum(e)] per row, from v1 = [v, 1]: one product when nothing is dropped."""
    if mask is None:
        return e @ v1
    w = v1.shape[-1] - 1
    return np.concatenate([(e * mask) @ v1[..., :w], e @ v1[..., w:]], axis=-1)


def _through_scores(
    e: Array, mask: Array | None, g1: Array, v1: Array, q: Array, k: Array, out: tuple[Array, ...]
) -> None:
    """dq (before its scale), dk, dv into `out`, from g1 = [r * do, -r * sum(do * o)].

    A few samples at a time: each chunk's score gradient (T*S per head) is made and used while
    it is in cache, instead of passing 3 times over all N*H*T*S of them."""
    w = v1.shape[-1] - 1
    step = max(1, _CHUNK // (e[0].size * e.itemsize))
    for i in range(0, len(e), step):
        at = slice(i, i + step)
        ec, gc = e[at], g1[at]
        em = ec if mask is None else ec * mask[at]
        np.matmul(em.swapaxes(-1, -2), gc[..., :w], out=out[2][at])
        if mask is None:
            ds = gc @ v1[at].swapaxes(-1, -2)  # r * (do v^T - sum(do * o))
        else:
            ds = gc[..., :w] @ v1[at][..., :w].swapaxes(-1, -2)
            ds *= mask[at]
            ds += gc[..., w:]
        ds *= ec  # the (scaled) scores' gradient
        np.matmul(ds, k[at], out=out[0][at])
        np.matmul(ds.swapaxes(-1, -2), q[at], out=out[1][at])


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

    def _heads(self, a: Array) -> Array:
        """(N, T, D) -> (N, H, T, D/H), a view."""
        n, t, d = a.shape
        return a.reshape(n, t, self.heads, d // self.heads).transpose(0, 2, 1, 3)

    def _project(self, x: Array, memory: Array | None, p: Params) -> tuple[Array, Array, Array]:
        """q (scaled by 1/sqrt(d/H), folded into its weights: D^2 values, not N*T*D), k, v as
        (N, H, L, d/H) views of the projections: one product for self-attention."""
        d = x.shape[-1]
        scale = 1 / math.sqrt(d // self.heads)
        w = p["in_proj_weight"].astype(x.dtype, copy=True)
        w[:d] *= scale
        b = p["in_proj_bias"].astype(x.dtype, copy=True) if self.bias else None
        if b is not None:
            b[:d] *= scale
        if memory is None:
            qkv = x @ w.T  # (N, T, 3D)
            if b is not None:
                qkv += b
            return (
                self._heads(qkv[..., :d]),
                self._heads(qkv[..., d : 2 * d]),
                self._heads(qkv[..., 2 * d :]),
            )
        q, kv = x @ w[:d].T, memory @ w[d:].T  # (N, T, D), (N, S, 2D)
        if b is not None:
            q += b[:d]
            kv += b[d:]
        return self._heads(q), self._heads(kv[..., :d]), self._heads(kv[..., d:])

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]  # (N, T, D)
        memory = xs[1] if len(xs) > 1 else None  # (N, S, D)
        d = x.shape[-1]
        q, k, v = self._project(x, memory, p)
        w = d // self.heads
        v1 = np.empty((*v.shape[:-1], w + 1), dtype=x.dtype)  # [v, 1]: a v and sum(a) at once
        v1[..., :w] = v
        v1[..., w] = 1
        mask = None
        e = _scores_exp(q, k, self.causal)  # (N, H, T, S), unnormalised
        if ctx.train and self.dropout > 0:  # torch drops attention weights, not outputs
            keep = ctx.rng.random(e.shape) >= self.dropout
            mask = keep.astype(x.dtype) / np.asarray(1 - self.dropout, dtype=x.dtype)
        ol = _weigh(e, mask, v1)
        low = (ol[..., w] < _TINY).any(axis=-1)  # (N, H): a row shifted too far
        if low.any():
            at = np.nonzero(low)
            e[at] = _scores_exp(q[at][:, None], k[at][:, None], self.causal, exact=True)[:, 0]
            ol[at] = _weigh(e[at], None if mask is None else mask[at], v1[at])
        r = 1 / ol[..., w:]  # (N, H, T, 1): softmax = r * e
        o = np.empty_like(x)  # the heads side by side, written in place
        np.multiply(ol[..., :w], r, out=self._heads(o))
        y = o @ p["out_proj.weight"].astype(x.dtype, copy=False).T
        if self.bias:
            y += p["out_proj.bias"].astype(x.dtype, copy=False)
        return y, (x, memory, q, k, v1, e, r, mask, o)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        x, memory, q, k, v1, e, r, mask, o = cache
        n, t, d = x.shape
        w = d // self.heads
        w_in = p["in_proj_weight"].astype(dy.dtype, copy=False)
        grads: Grads = {"out_proj.weight": dy.reshape(-1, d).T @ o.reshape(-1, d)}
        if self.bias:
            grads["out_proj.bias"] = dy.sum(axis=(0, 1))
        do = dy @ p["out_proj.weight"].astype(dy.dtype, copy=False)  # (N, T, D)
        # softmax's backward a * (da - sum(a * da)): sum(a * da) = sum(do * o) per row (the
        # outputs' width, not the keys'), folded into the product as a last column of -r * it
        g1 = np.empty((*q.shape[:-1], w + 1), dtype=dy.dtype)  # (N, H, T, d/H + 1)
        np.multiply(self._heads(do), r, out=g1[..., :w])
        g1[..., w:] = self._heads(do * o) @ np.ones((w, 1), dtype=dy.dtype)
        g1[..., w:] *= -r
        s_len = k.shape[2]
        if memory is None:
            dqkv = np.empty((n, t, 3 * d), dtype=dy.dtype)
            dq, dk, dv = (self._heads(dqkv[..., i * d : (i + 1) * d]) for i in range(3))
        else:
            dq_, dkv = np.empty_like(x), np.empty((n, s_len, 2 * d), dtype=dy.dtype)
            dq, dk, dv = self._heads(dq_), self._heads(dkv[..., :d]), self._heads(dkv[..., d:])
        _through_scores(e, mask, g1, v1, q, k, (dq, dk, dv))
        scale = 1 / math.sqrt(w)
        dq *= np.asarray(scale, dtype=dy.dtype)  # q was scaled by it: k's gradient has it in q
        if memory is None:
            grads["in_proj_weight"] = dqkv.reshape(-1, 3 * d).T @ x.reshape(-1, d)
            if self.bias:
                grads["in_proj_bias"] = dqkv.sum(axis=(0, 1))
            return [dqkv @ w_in], grads
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
