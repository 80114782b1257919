"""A PyTorch module that runs a netspec `Analysis` with netspec's own initial weights.

The benchmark's reference: the same graph, node for node, with the same parameter values, so a
timing difference is the engine's and not the architecture's. Only the ops the benchmark's
networks use are mapped; anything else raises.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from torch import nn

from netspec.ir import Analysis


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys may not contain dots


def _attention(op: Any, shape: tuple[int, ...], name: str, params: dict[str, np.ndarray]) -> Any:
    """torch's own nn.MultiheadAttention (its fused kernels), holding netspec's weights."""
    mha = nn.MultiheadAttention(shape[-1], op.heads, op.dropout, op.bias, batch_first=True)
    with torch.no_grad():
        for local, value in mha.named_parameters():
            value.copy_(torch.from_numpy(params[f"{name}.{local}"]))
    return mha


class Twin(nn.Module):
    """`Twin(analysis, params)`: forward maps the one input tensor to the one output."""

    def __init__(self, analysis: Analysis, params: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.analysis = analysis
        self.nodes = {n.name: n for n in analysis.network.nodes}
        self.weights = nn.ParameterDict()
        self.lstms = nn.ModuleDict()
        self.attentions = nn.ModuleDict()
        for name in analysis.order:
            node, info = self.nodes[name], analysis.layers[name]
            if node.op.op == "attention":
                self.attentions[_key(name)] = _attention(
                    node.op, info.input_shapes[0], name, params
                )
                continue
            if node.op.op == "lstm":
                f = info.input_shapes[0][-1]
                lstm = nn.LSTM(f, node.op.hidden, batch_first=True)  # type: ignore[attr-defined]
                with torch.no_grad():
                    for local in info.param_shapes:
                        getattr(lstm, f"{local}_l0").copy_(
                            torch.from_numpy(params[f"{name}.{local}"])
                        )
                self.lstms[_key(name)] = lstm
                continue
            for local in info.param_shapes:
                arr = torch.from_numpy(params[f"{name}.{local}"].copy())
                self.weights[_key(f"{name}.{local}")] = nn.Parameter(arr)
            for local in info.state_shapes:
                arr = torch.from_numpy(params[f"{name}.{local}"].copy())
                self.register_buffer(_key(f"{name}.{local}"), arr)

    def _p(self, node: str, local: str) -> Any:
        key = _key(f"{node}.{local}")
        return self.weights[key] if key in self.weights else getattr(self, key)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        for name in self.analysis.order:
            node = self.nodes[name]
            op: Any = node.op
            xs = [values[i] for i in node.inputs]
            values[name] = self._node(name, op, xs, x)
        (out,) = self.analysis.network.outputs
        return values[out]

    def _node(self, name: str, op: Any, xs: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        kind = op.op
        if kind == "input":
            return x
        if kind == "dense":
            return F.linear(
                xs[0], self._p(name, "weight"), self._p(name, "bias") if op.bias else None
            )
        if kind == "conv2d":
            k, s, d = op._kernel()
            pads, _ = op._geometry(tuple(xs[0].shape[1:]))
            if any(lo != hi for lo, hi in pads):
                raise NotImplementedError("asymmetric conv padding")
            bias = self._p(name, "bias") if op.bias else None
            return F.conv2d(
                xs[0], self._p(name, "weight"), bias, s, [lo for lo, _ in pads], d, op.groups
            )
        if kind == "maxpool2d":
            k, s, d = op._kernel()
            pads, _ = op._geometry(tuple(xs[0].shape[1:]))
            return F.max_pool2d(xs[0], k, s, [lo for lo, _ in pads], d, op.ceil_mode)
        if kind == "relu":
            return F.relu(xs[0])
        if kind == "flatten":
            return torch.flatten(xs[0], 1)
        if kind == "add":
            y = xs[0]
            for other in xs[1:]:
                y = y + other
            return y
        if kind == "global_avgpool":
            return F.adaptive_avg_pool2d(xs[0], 1)
        if kind == "pad":
            rank = xs[0].dim() - 1
            pairs = list(zip(op.pads[:rank], op.pads[rank:], strict=True))
            flat = [v for pair in reversed(pairs) for v in pair]  # torch: last axis first
            return F.pad(xs[0], flat, value=op.value)
        if kind == "batchnorm":
            return F.batch_norm(
                xs[0],
                self._p(name, "running_mean"),
                self._p(name, "running_var"),
                self._p(name, "weight"),
                self._p(name, "bias"),
                self.training,
                op.momentum,
                op.eps,
            )
        if kind == "lstm":
            seq, _ = self.lstms[_key(name)](xs[0])
            return seq if op.return_sequences else seq[:, -1]
        return self._sequence_node(name, op, xs)

    def _sequence_node(self, name: str, op: Any, xs: list[torch.Tensor]) -> torch.Tensor:
        """The transformer's ops: tokens, positions, attention, layernorm, GELU, pooling."""
        kind = op.op
        if kind == "embedding":
            return F.embedding(xs[0], self._p(name, "weight"))
        if kind == "positional":
            return xs[0] + self._p(name, "weight")[: self.analysis.shape(name)[0]]
        if kind == "attention":
            t = self.analysis.shape(name)[0]
            mask = torch.ones(t, t, dtype=torch.bool).triu(1) if op.causal else None
            out, _ = self.attentions[_key(name)](
                xs[0], xs[0], xs[0], need_weights=False, attn_mask=mask
            )
            return out
        # Sizes from the analysis, not from tensors: torch.onnx's tracer needs them static.
        if kind == "layernorm":
            d = self.analysis.shape(name)[-1]
            return F.layer_norm(xs[0], (d,), self._p(name, "weight"), self._p(name, "bias"), op.eps)
        if kind == "gelu":
            return F.gelu(xs[0])
        if kind == "mean":
            return xs[0].mean(dim=op.axis % (xs[0].dim() - 1) + 1)
        if kind == "reshape":
            return xs[0].reshape(xs[0].shape[0], *self.analysis.shape(name))
        if kind == "transpose":
            return xs[0].permute(0, *(i + 1 for i in op.perm))
        raise NotImplementedError(f"no torch twin for {kind}")
