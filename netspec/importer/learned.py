"""Recovering the ops with learned parameters and the norms: Gemm and MatMul(+Add) as dense,
Gather from a constant table as embedding, BatchNormalization, LRN and Dropout."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from netspec.importer import simple, windows
from netspec.importer.layers import Layer, Match, Matcher, attrs_of, f32, used_outputs


def gemm(node: onnx.NodeProto, m: Match) -> Layer | None:
    a = attrs_of(node)
    b = m.const(node.input[1])
    if b is None or b.ndim != 2 or a.get("transA", 0) or m.const(node.input[0]) is not None:
        return None
    w = (b if a.get("transB", 0) else b.T) * a.get("alpha", 1.0)
    params = {"weight": np.ascontiguousarray(w, dtype=b.dtype)}
    attrs: dict[str, Any] = {"units": int(w.shape[0])}
    c = m.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if c is None:
        attrs["bias"] = False
    else:
        if c.size not in (1, w.shape[0]):
            return None  # a per-sample bias is not a dense layer's
        bias = np.broadcast_to(c.reshape(-1), (w.shape[0],)) * a.get("beta", 1.0)
        params["bias"] = np.ascontiguousarray(bias, dtype=c.dtype)
    return Layer("dense", attrs, [node.input[0]], node.output[0], node, params)


def matmul(node: onnx.NodeProto, m: Match) -> Layer | None:
    """x @ B with a constant B, and the bias of an Add that alone reads the product; A @ x
    with a constant A is netspec's upsample2d."""
    if m.const(node.input[0]) is not None:
        return windows.upsample(node, m)
    b = m.const(node.input[1])
    if b is None or b.ndim != 2 or m.const(node.input[0]) is not None:
        return None
    params = {"weight": np.ascontiguousarray(b.T)}
    attrs: dict[str, Any] = {"units": int(b.shape[1])}
    out = node.output[0]
    add = m.sole_reader(out)
    bias = None
    if add is not None and add.op_type == "Add":
        other = add.input[1] if add.input[0] == out else add.input[0]
        bias = m.const(other)
    if bias is not None and add is not None and bias.size == b.shape[1]:
        m.take(add)
        params["bias"] = bias.reshape(-1)
        out = add.output[0]
    else:
        attrs["bias"] = False
    return Layer("dense", attrs, [node.input[0]], out, node, params)


def gather(node: onnx.NodeProto, m: Match) -> Layer | list[Layer] | None:
    """A lookup in a constant table is an embedding; one position of a tensor, a selection."""
    table = m.const(node.input[0])
    if table is None:
        return simple.select(node, m)
    if table is None or table.ndim != 2 or attrs_of(node).get("axis", 0) != 0:
        return None
    attrs = {"vocab": int(table.shape[0]), "dim": int(table.shape[1])}
    return Layer("embedding", attrs, [node.input[1]], node.output[0], node, {"weight": table})


def batchnorm(node: onnx.NodeProto, m: Match) -> Layer | None:
    arrays = [m.const(i) for i in node.input[1:5]]
    if any(x is None for x in arrays) or len(used_outputs(node, m)) > 1:
        return None
    names = ("weight", "bias", "running_mean", "running_var")
    params = {k: np.asarray(v).reshape(-1) for k, v in zip(names, arrays, strict=True)}
    eps = f32(attrs_of(node).get("epsilon", 1e-5))
    attrs = {} if eps == 1e-5 else {"eps": eps}
    return Layer("batchnorm", attrs, [node.input[0]], node.output[0], node, params)


def lrn(node: onnx.NodeProto, m: Match) -> Layer | None:
    a = attrs_of(node)
    attrs: dict[str, Any] = {"size": int(a["size"])}
    # ONNX's defaults (bias 1) differ from netspec's (bias 2): every value is written out.
    attrs["alpha"] = f32(a.get("alpha", 1e-4))
    attrs["beta"] = f32(a.get("beta", 0.75))
    attrs["bias"] = f32(a.get("bias", 1.0))
    return Layer("lrn", attrs, [node.input[0]], node.output[0], node)


def dropout(node: onnx.NodeProto, m: Match) -> Layer | None:
    if len(used_outputs(node, m)) > 1:
        return None  # the mask output is a training graph's
    ratio = m.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    p = (
        f32(float(np.asarray(ratio).reshape(-1)[0]))
        if ratio is not None
        else attrs_of(node).get("ratio", 0.5)
    )
    attrs = {} if p == 0.5 else {"p": f32(p)}
    return Layer("dropout", attrs, [node.input[0]], node.output[0], node)


MATCHERS: dict[str, Matcher] = {
    "Gemm": gemm,
    "MatMul": matmul,
    "Gather": gather,
    "BatchNormalization": batchnorm,
    "LRN": lrn,
    "Dropout": dropout,
}
