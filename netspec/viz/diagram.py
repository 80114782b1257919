"""An analysed network -> a diagram: boxes on a grid, clusters for blocks, labelled edges.

A box is one layer, or a collapsed block (a cluster) standing for all its layers. Clusters
come from each node's `scope` (block instances) plus the implicit parent of a repetition:
`layer3 = Bottleneck(256) * 36` makes instances `layer3.0` ... `layer3.35`, grouped as `layer3`.
The drawing formats (svg.py, dot.py, raster.py) all start from this one description.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from netspec.errors import Diagnostic, Severity
from netspec.ir import Analysis, Node
from netspec.ops.base import Shape
from netspec.viz.layout import layout

Status = Literal["ok", "warning", "failed", "unchecked"]

# Auto depth: the deepest nesting whose diagram has at most this many boxes.
READABLE_BOXES = 40
_REPEAT = re.compile(r"(.+)\.\d+")


@dataclass(frozen=True)
class Box:
    name: str  # a node name, or a cluster name when collapsed
    title: str  # `conv2d(6, 5)`, or the cluster name
    subtitle: str  # the node name, or `12 layers · 1.2M params`
    category: str  # the op's category; "block" for a collapsed cluster
    row: int
    col: int
    members: tuple[str, ...]
    status: Status = "ok"
    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    tensor: str
    shape: Shape | None  # None where the tensor's shape is unknown (a failed layer upstream)


@dataclass(frozen=True)
class Cluster:
    name: str
    level: int  # 0 for an outermost block
    boxes: tuple[str, ...]  # the boxes inside, at any depth


@dataclass
class Diagram:
    title: str
    summary: str
    boxes: dict[str, Box]
    edges: list[Edge]
    clusters: list[Cluster]  # expanded blocks, outermost first
    outputs: list[Edge] = field(default_factory=list)  # dst "" : the network's outputs
    notes: list[str] = field(default_factory=list)  # diagnostics tied to no layer
    depth: int = 0
    max_depth: int = 0


def cluster_paths(analysis: Analysis) -> dict[str, tuple[str, ...]]:
    """Each node's enclosing clusters, outermost first."""
    nodes = analysis.network.nodes
    names = {n.name for n in nodes}
    implicit: set[str] = set()
    raw: dict[str, list[str]] = {}
    for node in nodes:
        path: list[str] = []
        for scope in node.scope:
            m = _REPEAT.fullmatch(scope)
            if m is not None and m.group(1) not in path and m.group(1) not in names:
                path.append(m.group(1))
                implicit.add(m.group(1))
            path.append(scope)
        raw[node.name] = path
    for node in nodes:  # `branch4 = maxpool2d(...) BasicConv(...)`: branch4.0 joins branch4
        m = _REPEAT.fullmatch(node.name)
        path = raw[node.name]
        if m is not None and m.group(1) in implicit and m.group(1) not in path:
            path.append(m.group(1))
    # A cluster holding one sub-cluster and nothing else is drawn as that sub-cluster.
    children: dict[str, set[str]] = {}
    for path in raw.values():
        for i, c in enumerate(path):
            children.setdefault(c, set()).add(path[i + 1] if i + 1 < len(path) else "")
    redundant = {c for c, kids in children.items() if len(kids) == 1 and "" not in kids}
    return {n: tuple(c for c in p if c not in redundant) for n, p in raw.items()}


def units(paths: dict[str, tuple[str, ...]], depth: int) -> dict[str, str]:
    """Node -> the box drawing it when clusters nested `depth` deep or more are collapsed."""
    return {n: (p[depth] if len(p) > depth else n) for n, p in paths.items()}


def auto_depth(paths: dict[str, tuple[str, ...]]) -> int:
    """The deepest expansion that stays readable: a ResNet-152 shows its four stages."""
    deepest = max((len(p) for p in paths.values()), default=0)
    for depth in range(deepest, 0, -1):
        if len(set(units(paths, depth).values())) <= READABLE_BOXES:
            return depth
    return 0


