"""Recovering the sequence and normalisation ops: LayerNormalization over the last axis,
ReduceMean over one axis (`mean`; over every spatial axis, windows' global pool), an Add of a
constant position table (`sinusoidal` when it is Vaswani's table, else learned `positional`
rows), Transpose of per-sample axes and Slice."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from netspec.importer import windows
from netspec.importer.layers import (
    Layer,
    Match,
    Matcher,
    attrs_of,
    const_operand,
    f32,
    ints,
    used_outputs,
)
from netspec.ops.sequence import sinusoids


def layernorm(node: onnx.NodeProto, m: Match) -> Layer | None:
    a = attrs_of(node)
    shape = m.shape(node.input[0])
    scale = m.const(node.input[1])
    bias = m.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if shape is None or scale is None or bias is None or len(used_outputs(node, m)) > 1:
        return None
    if a.get("axis", -1) not in (-1, len(shape)) or scale.shape != (shape[-1],):
        return None  # netspec's layernorm normalises the last axis only
    eps = f32(a.get("epsilon", 1e-5))
    params = {"weight": scale.reshape(-1), "bias": bias.reshape(-1)}
    return Layer(
        "layernorm", {} if eps == 1e-5 else {"eps": eps}, [node.input[0]], node.output[0], node,
        params,
    )  # fmt: skip


def fuse_groupnorm(m: Match) -> None:
    """Before matching: netspec's groupnorm export, Reshape(0, G, M) -> LayerNormalization
    (scale 1, shift 0) -> Reshape back -> Mul and Add of per-channel constants, is one layer,
    left at the Add (the pattern's other nodes taken)."""
    for node in m.model.nodes:
        if node.op_type == "LayerNormalization" and id(node) not in m.taken:
            found = _groupnorm(m, node)
            if found is not None:
                m.prepared[id(found.node)] = found


def _groupnorm(m: Match, norm: onnx.NodeProto) -> Layer | None:
    grouped = m.made_by(norm.input[0], "Reshape")
    ones, zeros = m.const(norm.input[1]), m.const(norm.input[2]) if len(norm.input) > 2 else None
    back = m.sole_reader(norm.output[0])
    scale = None if back is None or back.op_type != "Reshape" else m.sole_reader(back.output[0])
    shift = None if scale is None or scale.op_type != "Mul" else m.sole_reader(scale.output[0])
    if grouped is None or back is None or scale is None or shift is None:
        return None
    shape = m.shape(grouped.input[0])
    g = ints(m, grouped, 1, "shape")
    w = const_operand(m, scale, back.output[0])
    b = const_operand(m, shift, scale.output[0])
    if shape is None or g is None or len(g) != 3 or w is None or b is None or ones is None:
        return None
    per_channel = (shape[0], *([1] * (len(shape) - 1)))
    if shift.op_type != "Add" or w.shape != per_channel or b.shape != per_channel:
        return None
    if not (np.all(ones == 1) and (zeros is None or not np.any(zeros))):
        return None
    if ints(m, back, 1, "shape") != [0, *shape] or g[0] != 0 or shape[0] % max(g[1], 1):
        return None
    for n in (grouped, norm, back, scale):
        m.take(n)
    eps = f32(attrs_of(norm).get("epsilon", 1e-5))
    attrs: dict[str, Any] = {"groups": g[1]}
    if eps != 1e-5:
        attrs["eps"] = eps
    params = {"weight": w.reshape(-1), "bias": b.reshape(-1)}
    return Layer("groupnorm", attrs, [grouped.input[0]], shift.output[0], shift, params)


def mean(node: onnx.NodeProto, m: Match) -> Layer | list[Layer] | None:
    """The mean over one per-sample axis, dropping it; over every spatial axis, a global pool."""
    axes = ints(m, node, 1, "axes")
    if axes is None or len(axes) != 1 or axes[0] == 0 or attrs_of(node).get("keepdims", 1):
        return windows.global_mean(node, m)
    axis = axes[0] - 1 if axes[0] > 0 else axes[0]
    return Layer("mean", {"axis": axis}, [node.input[0]], node.output[0], node)


def positions(node: onnx.NodeProto, m: Match) -> Layer | None:
    """x + a constant (T, D) table over a [T, D] input."""
    consts = [i for i in node.input if m.const(i) is not None]
    xs = [i for i in node.input if m.const(i) is None]
    if len(consts) != 1 or len(xs) != 1:
        return None
    table, shape = m.const(consts[0]), m.shape(xs[0])
    if table is None or shape is None or len(shape) != 2 or table.shape != shape:
        return None
    if np.allclose(table, sinusoids(*shape), rtol=0, atol=1e-6):
        return Layer("sinusoidal", {}, xs, node.output[0], node)
    attrs = {"max_len": int(shape[0])}
    return Layer("positional", attrs, xs, node.output[0], node, {"weight": table})


def transpose(node: onnx.NodeProto, m: Match) -> Layer | None:
    perm = [int(p) for p in attrs_of(node).get("perm", [])]
    if not perm or perm[0] != 0:
        return None  # moves the batch axis
    return Layer("transpose", {"perm": [p - 1 for p in perm[1:]]}, [node.input[0]],
                 node.output[0], node)  # fmt: skip


def slice_(node: onnx.NodeProto, m: Match) -> Layer | None:
    """Slice of one per-sample axis with step 1 (opset 10's inputs)."""
    shape = m.shape(node.input[0])
    starts, ends = ints(m, node, 1, "starts"), ints(m, node, 2, "ends")
    axes = ints(m, node, 3, "axes")
    steps = ints(m, node, 4, "steps") or [1]
    if shape is None or starts is None or ends is None or len(starts) != 1 or steps != [1]:
        return None
    axis = (axes or [0])[0]
    axis = axis + len(shape) + 1 if axis < 0 else axis
    if axis == 0 or len(ends) != 1:
        return None
    attrs: dict[str, Any] = {"start": starts[0]}
    size = shape[axis - 1]
    if ends[0] < size:
        attrs["end"] = ends[0]
    if axis != 1:
        attrs["axis"] = axis - 1
    return Layer("slice", attrs, [node.input[0]], node.output[0], node)


MATCHERS: dict[str, Matcher] = {
    "LayerNormalization": layernorm,
    "ReduceMean": mean,
    "Transpose": transpose,
    "Slice": slice_,
}
