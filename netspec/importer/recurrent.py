"""Recovering rnn, lstm, gru and bidirectional(...) from ONNX's RNN, LSTM and GRU nodes.

The exporters run these ops time-major, so a batch-major layer is a Transpose(1, 0, 2) in front
(`fuse_time_major` folds it in before matching) and one of a few small chains behind: all states
through Squeeze or Transpose+Reshape (then Transpose back, as torch writes it), or the last state
Y_h through Squeeze or Transpose+Reshape (netspec's own). ONNX's gate blocks (LSTM i,o,f,c; GRU
z,r,h) are put back in torch's order (i,f,g,o; r,z,n), which netspec's parameters use.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from netspec.importer.layers import Layer, Match, Matcher, Nested, attrs_of, ints
from netspec.ops.recurrent import Gru, Lstm, Rnn

Cell = type[Rnn] | type[Lstm] | type[Gru]
_KINDS: dict[str, Cell] = {"RNN": Rnn, "LSTM": Lstm, "GRU": Gru}
# The activations each op computes with netspec's (and torch's) cells.
_ACTIVATIONS: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {
    "LSTM": {("sigmoid", "tanh", "tanh"): {}},
    "GRU": {("sigmoid", "tanh"): {}},
    "RNN": {("tanh",): {}, ("relu",): {"nonlinearity": "relu"}},
}


def fuse_time_major(m: Match) -> None:
    """Before matching: a Transpose(1, 0, 2) that only a recurrent node reads, as its X, is part
    of that layer (netspec's per-sample [T, F] is batch-major)."""
    producer = {o: n for n in m.model.nodes for o in n.output}
    for node in m.model.nodes:
        if node.op_type not in _KINDS or not node.input:
            continue
        t = producer.get(node.input[0])
        if t is None or t.op_type != "Transpose" or list(attrs_of(t).get("perm", [])) != [1, 0, 2]:
            continue
        if m.sole_reader(node.input[0]) is node:
            m.take(t)
            m.batch_major[id(node)] = t.input[0]


def _next(m: Match, tensor: str, op: str) -> onnx.NodeProto | None:
    node = m.sole_reader(tensor)
    return node if node is not None and node.op_type == op else None


def _transpose(m: Match, tensor: str, perm: list[int]) -> onnx.NodeProto | None:
    node = _next(m, tensor, "Transpose")
    return node if node is not None and list(attrs_of(node).get("perm", [])) == perm else None


def _reshape(m: Match, tensor: str, allowed: list[list[int]]) -> onnx.NodeProto | None:
    node = _next(m, tensor, "Reshape")
    return node if node is not None and ints(m, node, 1, "shape") in allowed else None


def _all_states(m: Match, y: str, d: int, h: int) -> list[onnx.NodeProto] | None:
    """Y (T, D, N, H) -> (N, T, D*H): the nodes of a chain that does it, or None."""
    if d == 1:
        sq = _next(m, y, "Squeeze")
        if sq is not None and ints(m, sq, 1, "axes") == [1]:  # torch: (T, N, H), then back
            back = _transpose(m, sq.output[0], [1, 0, 2])
            return None if back is None else [sq, back]
    t = _transpose(m, y, [2, 0, 1, 3])  # netspec: (N, T, D, H) -> (N, T, D*H)
    if t is not None:
        r = _reshape(m, t.output[0], [[0, 0, d * h], [0, 0, -1]])
        return None if r is None else [t, r]
    t = _transpose(m, y, [0, 2, 1, 3])  # torch: (T, N, D, H) -> (T, N, D*H), then back
    if t is not None:
        r = _reshape(m, t.output[0], [[0, 0, d * h], [0, 0, -1]])
        back = None if r is None else _transpose(m, r.output[0], [1, 0, 2])
        return None if r is None or back is None else [t, r, back]
    return None


def _last_state(m: Match, y_h: str, d: int, h: int) -> list[onnx.NodeProto] | None:
    """Y_h (D, N, H) -> (N, D*H), netspec's chains (the backward direction second)."""
    if d == 1:
        sq = _next(m, y_h, "Squeeze")
        return [sq] if sq is not None and ints(m, sq, 1, "axes") == [0] else None
    t = _transpose(m, y_h, [1, 0, 2])
    r = None if t is None else _reshape(m, t.output[0], [[0, d * h], [0, -1]])
    return None if t is None or r is None else [t, r]


def _last_step(m: Match, tensor: str, steps: int) -> onnx.NodeProto | None:
    """A Gather of the last time step of (N, T, H): torch's `y[:, -1]`."""
    g = _next(m, tensor, "Gather")
    index = None if g is None else m.const(g.input[1])
    if g is None or index is None or index.ndim != 0 or attrs_of(g).get("axis", 0) != 1:
        return None
    return g if int(index) in (-1, steps - 1) else None


def _zero(m: Match, node: onnx.NodeProto, k: int) -> bool:
    """Input k is absent or a constant of zeros (the exporters' initial states and peepholes)."""
    if len(node.input) <= k or not node.input[k]:
        return True
    value = m.const(node.input[k])
    return value is not None and not np.any(value)


def _torch_order(a: np.ndarray, order: tuple[int, ...], h: int) -> np.ndarray:
    """ONNX gate blocks (axis 0) in torch's order: ONNX block k is torch block order[k]."""
    blocks = {torch_k: a[k * h : (k + 1) * h] for k, torch_k in enumerate(order)}
    return np.ascontiguousarray(np.concatenate([blocks[j] for j in range(len(order))]))


def _params(
    m: Match, node: onnx.NodeProto, cls: Cell, d: int, h: int, f: int
) -> dict[str, np.ndarray] | None:
    """netspec's weight_ih, weight_hh, bias_ih, bias_hh (fwd./bwd. when d is 2) from W, R, B."""
    w, r = m.const(node.input[1]), m.const(node.input[2])
    g = cls.gates
    if w is None or r is None or w.shape != (d, g * h, f) or r.shape != (d, g * h, h):
        return None
    b = m.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    given = len(node.input) > 3 and bool(node.input[3])
    if given and (b is None or b.shape != (d, 2 * g * h)):
        return None
    b = np.zeros((d, 2 * g * h), dtype=w.dtype) if b is None else b
    prefixes = ("",) if d == 1 else ("fwd.", "bwd.")
    out: dict[str, np.ndarray] = {}
    for k, pre in enumerate(prefixes):
        for name, arr in (
            ("weight_ih", w[k]),
            ("weight_hh", r[k]),
            ("bias_ih", b[k, : g * h]),
            ("bias_hh", b[k, g * h :]),
        ):
            out[f"{pre}{name}"] = _torch_order(arr, cls.onnx_order, h)
    return out


def _cell_attrs(node: onnx.NodeProto, d: int) -> dict[str, Any] | None:
    """The inner layer's attributes beyond hidden; None where the node computes something
    netspec's cells do not (clipping, coupled gates, other activations, ONNX's GRU reset)."""
    a = attrs_of(node)
    if a.get("clip") is not None or a.get("input_forget", 0) or a.get("layout", 0):
        return None
    if node.op_type == "GRU" and a.get("linear_before_reset", 0) != 1:
        return None  # netspec's (torch's) n gate is r * (W_hn h + b_hn)
    table = _ACTIVATIONS[node.op_type]
    default = next(iter(table))
    given = a.get("activations", list(default) * d)
    acts = tuple((x.decode() if isinstance(x, bytes) else str(x)).lower() for x in given)
    per = len(acts) // d
    if per == 0 or acts != acts[:per] * d:
        return None  # directions with different activations
    if a.get("activation_alpha") or a.get("activation_beta"):
        return None
    found = table.get(acts[:per])
    return None if found is None else dict(found)


def recurrent(node: onnx.NodeProto, m: Match) -> Layer | None:
    source = m.batch_major.get(id(node))
    cls = _KINDS[node.op_type]
    a = attrs_of(node)
    d = {"forward": 1, "bidirectional": 2}.get(a.get("direction", "forward"), 0)
    h = int(a.get("hidden_size", 0))
    shape = m.shape(source) if source is not None else None
    if source is None or d == 0 or h < 1 or shape is None or len(shape) != 2:
        return None
    inner = _cell_attrs(node, d)
    # No sequence_lens; initial states and peepholes zero: netspec's layers start from zero.
    lengths = len(node.input) > 4 and bool(node.input[4])
    if inner is None or lengths or not all(_zero(m, node, k) for k in (5, 6, 7)):
        return None
    params = _params(m, node, cls, d, h, shape[1])
    if params is None:
        return None
    outs = [o if o and (o in m.readers or o in m.model.outputs) else "" for o in node.output]
    chain = _outputs(m, outs, d, h, shape[0])
    if chain is None:
        return None
    nodes, out, sequences = chain
    for n in nodes:
        m.take(n)
    cell = {"hidden": h, **inner}
    if sequences:
        cell["return_sequences"] = True
    if d == 1:
        return Layer(cls.kind(), cell, [source], out, node, params)
    layer = Nested(cls.kind(), cell)
    return Layer("bidirectional", {"layer": layer}, [source], out, node, params)


def _outputs(
    m: Match, outs: list[str], d: int, h: int, steps: int
) -> tuple[list[onnx.NodeProto], str, bool] | None:
    """The nodes after the recurrent one, the layer's output tensor, and return_sequences."""
    y, y_h = outs[0], outs[1] if len(outs) > 1 else ""
    if any(outs[2:]) or bool(y) == bool(y_h):
        return None  # a cell state read, or both outputs: not one netspec layer
    if y:
        nodes = _all_states(m, y, d, h)
        if nodes is None:
            return None
        last = _last_step(m, nodes[-1].output[0], steps) if d == 1 else None
        if last is not None:
            return [*nodes, last], last.output[0], False
        return nodes, nodes[-1].output[0], True
    nodes = _last_state(m, y_h, d, h)
    return None if nodes is None else (nodes, nodes[-1].output[0], False)


MATCHERS: dict[str, Matcher] = {op: recurrent for op in _KINDS}