def call_text(op: BaseModel) -> str:
    """The op as the DSL writes it, attributes at their defaults left out: `conv2d(6, 5)`."""
    fields = type(op).model_fields
    if getattr(op, "op", "") == "input":  # `input [1, 32, 32]`, as declared
        dtype = getattr(op, "dtype", "float32")
        shape = _value(getattr(op, "shape", ()))
        return f"input {shape}" if dtype == "float32" else f"input {dtype}{shape}"
    values = op.model_dump(exclude={"op"})
    positional: tuple[str, ...] = getattr(type(op), "positional", ())
    parts: list[str] = []
    bare = True
    for name in positional:
        default = fields[name].default
        value = getattr(op, name)
        if bare and (default is PydanticUndefined or value != default):
            parts.append(_value(value))
        else:
            bare = False
    shown = set(positional[: len(parts)])
    for name in values:
        value = getattr(op, name)
        if name in shown or value is None or value == fields[name].default:
            continue
        parts.append(f"{name}={_value(value)}")
    kind = str(getattr(op, "op", type(op).__name__))
    return f"{kind}({', '.join(parts)})" if parts else kind


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, BaseModel):
        return call_text(value)
    return str(value)


def human(n: float) -> str:
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.3g}{suffix}" if suffix else f"{n:g}"
        n /= 1000
    return f"{n:.3g}P"


def build(analysis: Analysis, diags: list[Diagnostic], depth: int | None = None) -> Diagram:
    """The diagram with clusters nested `depth` deep or more collapsed (None: readable)."""
    net = analysis.network
    paths = cluster_paths(analysis)
    deepest = max((len(p) for p in paths.values()), default=0)
    chosen = auto_depth(paths) if depth is None else min(depth, deepest)
    unit_of = units(paths, chosen)
    place, raw_edges = layout(net, unit_of)
    by_layer: dict[str, list[Diagnostic]] = {}
    notes: list[str] = []
    for d in diags:
        if d.layer is not None and d.layer in unit_of:
            by_layer.setdefault(d.layer, []).append(d)
        else:
            notes.append(f"{d.severity}: {d.message}")
    members: dict[str, list[Node]] = {}
    for node in net.nodes:
        members.setdefault(unit_of[node.name], []).append(node)
    boxes: dict[str, Box] = {}
    for unit, nodes in members.items():
        row, col = place[unit]
        found = [d for n in nodes for d in by_layer.get(n.name, [])]
        status = _status(analysis, nodes, found)
        messages = tuple(d.message for d in found if d.severity is Severity.ERROR) or tuple(
            d.message for d in found
        )
        if len(nodes) == 1 and nodes[0].name == unit:
            node = nodes[0]
            boxes[unit] = Box(
                unit,
                call_text(node.op),
                unit,
                type(node.op).category,
                row,
                col,
                (unit,),
                status,
                messages,
            )
        else:
            params = sum(analysis.layers[n.name].params for n in nodes if n.name in analysis.layers)
            inner = {paths[n.name][chosen + 1] for n in nodes if len(paths[n.name]) > chosen + 1}
            subtitle = (f"{len(inner)} blocks · " if len(inner) > 1 else "") + (
                f"{len(nodes)} layers" + (f" · {human(params)} params" if params else "")
            )
            names = tuple(n.name for n in nodes)
            boxes[unit] = Box(unit, unit, subtitle, "block", row, col, names, status, messages)
    edges = [Edge(s, d, t, _shape(analysis, t)) for s, d, t in raw_edges]
    outputs = [Edge(unit_of[o], "", o, _shape(analysis, o)) for o in net.outputs if o in unit_of]
    clusters = _clusters(paths, unit_of, chosen)
    errors = sum(d.severity is Severity.ERROR for d in diags)
    summary = (
        f"{errors} error(s): the layers after a failure were not checked"
        if errors
        else f"{analysis.trainable_params:,} parameters · {human(analysis.macs)} MACs per sample"
    )
    return Diagram(net.name, summary, boxes, edges, clusters, outputs, notes, chosen, deepest)


def _shape(analysis: Analysis, tensor: str) -> Shape | None:
    info = analysis.layers.get(tensor)
    return None if info is None else info.output_shape


def _status(analysis: Analysis, nodes: list[Node], found: list[Diagnostic]) -> Status:
    infos = [analysis.layers.get(n.name) for n in nodes]
    if any(d.severity is Severity.ERROR for d in found) or any(i and i.failed for i in infos):
        return "failed"
    if any(i is None for i in infos):
        return "unchecked"
    return "warning" if found else "ok"


def _clusters(
    paths: dict[str, tuple[str, ...]], unit_of: dict[str, str], depth: int
) -> list[Cluster]:
    inside: dict[str, list[str]] = {}
    level: dict[str, int] = {}
    for node, path in paths.items():
        for i, c in enumerate(path[:depth]):
            box = unit_of[node]
            kept = inside.setdefault(c, [])
            if box not in kept:
                kept.append(box)
            level[c] = i
    ordered = sorted(inside, key=lambda c: level[c])
    return [Cluster(c, level[c], tuple(inside[c])) for c in ordered]
