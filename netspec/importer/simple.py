"""Recovering the parameter-free ops: activations (and the small patterns netspec's own step,
swish and maxout lower to), merges, and the shape ops (Flatten, and Reshape with a constant
shape: the folded Shape->Gather->Unsqueeze->Concat chain arrives here as [0, -1])."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx

from netspec.importer import sequence
from netspec.importer.layers import Layer, Match, Matcher, attrs_of, f32

# ONNX op -> (netspec op, {ONNX attribute: (netspec attribute, ONNX default)}).
_ELEMENTWISE: dict[str, tuple[str, dict[str, tuple[str, float]]]] = {
    "Relu": ("relu", {}),
    "Sigmoid": ("sigmoid", {}),
    "Tanh": ("tanh", {}),
    "Softplus": ("softplus", {}),
    "Identity": ("identity", {}),
    "Gelu": ("gelu", {}),
    "Elu": ("elu", {"alpha": ("alpha", 1.0)}),
    "LeakyRelu": ("leaky_relu", {"alpha": ("alpha", 0.01)}),
}
_DEFAULTS = {"elu": {"alpha": 1.0}, "leaky_relu": {"alpha": 0.01}}


def _elementwise(onnx_op: str) -> Matcher:
    op, table = _ELEMENTWISE[onnx_op]

    def match(node: onnx.NodeProto, m: Match) -> Layer | None:
        if onnx_op == "Gelu" and attrs_of(node).get("approximate", "none") != "none":
            return None
        a = attrs_of(node)
        attrs: dict[str, Any] = {}
        for key, (name, default) in table.items():
            value = f32(a.get(key, default))
            if value != _DEFAULTS[op][name]:
                attrs[name] = value
        return Layer(op, attrs, [node.input[0]], node.output[0], node)

    return match


def sigmoid(node: onnx.NodeProto, m: Match) -> Layer | None:
    """Sigmoid, or swish when a Mul alone reads it together with its own input."""
    x, s = node.input[0], node.output[0]
    mul = m.sole_reader(s)
    if mul is not None and mul.op_type == "Mul" and sorted(mul.input) == sorted([x, s]):
        m.take(mul)
        return Layer("swish", {}, [x], mul.output[0], node)
    return Layer("sigmoid", {}, [x], s, node)


def sign(node: onnx.NodeProto, m: Match) -> Layer | None:
    relu = m.sole_reader(node.output[0])
    if relu is None or relu.op_type != "Relu":
        return None
    m.take(relu)
    return Layer("step", {}, [node.input[0]], relu.output[0], node)


def _axis(axis: int) -> int | None:
    """An ONNX axis as a per-sample one (netspec's axis 0 is ONNX's 1); None for the batch."""
    return None if axis == 0 else (axis - 1 if axis > 0 else axis)


def softmax(node: onnx.NodeProto, m: Match) -> Layer | None:
    axis = _axis(attrs_of(node).get("axis", -1))
    if axis is None:
        return None
    return Layer(
        "softmax", {} if axis == -1 else {"axis": axis}, [node.input[0]], node.output[0], node
    )


def clip(node: onnx.NodeProto, m: Match) -> Layer | None:
    """Clip with constant bounds (inputs from opset 11, attributes before); ReLU6 is (0, 6)."""
    a = attrs_of(node)
    attrs: dict[str, Any] = {}
    for k, key in ((1, "min"), (2, "max")):
        if len(node.input) > k and node.input[k]:
            bound = m.const(node.input[k])
            if bound is None or bound.size != 1:
                return None
            attrs[key] = f32(float(bound.reshape(-1)[0]))
        elif key in a:
            attrs[key] = f32(a[key])
    if not attrs:
        return Layer("identity", {}, [node.input[0]], node.output[0], node)
    return Layer("clip", attrs, [node.input[0]], node.output[0], node)


def concat(node: onnx.NodeProto, m: Match) -> Layer | None:
    axis = _axis(attrs_of(node).get("axis", 1))
    if axis is None or any(m.const(i) is not None for i in node.input):
        return None
    if len(node.input) == 1:  # torch.cat of one tensor (DenseNet's first layer of a block)
        return Layer("identity", {}, [node.input[0]], node.output[0], node)
    return Layer(
        "concat", {} if axis == 0 else {"axis": axis}, list(node.input), node.output[0], node
    )


def add(node: onnx.NodeProto, m: Match) -> Layer | None:
    """A merge of computed tensors; x plus a constant table is a position encoding."""
    if len(node.input) < 2:
        return None
    if any(m.const(i) is not None for i in node.input):
        return sequence.positions(node, m)
    return Layer("add", {}, list(node.input), node.output[0], node)


def select(node: onnx.NodeProto, m: Match) -> list[Layer] | None:
    """Gather of one constant position of a per-sample axis (torch's `y[:, -1]`): a slice
    that keeps it, then a reshape that drops the axis."""
    index, shape = m.const(node.input[1]), m.shape(node.input[0])
    axis = _axis(attrs_of(node).get("axis", 0))
    if index is None or index.ndim != 0 or shape is None or axis is None:
        return None
    axis %= len(shape)
    i = int(index)
    kept = [d for k, d in enumerate(shape) if k != axis]
    if not -shape[axis] <= i < shape[axis] or not kept:
        return None
    attrs: dict[str, Any] = {"start": i, "end": None if i == -1 else i + 1}
    if axis:
        attrs["axis"] = axis
    if attrs["end"] is None:
        del attrs["end"]
    one = f"{node.output[0]}_position"
    cut = Layer("slice", attrs, [node.input[0]], one, node)
    if len(kept) == 1:
        return [cut, Layer("flatten", {}, [one], node.output[0], node)]
    return [cut, Layer("reshape", {"shape": kept}, [one], node.output[0], node)]


def mul(node: onnx.NodeProto, m: Match) -> Layer | None:
    """The elementwise product of computed tensors (a constant factor is no netspec op)."""
    if len(node.input) != 2 or any(m.const(i) is not None for i in node.input):
        return None
    return Layer("mul", {}, list(node.input), node.output[0], node)


def prelu(node: onnx.NodeProto, m: Match) -> Layer | None:
    """PRelu with a constant slope, one shared or one per channel (C, 1, ...)."""
    slope, shape = m.const(node.input[1]), m.shape(node.input[0])
    if slope is None or shape is None:
        return None
    if slope.size == 1:
        return Layer(
            "prelu", {}, [node.input[0]], node.output[0], node, {"slope": slope.reshape(1)}
        )
    per_channel = (shape[0], *([1] * (len(shape) - 1)))
    if slope.shape not in (per_channel, (1, *per_channel)):
        return None
    attrs = {"channels": "per_channel"}
    params = {"slope": slope.reshape(-1)}
    return Layer("prelu", attrs, [node.input[0]], node.output[0], node, params)


def flatten(node: onnx.NodeProto, m: Match) -> Layer | None:
    if attrs_of(node).get("axis", 1) != 1:
        return None
    return Layer("flatten", {}, [node.input[0]], node.output[0], node)


def reshape(node: onnx.NodeProto, m: Match) -> Layer | None:
    """A reshape that keeps the batch axis: its target's first dim is 0 (copy) or -1, or the
    traced batch size itself (torch's dynamo exporter writes view(1, 512) as [1, 512]) when the
    rest holds exactly one sample."""
    target = m.const(node.input[1])
    shape = m.shape(node.input[0])
    if target is None or shape is None:
        return None
    dims = [int(d) for d in target.reshape(-1)]
    if attrs_of(node).get("allowzero", 0) and 0 in dims:
        return None  # a literal zero-sized axis, not "copy this one"
    if not dims or dims[0] < -1 or (dims[0] == -1 and -1 in dims[1:]):
        return None
    per_sample = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(dims[1:])]
    if dims[0] > 0 and (-1 in per_sample or math.prod(per_sample) != math.prod(shape)):
        return None  # the batch size is fixed, and the rest need not be one sample
    if -1 in per_sample:
        known = math.prod(d for d in per_sample if d != -1)
        per_sample[per_sample.index(-1)] = math.prod(shape) // max(known, 1)
    maxout = _maxout(node, m, shape, per_sample)
    if maxout is not None:
        return maxout
    if len(per_sample) == 1:
        return Layer("flatten", {}, [node.input[0]], node.output[0], node)
    return Layer("reshape", {"shape": per_sample}, [node.input[0]], node.output[0], node)


def _maxout(
    node: onnx.NodeProto, m: Match, shape: tuple[int, ...], grouped: list[int]
) -> Layer | None:
    """Reshape to (C/k, k, ...) then ReduceMax over the k axis: netspec's maxout."""
    red = m.sole_reader(node.output[0])
    if red is None or red.op_type != "ReduceMax" or len(grouped) != len(shape) + 1:
        return None
    a = attrs_of(red)
    axes = a.get("axes")
    if axes is None and len(red.input) > 1:
        found = m.const(red.input[1])
        axes = None if found is None else [int(v) for v in np.asarray(found).reshape(-1)]
    k = grouped[1]
    if list(axes or []) != [2] or a.get("keepdims", 1) or grouped[0] * k != shape[0]:
        return None
    m.take(red)
    return Layer("maxout", {"k": k}, [node.input[0]], red.output[0], node)


MATCHERS: dict[str, Matcher] = {
    **{op: _elementwise(op) for op in _ELEMENTWISE if op != "Sigmoid"},
    "Sigmoid": sigmoid,
    "Sign": sign,
    "Softmax": softmax,
    "Clip": clip,
    "Concat": concat,
    "Add": add,
    "Mul": mul,
    "PRelu": prelu,
    "Sum": add,
    "Flatten": flatten,
    "Reshape": reshape,
}
