"""Recurrent layers: Elman `rnn`, `lstm`, `gru`, and `bidirectional(layer)`.

Parameters use PyTorch's layout and gate order (`weight_ih` (G*H, F), `weight_hh` (G*H, H),
`bias_ih`, `bias_hh`; LSTM i,f,g,o; GRU r,z,n), so torch parity is a copy. The NumPy scan does
one matmul for the input projection of every time step, then loops over time only; backward is
BPTT over the same loop. ONNX's gate orders differ and are reordered into derived initializers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo

from netspec.callform import dsl
from netspec.errors import ShapeError, suggest
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
    Workspace,
    numel,
)
from netspec.ops.functional import sigmoid
from netspec.ops.init import Init, InitName

WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _expect_sequence(x: Shape) -> None:
    if len(x) != 2:
        hint = "`reshape` it to [time, features]"
        if len(x) == 3:
            hint += f" (an image's rows as steps: [{x[1]}, {x[0] * x[2]}])"
        raise ShapeError(
            f"expects a 2-D input per sample (time steps x features), got {list(x)}",
            hint=hint + "; or `flatten` it and use `dense` if it is not a sequence",
        )


class _Recurrent(Op):
    """Shared scan, BPTT and ONNX lowering.

    A subclass gives one step and its derivative, or (the LSTM) its own scan and scan_back;
    either way the cache holds the (N, T, H) hidden states second, which seq_grad's callers read.
    """

    hidden: int = Field(ge=1)
    return_sequences: bool = False
    init: InitName | None = None

    positional: ClassVar[tuple[str, ...]] = ("hidden",)
    category: ClassVar[str] = "recurrent"
    gates: ClassVar[int] = 1
    has_cell: ClassVar[bool] = False  # an LSTM's c, carried beside h
    onnx_op: ClassVar[str] = ""
    # PyTorch gate blocks in ONNX's order: ONNX gate k is PyTorch gate onnx_order[k].
    onnx_order: ClassVar[tuple[int, ...]] = (0,)

    # ---- analysis ----------------------------------------------------------------------------
    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        _expect_sequence(x)
        return (x[0], self.hidden) if self.return_sequences else (self.hidden,)

    def layout(self, inputs: Sequence[Shape], layouts: Sequence[str | None]) -> str | None:
        return "TF" if self.return_sequences else None

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        gh, f = self.gates * self.hidden, inputs[0][-1]
        return {
            "weight_ih": (gh, f),
            "weight_hh": (gh, self.hidden),
            "bias_ih": (gh,),
            "bias_hh": (gh,),
        }

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        t, f = inputs[0]
        return t * self.gates * self.hidden * (f + self.hidden)

    def workspace(self, inputs: Sequence[Shape], output: Shape) -> Workspace:
        """Every step's gates and states stay for BPTT, whatever the output keeps: a layer that
        returns its last state (H floats) holds T * (G + 4) * H. Backward builds the gates'
        gradients (twice), the shifted states and dx, all T steps long."""
        t, f = inputs[0]
        h, g = self.hidden, self.gates
        return Workspace(
            cache=4 * t * (f + (2 * g + 4) * h), scratch=4 * t * (2 * f + (4 * g + 4) * h)
        )

    def init_hint(self) -> Init | None:
        return self.init

    # ---- one time step (subclasses) ----------------------------------------------------------
    def step(self, gi: Array, h: Array, c: Array | None, w_hh: Array, b_hh: Array) -> Any:
        """gi = x_t W_ih^T + b_ih (N, G*H) -> (h_t, c_t or None, what step_back needs)."""
        raise NotImplementedError

    def step_back(
        self, dh: Array, dc: Array | None, cache: Any, w_hh: Array
    ) -> tuple[Array, Array, Array, Array | None]:
        """Gradients at step t -> (dgi, dgh (on h W_hh^T + b_hh), dh_{t-1}, dc_{t-1})."""
        raise NotImplementedError

    # ---- NumPy scan --------------------------------------------------------------------------
    def scan(
        self,
        x: Array,
        p: Params,
        reverse: bool = False,
        input_grad: bool = True,
        backward: bool = True,
    ) -> tuple[Array, Any]:
        """All hidden states (N, T, H) in input time order; reverse reads x from the end.

        The cache keeps the hidden states second (Bidirectional and seq_grad read them) and
        input_grad last: without it scan_back returns None for dx and skips its GEMM. Without
        `backward` (Ctx.backward: no scan_back will follow) a scan may skip what only BPTT needs.
        """
        if reverse:
            x = x[:, ::-1]
        n, t, _ = x.shape
        gi = x @ p["weight_ih"].T + p["bias_ih"]  # (N, T, G*H): every step in one matmul
        h = np.zeros((n, self.hidden), dtype=gi.dtype)
        c = np.zeros_like(h) if self.has_cell else None
        hs = np.empty((n, t, self.hidden), dtype=gi.dtype)
        steps = []
        for k in range(t):
            h, c, sc = self.step(gi[:, k], h, c, p["weight_hh"], p["bias_hh"])
            hs[:, k] = h
            steps.append(sc)
        out = hs[:, ::-1] if reverse else hs
        return out, (x, hs, steps, reverse, input_grad)

    def scan_back(self, dhs: Array, cache: Any, p: Params) -> tuple[Array | None, Grads]:
        """BPTT: dhs (N, T, H) on every hidden state, in input time order."""
        x, hs, steps, reverse, input_grad = cache
        if reverse:
            dhs = dhs[:, ::-1]
        n, t, h = hs.shape
        w_hh = p["weight_hh"]
        dgi = np.empty((n, t, self.gates * h), dtype=hs.dtype)
        dgh = np.empty_like(dgi)
        dh = np.zeros((n, h), dtype=hs.dtype)
        dc = np.zeros_like(dh) if self.has_cell else None
        for k in reversed(range(t)):
            dgi[:, k], dgh[:, k], dh, dc = self.step_back(dh + dhs[:, k], dc, steps[k], w_hh)
        h_prev = np.concatenate([np.zeros_like(hs[:, :1]), hs[:, :-1]], axis=1)  # (N, T, H)
        gi2, gh2 = dgi.reshape(n * t, -1), dgh.reshape(n * t, -1)
        grads = {
            "weight_ih": gi2.T @ x.reshape(n * t, -1),
            "weight_hh": gh2.T @ h_prev.reshape(n * t, h),
            "bias_ih": gi2.sum(axis=0),
            "bias_hh": gh2.sum(axis=0),
        }
        if not input_grad:
            return None, grads
        dx = dgi @ p["weight_ih"]  # (N, T, F)
        return (dx[:, ::-1] if reverse else dx), grads

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        hs, cache = self.scan(xs[0], p, input_grad=ctx.input_grad, backward=ctx.backward)
        return (hs if self.return_sequences else hs[:, -1]), cache

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        dx, grads = self.scan_back(self.seq_grad(dy, cache[1].shape, False), cache, p)
        return [dx], grads

    def seq_grad(self, dy: Array, shape: tuple[int, ...], reverse: bool) -> Array:
        """The output's gradient on every hidden state (N, T, H), in input time order."""
        if self.return_sequences:
            return dy
        dhs = np.zeros(shape, dtype=dy.dtype)
        # The last state of a reversed scan is the one after consuming x[0].
        dhs[:, 0 if reverse else -1] = dy
        return dhs

    # ---- ONNX --------------------------------------------------------------------------------
    def onnx_weights(self, p: Params, prefixes: Sequence[str]) -> tuple[Array, Array, Array]:
        """W (D, G*H, F), R (D, G*H, H), B (D, 2*G*H) in ONNX gate order, one row per direction."""
        h = self.hidden
        idx = np.concatenate([np.arange(g * h, (g + 1) * h) for g in self.onnx_order])
        w = np.stack([p[f"{s}weight_ih"][idx] for s in prefixes])
        r = np.stack([p[f"{s}weight_hh"][idx] for s in prefixes])
        b = np.stack(
            [np.concatenate([p[f"{s}bias_ih"][idx], p[f"{s}bias_hh"][idx]]) for s in prefixes]
        )
        return w, r, b

    def onnx_nodes(self, io: OnnxIO, prefixes: Sequence[str]) -> list[OnnxNode]:
        """X (N, T, F) -> RNN/LSTM/GRU -> (N, D*H) or (N, T, D*H); D = len(prefixes)."""
        d, h = len(prefixes), self.hidden

        def pick(i: int) -> Callable[[Params], Array]:
            return lambda p: self.onnx_weights(p, prefixes)[i]

        names = [io.derived(f"onnx_{k}", pick(i)) for i, k in enumerate("WRB")]
        # onnxruntime rejects layout=1 (batch-first) for all three ops: transpose in and out.
        x_tnf = io.tmp("time_major")
        attrs: dict[str, Any] = {
            "hidden_size": h,
            "direction": "bidirectional" if d == 2 else "forward",
        }
        attrs.update(self.onnx_attrs(d))
        nodes = [OnnxNode("Transpose", (io.inputs[0],), (x_tnf,), {"perm": [1, 0, 2]})]
        rec = io.tmp(self.onnx_op.lower())
        outs = (rec,) if self.return_sequences else ("", rec)
        nodes.append(OnnxNode(self.onnx_op, (x_tnf, *names), outs, attrs))
        if self.return_sequences:  # Y (T, D, N, H) -> (N, T, D, H) -> (N, T, D*H)
            mid = io.tmp("batch_major")
            nodes.append(OnnxNode("Transpose", (rec,), (mid,), {"perm": [2, 0, 1, 3]}))
            shape = io.const("shape", np.array([0, 0, d * h], dtype=np.int64))
            nodes.append(OnnxNode("Reshape", (mid, shape), (io.output,)))
        elif d == 1:  # Y_h (1, N, H) -> (N, H)
            nodes.append(_squeeze0(io, rec))
        else:  # Y_h (2, N, H) -> (N, 2, H) -> (N, 2H)
            mid = io.tmp("batch_major")
            nodes.append(OnnxNode("Transpose", (rec,), (mid,), {"perm": [1, 0, 2]}))
            shape = io.const("shape", np.array([0, d * h], dtype=np.int64))
            nodes.append(OnnxNode("Reshape", (mid, shape), (io.output,)))
        return nodes

    def onnx_attrs(self, directions: int) -> dict[str, Any]:
        """Attributes beyond hidden_size and direction."""
        return {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        return self.onnx_nodes(io, ("",))

    # ---- PyTorch -----------------------------------------------------------------------------
    def torch_kernel(self, torch: Any) -> Any:
        """torch's fused recurrent kernel for this layer (the one torch.nn.RNN/LSTM/GRU call)."""
        raise NotImplementedError

    def torch_scan(self, torch: Any, x: Any, weights: Sequence[Any], train: bool) -> Any:
        """x (N, T, F) through torch's kernel with netspec's arrays, one direction per four of
        `weights` (weight_ih, weight_hh, bias_ih, bias_hh: torch's flat order, gates and all);
        the output as forward's: (N, [T,] D*H), the backward direction second.

        `train` is passed on: cuDNN keeps what its backward needs only in training."""
        d = len(weights) // len(WEIGHTS)
        h0 = x.new_zeros((d, x.shape[0], self.hidden))
        hx = (h0, h0) if self.has_cell else h0
        out, h_n, *_ = self.torch_kernel(torch)(
            x, hx, list(weights), True, 1, 0.0, train, d == 2, True
        )
        if self.return_sequences:
            return out  # (N, T, D*H)
        # The last state of each direction; the reversed one's is after reading x[0], as in
        # seq_grad.
        return h_n[0] if d == 1 else torch.cat([h_n[0], h_n[1]], dim=-1)

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        return self.torch_scan(torch, xs[0], [p[k] for k in WEIGHTS], train)


def _squeeze0(io: OnnxIO, x: str) -> OnnxNode:
    if io.opset >= 13:  # axes became an input in opset 13
        axes = io.const("axes", np.array([0], dtype=np.int64))
        return OnnxNode("Squeeze", (x, axes), (io.output,))
    return OnnxNode("Squeeze", (x,), (io.output,), {"axes": [0]})


class Rnn(_Recurrent):
    """Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""

    op: Literal["rnn"] = "rnn"
    nonlinearity: Literal["tanh", "relu"] = "tanh"

    summary: ClassVar[str] = (
        "Elman RNN over [time, features]: `rnn(hidden, return_sequences=false, "
        'nonlinearity="tanh")`; last state [H] or all states [T, H]'
    )
    onnx_op: ClassVar[str] = "RNN"

    def onnx_attrs(self, directions: int) -> dict[str, Any]:
        return {"activations": [self.nonlinearity.capitalize()] * directions}

    def torch_kernel(self, torch: Any) -> Any:
        return torch._VF.rnn_tanh if self.nonlinearity == "tanh" else torch._VF.rnn_relu

    def step(self, gi: Array, h: Array, c: Array | None, w_hh: Array, b_hh: Array) -> Any:
        a = gi + h @ w_hh.T + b_hh
        h_new = np.tanh(a) if self.nonlinearity == "tanh" else np.maximum(a, 0)
        return h_new, None, h_new

    def step_back(
        self, dh: Array, dc: Array | None, cache: Any, w_hh: Array
    ) -> tuple[Array, Array, Array, Array | None]:
        h = cache
        da = dh * (1 - h * h) if self.nonlinearity == "tanh" else dh * (h > 0)
        return da, da, da @ w_hh, None

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(hidden=3), ((4, 2),)),
            Example(cls(hidden=2, return_sequences=True, nonlinearity="relu"), ((3, 3),)),
        ]


class Lstm(_Recurrent):
    """LSTM with PyTorch's gates i, f, g, o: c = f*c + i*g, h = o*tanh(c)."""

    op: Literal["lstm"] = "lstm"

    summary: ClassVar[str] = (
        "LSTM over [time, features]: `lstm(hidden, return_sequences=false)`; "
        "gates i,f,g,o as in PyTorch"
    )
    gates: ClassVar[int] = 4
    has_cell: ClassVar[bool] = True
    onnx_op: ClassVar[str] = "LSTM"
    onnx_order: ClassVar[tuple[int, ...]] = (0, 3, 1, 2)  # ONNX i, o, f, c

    # The LSTM has its own scan: it is the recurrent layer people train most. Every step's
    # arrays are feature-major, (features, batch), so each gate's block is contiguous (NumPy
    # runs a strided (N, H) view of (N, 4H) about four times slower) and one GEMM per step,
    # [W_ih, b, W_hh] @ [x_k; 1; h_{k-1}], gives all four pre-activations. One exp serves the
    # four gates: sigmoid(z) = 1 / (1 + e^-z), tanh(z) = 2 sigmoid(2z) - 1, the -1 / -2 folded
    # into the weights (exact: powers of two); NumPy's float32 exp is about twice its tanh.
    # BPTT's factors that do not depend on the carried gradients are made by the forward step
    # while its gates are in cache, and one GEMM over all steps gives dW_ih, the bias and dW_hh.
    # Measured (batch 64, T 32, 32 -> 128, 1 thread, AVX2 EPYC): forward ~10.0 -> ~9.7 ms,
    # backward ~13.0 -> ~9.6 ms; what is left is about 60% GEMM.

    def torch_kernel(self, torch: Any) -> Any:
        return torch._VF.lstm

    def scan(
        self,
        x: Array,
        p: Params,
        reverse: bool = False,
        input_grad: bool = True,
        backward: bool = True,
    ) -> tuple[Array, Any]:
        if reverse:
            x = x[:, ::-1]
        n, t, f = x.shape
        hd = self.hidden
        dt = np.result_type(x, p["weight_ih"])
        # xh[:, k] = [x_k; 1; h_{k-1}] (F + 1 + H, N); xh[f + 1:, k + 1] is h after step k.
        xh = np.empty((f + 1 + hd, t + 1, n), dtype=dt)
        xh[:f, :t] = x.transpose(2, 1, 0)
        xh[: f + 1, t] = 0
        xh[f, :t] = 1
        xh[f + 1 :, 0] = 0
        sign = np.full((4 * hd, 1), -1.0, dtype=dt)  # exp(sign * z): e^-z, e^-2z for g
        sign[2 * hd : 3 * hd] = -2.0
        b = (p["bias_ih"] + p["bias_hh"])[:, None]
        w = np.concatenate([p["weight_ih"], b, p["weight_hh"]], axis=1) * sign  # (4H, F+1+H)
        gates = np.empty((t, 4 * hd, n), dtype=dt)
        # BPTT's factors (empty when no backward will read them: inference skips their work).
        rows_b = (4 * hd, hd) if backward else (0, 0)
        dz = np.empty((t, rows_b[0], n), dtype=dt)  # d gate / d pre-activation, times a partner
        dc_dh = np.empty((t, rows_b[1], n), dtype=dt)  # o * tanh'(c)
        c = np.zeros((hd, n), dtype=dt)
        tc = np.empty_like(c)
        with np.errstate(over="ignore"):  # e^-z overflows to inf for z << 0: sigmoid 0, exact
            for k in range(t):
                a, d = gates[k], dz[k]
                rows = f + 1 + hd if k else f + 1  # h_{-1} is zero: no recurrent product
                np.matmul(w[:, :rows], xh[:rows, k], out=a)
                np.exp(a, out=a)
                a += 1
                np.reciprocal(a, out=a)  # sigmoid(z_i), sigmoid(z_f), sigmoid(2 z_g), sigmoid(z_o)
                i, fg, g, o = (a[j * hd : (j + 1) * hd] for j in range(4))
                if backward:
                    np.subtract(1, a, out=d)
                    d *= a  # s (1 - s); tanh'(z) = 1 - g^2 = 4 s (1 - s) with g = 2 s - 1
                g *= 2
                g -= 1
                if backward:
                    di, df, dg, _ = (d[j * hd : (j + 1) * hd] for j in range(4))
                    dg *= 4
                    di *= g
                    dg *= i
                    df *= c  # c_{k-1}
                c *= fg
                np.multiply(i, g, out=tc)
                c += tc
                np.tanh(c, out=tc)
                np.multiply(o, tc, out=xh[f + 1 :, k + 1])
                if backward:
                    d[3 * hd :] *= tc  # o's factor
                    e = dc_dh[k]
                    np.multiply(tc, tc, out=e)
                    np.subtract(1, e, out=e)
                    e *= o
        hs = xh[f + 1 :, 1:].transpose(2, 1, 0)  # (N, T, H) in scan order
        out = hs[:, ::-1] if reverse else hs
        return out, (xh, hs, (gates, dz, dc_dh), reverse, input_grad)

    def scan_back(self, dhs: Array, cache: Any, p: Params) -> tuple[Array | None, Grads]:
        xh, hs, (gates, dz, dc_dh), reverse, input_grad = cache
        if reverse:
            dhs = dhs[:, ::-1]
        n, t, hd = hs.shape
        f = xh.shape[0] - 1 - hd
        dhs_t = dhs.transpose(1, 2, 0)  # (T, H, N); seq_grad's is contiguous per step
        if not dhs_t[0].flags.c_contiguous:
            dhs_t = np.ascontiguousarray(dhs_t)
        w_hh_t = p["weight_hh"].T
        da = np.empty((4 * hd, t, n), dtype=gates.dtype)  # the gradient on every pre-activation
        da_gates = da.reshape(4, hd, t, n)
        dh_carry = np.zeros((hd, n), dtype=gates.dtype)  # W_hh^T da_{k+1}
        dc_carry = np.zeros_like(dh_carry)  # dc_{k+1} * f_{k+1}
        dh = np.empty_like(dh_carry)
        dc = np.empty_like(dh_carry)
        for k in reversed(range(t)):
            np.add(dh_carry, dhs_t[k], out=dh)
            np.multiply(dh, dc_dh[k], out=dc)
            dc += dc_carry
            d = dz[k].reshape(4, hd, n)
            np.multiply(dc, d[:3], out=da_gates[:3, :, k])  # i, f, g: dc times their factors
            np.multiply(dh, d[3], out=da_gates[3, :, k])
            if k:  # nothing flows into the fixed zero initial state
                np.matmul(w_hh_t, da[:, k], out=dh_carry)
                np.multiply(dc, gates[k, hd : 2 * hd], out=dc_carry)
        da2 = da.reshape(4 * hd, t * n)
        dw = da2 @ xh[:, :t].reshape(f + 1 + hd, t * n).T  # (4H, F + 1 + H); h_{-1} is zero
        db = dw[:, f].copy()
        grads = {
            "weight_ih": np.ascontiguousarray(dw[:, :f]),
            "weight_hh": np.ascontiguousarray(dw[:, f + 1 :]),
            "bias_ih": db,
            "bias_hh": db.copy(),
        }
        if not input_grad:
            return None, grads
        dx = (da2.T @ p["weight_ih"]).reshape(t, n, -1).transpose(1, 0, 2)  # (N, T, F)
        return (dx[:, ::-1] if reverse else dx), grads

    def seq_grad(self, dy: Array, shape: tuple[int, ...], reverse: bool) -> Array:
        """As the base's, but an (N, T, H) view of a (T, H, N) array: scan_back's layout."""
        if self.return_sequences:
            return dy
        n, t, h = shape
        dhs = np.zeros((t, h, n), dtype=dy.dtype)
        dhs[0 if reverse else -1] = dy.T
        return dhs.transpose(2, 0, 1)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(hidden=3), ((4, 3),)),
            Example(cls(hidden=2, return_sequences=True), ((3, 2),)),
        ]


