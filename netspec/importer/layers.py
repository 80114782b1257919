"""What matching produces, and the context each op family's matcher reads the graph through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper

from netspec.importer.reading import Model
from netspec.ops.base import Array


@dataclass(frozen=True)
class Nested:
    """A layer written inside another's call, `bidirectional(lstm(64))`: its op and the
    attributes that differ from the op's defaults."""

    op: str
    attrs: dict[str, Any]


@dataclass
class Layer:
    """One netspec layer recovered from one or more ONNX nodes.

    `attrs` are the DSL attributes that differ from the op's defaults; `inputs` and `output`
    are ONNX tensor names (renamed to layer names on emission); `params` are keyed by the op's
    own local parameter names (`weight`, `bias`, `running_mean`, ...)."""

    op: str
    attrs: dict[str, Any]
    inputs: list[str]
    output: str
    node: onnx.NodeProto
    params: dict[str, Array] = field(default_factory=dict)


class Match:
    """The graph as a matcher sees it: constants, readers of a tensor, static shapes, and the
    nodes already taken by a pattern."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        self.producer = {o: n for n in model.nodes for o in n.output if o}
        for n in model.nodes:
            for i in n.input:
                self.readers.setdefault(i, []).append(n)
        self.taken: set[int] = set()
        # A conv's real input and the extra pads of a Pad folded into it (windows.fuse_pads).
        self.padded: dict[int, tuple[str, list[int]]] = {}
        # A recurrent node's batch-major input, its Transpose folded in (recurrent.py).
        self.batch_major: dict[int, str] = {}
        # Layers a pre-pass recovered from a whole pattern, emitted at the pattern's last node
        # (every other node of it taken): attention.py.
        self.prepared: dict[int, Layer] = {}

    def const(self, name: str) -> Array | None:
        return self.model.consts.get(name) if name else None

    def bias(self, node: onnx.NodeProto, k: int = 2) -> Array | None:
        """Input k as a bias; None when absent or when it is all zeros that folding computed
        rather than the file stored (torch's dynamo exporter, unoptimised, writes a conv
        without bias as Expand(CastLike(0)) to its channels): no parameter, the same output."""
        b = self.const(node.input[k]) if len(node.input) > k else None
        computed = len(node.input) > k and node.input[k] not in self.model.stored
        return None if b is None or (computed and not np.any(b)) else b

    def shape(self, name: str) -> tuple[int, ...] | None:
        if name in self.model.inputs:
            return tuple(self.model.inputs[name][0])
        return self.model.shapes.get(name)

    def sole_reader(self, tensor: str) -> onnx.NodeProto | None:
        """The one node reading `tensor` when it is not also a graph output."""
        users = self.readers.get(tensor, [])
        if len(users) != 1 or tensor in self.model.outputs:
            return None
        return users[0]

    def take(self, node: onnx.NodeProto) -> None:
        self.taken.add(id(node))

    def made_by(self, tensor: str, op: str) -> onnx.NodeProto | None:
        """The node of type `op` that produces `tensor` and whose output nothing else reads."""
        node = self.producer.get(tensor)
        if node is None or node.op_type != op or len(self.readers.get(tensor, [])) != 1:
            return None
        return None if tensor in self.model.outputs else node


# One node's recovery: a layer, the few layers some nodes need (a Gather of one position is a
# slice and a reshape), or None when netspec cannot express it.
Matcher = Callable[[onnx.NodeProto, Match], Layer | list[Layer] | None]


def attrs_of(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def compact(values: list[int] | tuple[int, ...]) -> int | list[int]:
    """One value when every dimension agrees (`3`), else the list (`[3, 2]`)."""
    vals = [int(v) for v in values]
    return vals[0] if len(set(vals)) == 1 else vals


def f32(x: float) -> float:
    """A float32 attribute as the short decimal it was written from (1e-05, not 9.99e-06)."""
    return float(f"{np.float32(x):.7g}")


def used_outputs(node: onnx.NodeProto, m: Match) -> list[str]:
    return [o for o in node.output if o and (o in m.readers or o in m.model.outputs)]


def ints(m: Match, node: onnx.NodeProto, k: int, attr: str) -> list[int] | None:
    """An axes- or shape-like value: input k where the opset made it one, else the attribute;
    None when it is not constant."""
    if len(node.input) > k and node.input[k]:
        found = m.const(node.input[k])
        return None if found is None else [int(v) for v in np.asarray(found).reshape(-1)]
    value = attrs_of(node).get(attr)
    return None if value is None else [int(v) for v in value]


def const_operand(m: Match, node: onnx.NodeProto, other: str) -> Array | None:
    """The constant operand of a binary node, given the name of its other operand."""
    names = [i for i in node.input if i != other]
    return m.const(names[0]) if len(names) == 1 else None
