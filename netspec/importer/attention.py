"""Recovering `attention` from the graph netspec's export writes for it (ops/attention.py):

    q, k, v = x @ W (+ b), each Reshape(0, T, H, D/H) then Transpose (k's to (0, 2, 3, 1))
    Softmax(q @ k (+ causal mask)) @ v -> Transpose(0, 2, 1, 3) -> Reshape(0, T, D) -> @ Wo (+ b)

The 1/sqrt(D/H) of the scores is folded into q's projection there and is taken back out here.
A pre-pass (`fuse`) finds each Softmax at the centre of one, takes every node of the pattern and
leaves the layer at its last node. Keys and values projected from another tensor than the
queries are a cross-attention, `attention(x, memory)`. torch's own attention exports are not
recognised.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from netspec.importer.layers import Layer, Match, attrs_of, const_operand
from netspec.ops.attention import causal_mask
from netspec.ops.base import Array


def _perm(node: onnx.NodeProto | None, perm: list[int]) -> bool:
    return node is not None and list(attrs_of(node).get("perm", [])) == perm


def _projection(
    m: Match, head: str, perm: list[int]
) -> tuple[str, Array, Array | None, list[int], list[onnx.NodeProto]] | None:
    """One of q, k, v: (x, W (D, D), b or None, the split shape, its nodes) from the head."""
    t = m.made_by(head, "Transpose")
    split = None if t is None or not _perm(t, perm) else m.made_by(t.input[0], "Reshape")
    shape = None if split is None else m.const(split.input[1])
    if t is None or split is None or shape is None:
        return None
    nodes = [t, split]
    proj = split.input[0]
    bias = None
    add = m.made_by(proj, "Add")
    if add is not None:
        inner = next((i for i in add.input if m.producer.get(i) is not None), None)
        bias = None if inner is None else const_operand(m, add, inner)
        if inner is None or bias is None:
            return None
        nodes.append(add)
        proj = inner
    mm = m.made_by(proj, "MatMul")
    w = None if mm is None else m.const(mm.input[1])
    if mm is None or w is None or w.ndim != 2 or m.const(mm.input[0]) is not None:
        return None
    nodes.append(mm)
    return mm.input[0], w, bias, [int(v) for v in shape.reshape(-1)], nodes


Nodes = list[onnx.NodeProto]


def _centre(m: Match, softmax: onnx.NodeProto) -> tuple[str, str, bool, Nodes] | None:
    """Softmax(q @ k [+ mask]): the q and k heads, whether causal, and those nodes."""
    if attrs_of(softmax).get("axis", -1) not in (-1, 3):
        return None
    nodes: list[onnx.NodeProto] = [softmax]
    scores = softmax.input[0]
    causal = False
    add = m.made_by(scores, "Add")
    if add is not None:
        inner = next((i for i in add.input if m.producer.get(i) is not None), "")
        mask = const_operand(m, add, inner)
        t = None if mask is None else mask.shape[-1]
        if mask is None or t is None or not np.array_equal(mask, causal_mask(t)):
            return None
        nodes.append(add)
        scores, causal = inner, True
    mm = m.made_by(scores, "MatMul")
    if mm is None:
        return None
    nodes.append(mm)
    return mm.input[0], mm.input[1], causal, nodes


def _output(m: Match, probs: str) -> tuple[str, str, Array, Array | None, Nodes] | None:
    """probs @ v -> merge heads -> @ Wo [+ b]: (v head, output tensor, Wo, bo, nodes)."""
    av = m.sole_reader(probs)
    if av is None or av.op_type != "MatMul" or av.input[0] != probs:
        return None
    t = m.sole_reader(av.output[0])
    merge = None if not _perm(t, [0, 2, 1, 3]) or t is None else m.sole_reader(t.output[0])
    mm = None if merge is None or merge.op_type != "Reshape" else m.sole_reader(merge.output[0])
    if t is None or merge is None or mm is None or mm.op_type != "MatMul":
        return None
    wo = m.const(mm.input[1])
    if wo is None or mm.input[0] != merge.output[0]:
        return None
    nodes = [av, t, merge, mm]
    out, bias = mm.output[0], None
    add = m.sole_reader(out)
    if add is not None and add.op_type == "Add":
        bias = const_operand(m, add, out)
        if bias is not None:
            nodes.append(add)
            out = add.output[0]
    return av.input[1], out, wo, bias, nodes


def fuse(m: Match) -> None:
    for node in m.model.nodes:
        if node.op_type == "Softmax" and id(node) not in m.taken:
            layer = _attention(m, node)
            if layer is not None:
                m.prepared[id(layer.node)] = layer


def _attention(m: Match, softmax: onnx.NodeProto) -> Layer | None:
    centre = _centre(m, softmax)
    tail = None if centre is None else _output(m, softmax.output[0])
    if centre is None or tail is None:
        return None
    q_head, k_head, causal, centre_nodes = centre
    v_head, out, wo, bo, tail_nodes = tail
    parts = [
        _projection(m, q_head, [0, 2, 1, 3]),
        _projection(m, k_head, [0, 2, 3, 1]),
        _projection(m, v_head, [0, 2, 1, 3]),
    ]
    if any(p is None for p in parts):
        return None
    q, k, v = (p for p in parts if p is not None)
    x, shape, memory = q[0], q[3], k[0]  # memory is x itself unless it is a cross-attention
    if v[0] != memory or k[3] != v[3] or len(shape) != 4 or len(k[3]) != 4:
        return None
    if k[3][2:] != shape[2:] or (memory == x and k[3] != shape) or (memory != x and causal):
        return None
    heads, d = shape[2], shape[2] * shape[3]
    with_bias = [p[2] is not None for p in (q, k, v)]
    if len(set(with_bias)) != 1 or (bo is not None) != with_bias[0] or wo.shape != (d, d):
        return None
    scale = 1 / math.sqrt(d // heads)
    weights = [q[1] / np.float32(scale), k[1], v[1]]
    params = {"in_proj_weight": np.concatenate([w.T for w in weights]).astype(np.float32)}
    params["out_proj.weight"] = np.ascontiguousarray(wo.T)
    if bo is not None and q[2] is not None and k[2] is not None and v[2] is not None:
        biases = [q[2] / np.float32(scale), k[2], v[2]]
        params["in_proj_bias"] = np.concatenate([np.reshape(b, -1) for b in biases])
        params["out_proj.bias"] = np.reshape(bo, -1)
    attrs: dict[str, object] = {"heads": heads}
    if causal:
        attrs["causal"] = True
    if bo is None:
        attrs["bias"] = False
    last = tail_nodes[-1]
    for n in [*centre_nodes, *tail_nodes[:-1], *q[4], *k[4], *v[4]]:
        m.take(n)
    return Layer("attention", attrs, [x] if memory == x else [x, memory], out, last, params)