class Gru(_Recurrent):
    """GRU as PyTorch: r, z gates; n = tanh(W_in x + b_in + r*(W_hn h + b_hn)); h = (1-z)n + zh."""

    op: Literal["gru"] = "gru"

    summary: ClassVar[str] = (
        "GRU over [time, features]: `gru(hidden, return_sequences=false)`; "
        "gates r,z,n as in PyTorch"
    )
    gates: ClassVar[int] = 3
    onnx_op: ClassVar[str] = "GRU"
    onnx_order: ClassVar[tuple[int, ...]] = (1, 0, 2)  # ONNX z, r, h

    def onnx_attrs(self, directions: int) -> dict[str, Any]:
        return {"linear_before_reset": 1}  # PyTorch's n gate: r * (W_hn h + b_hn)

    def torch_kernel(self, torch: Any) -> Any:
        return torch._VF.gru

    def step(self, gi: Array, h: Array, c: Array | None, w_hh: Array, b_hh: Array) -> Any:
        gh = h @ w_hh.T + b_hh  # (N, 3H)
        gi_r, gi_z, gi_n = np.split(gi, 3, axis=1)
        gh_r, gh_z, gh_n = np.split(gh, 3, axis=1)
        r, z = sigmoid(gi_r + gh_r), sigmoid(gi_z + gh_z)
        n = np.tanh(gi_n + r * gh_n)
        return (1 - z) * n + z * h, None, (r, z, n, gh_n, h)

    def step_back(
        self, dh: Array, dc: Array | None, cache: Any, w_hh: Array
    ) -> tuple[Array, Array, Array, Array | None]:
        r, z, n, gh_n, h_prev = cache
        da_n = dh * (1 - z) * (1 - n * n)
        da_r = da_n * gh_n * r * (1 - r)
        da_z = dh * (h_prev - n) * z * (1 - z)
        dgi = np.concatenate([da_r, da_z, da_n], axis=1)
        dgh = np.concatenate([da_r, da_z, da_n * r], axis=1)
        return dgi, dgh, dh * z + dgh @ w_hh, None

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(hidden=4), ((3, 2),)),
            Example(cls(hidden=3, return_sequences=True), ((5, 4),)),
        ]


# ---------------------------------------------------------------------------------------------
# bidirectional


_INNER: dict[str, type[_Recurrent]] = {"rnn": Rnn, "lstm": Lstm, "gru": Gru}


def _coerce_layer(v: Any, info: ValidationInfo) -> Any:
    """Turn the DSL's call form {'name': 'lstm', 'args': [128], ...} into an Rnn/Lstm/Gru.

    The inner layer is validated here so that its errors read as its own ("lstm has no
    attribute 'foo'") rather than as errors of bidirectional's `layer` field; as strictly as
    the outer op when the DSL wrote it (`lstm(true)` is not 1 unit).
    """
    if isinstance(v, str):
        v = {"name": v}
    if not isinstance(v, dict) or "op" in v or "name" not in v:
        return v  # already an op (IR JSON) or a model: validated as such
    name = v["name"]
    if name not in _INNER:
        raise ValueError(f"bidirectional wraps rnn, lstm or gru, got {name!r}")
    cls = _INNER[name]
    args = v.get("args", [])
    if len(args) > len(cls.positional):
        raise ValueError(f"{name} takes at most {len(cls.positional)} positional value(s)")
    values = {k: val for k, val in v.items() if k not in ("name", "args")}
    values.update(zip(cls.positional, args, strict=False))
    strict = bool(info.context and info.context.get("strict"))
    try:
        return cls.model_validate(values, strict=strict)
    except ValidationError as e:
        raise ValueError("; ".join(_inner_error(name, cls, err) for err in e.errors())) from None


def _inner_error(name: str, cls: type[_Recurrent], err: Any) -> str:
    key = ".".join(str(x) for x in err["loc"])
    if err["type"] == "extra_forbidden":
        known = [k for k in cls.model_fields if k != "op"]
        hint = suggest(key, known) or f"known attributes: {', '.join(known)}"
        return f"{name} has no attribute '{key}' ({hint})"
    if err["type"] == "missing":
        return f"{name} needs '{key}', e.g. {name}(128)"
    got = err.get("input")
    shown = f", got {dsl(got)}" if isinstance(got, bool | int | float | str) else ""
    return f"{name}: {key}: {str(err['msg']).removeprefix('Value error, ')}{shown}"


Layer = Annotated[Rnn | Lstm | Gru, Field(discriminator="op"), BeforeValidator(_coerce_layer)]


class Bidirectional(Op):
    """One recurrent layer run forwards and backwards; outputs joined on the last axis."""

    op: Literal["bidirectional"] = "bidirectional"
    layer: Layer

    positional: ClassVar[tuple[str, ...]] = ("layer",)
    category: ClassVar[str] = "recurrent"
    summary: ClassVar[str] = (
        "both directions of a recurrent layer, joined: `bidirectional(lstm(128))`; "
        "[2H] or [T, 2H]; params fwd.*, bwd.*"
    )

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        inner = self.layer.infer_shape(inputs)
        return (*inner[:-1], 2 * inner[-1])

    def layout(self, inputs: Sequence[Shape], layouts: Sequence[str | None]) -> str | None:
        return self.layer.layout(inputs, layouts)

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        inner = self.layer.param_shapes(inputs)
        return {f"{d}.{k}": s for d in ("fwd", "bwd") for k, s in inner.items()}

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        return 2 * self.layer.macs(inputs, output)

    def workspace(self, inputs: Sequence[Shape], output: Shape) -> Workspace:
        """Both directions' caches; their temporaries one at a time, plus the joined output."""
        inner = self.layer.workspace(inputs, self.layer.infer_shape(inputs))
        out = 4 * numel(output)
        return Workspace(cache=2 * inner.cache, scratch=inner.scratch + 2 * out)

    def init_hint(self) -> Init | None:
        return self.layer.init

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        layer = self.layer
        ys, caches = [], []
        for d, reverse in (("fwd", False), ("bwd", True)):
            hs, cache = layer.scan(xs[0], _sub(p, d), reverse, ctx.input_grad, ctx.backward)
            ys.append(hs if layer.return_sequences else hs[:, 0 if reverse else -1])
            caches.append(cache)
        return np.concatenate(ys, axis=-1), caches

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        h = self.layer.hidden
        dx: Array | None = None
        grads: Grads = {}
        for (d, reverse), dy_d, c in zip(
            (("fwd", False), ("bwd", True)), (dy[..., :h], dy[..., h:]), cache, strict=True
        ):
            dhs = self.layer.seq_grad(dy_d, c[1].shape, reverse)
            dx_d, g = self.layer.scan_back(dhs, c, _sub(p, d))
            dx = dx_d if dx is None or dx_d is None else dx + dx_d
            grads.update({f"{d}.{k}": v for k, v in g.items()})
        return [dx], grads

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        return self.layer.onnx_nodes(io, ("fwd.", "bwd."))

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        weights = [p[f"{d}.{k}"] for d in ("fwd", "bwd") for k in WEIGHTS]
        return self.layer.torch_scan(torch, xs[0], weights, train)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(cls(layer=Rnn(hidden=2, nonlinearity="relu")), ((3, 2),)),
            Example(cls(layer=Rnn(hidden=3, return_sequences=True)), ((4, 3),)),
            Example(cls(layer=Lstm(hidden=3)), ((3, 4),)),
            Example(cls(layer=Lstm(hidden=2, return_sequences=True)), ((4, 2),)),
            Example(cls(layer=Gru(hidden=2)), ((5, 3),)),
            Example(cls(layer=Gru(hidden=3, return_sequences=True)), ((3, 2),)),
        ]


def _sub(p: Params, direction: str) -> Params:
    return {k: p[f"{direction}.{k}"] for k in WEIGHTS}
