"""Reading an ONNX file for import: refusing what is not a usable model, loading external data
from inside the model's folder only, ordering the nodes (a cycle or a dangling input is an
error), and folding constants (initializers, Constant nodes, shape subgraphs) into arrays."""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.ops.base import Array

# Ops evaluated at import time when every input is a constant. Shape is folded with the batch
# axis as 0, which Reshape reads as "copy this axis": the Shape->Gather->Unsqueeze->Concat
# chain some exporters write for a flatten becomes the constant [0, -1].
_NEVER_FOLD = {"Dropout", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"}


def fail(message: str, hint: str | None = None) -> NetspecError:
    return NetspecError.at(message, hint=hint, exit_code=EXIT_RUNTIME)


@dataclass
class Model:
    """A read model: its nodes in order (constants folded away), the constant arrays, the
    graph's inputs and outputs, and the static per-sample shapes shape inference found."""

    nodes: list[onnx.NodeProto]
    consts: dict[str, Array]
    inputs: dict[str, tuple[list[int], str]]  # name -> (per-sample shape, dtype)
    outputs: list[str]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per sample, no batch
    opset: int = 13
    # What the file stores (initializers, Constant nodes), not what folding computed.
    stored: set[str] = field(default_factory=set)


def read(path: Path) -> Model:
    model = _load(path)
    # Cycles and dangling inputs first: the checker reports both as "not sorted", naming no node.
    order(list(model.graph.node), {v.name for v in model.graph.input} | _init_names(model))
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # the checker's ValidationError, or protobuf's on odd fields
        raise fail(f"{path} is not a valid ONNX model: {' '.join(str(e).split())[:300]}") from None
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    inits = set(consts)
    inputs = {}
    for v in g.input:
        if v.name in inits:
            continue  # old exporters list initializers among the inputs too
        inputs[v.name] = _input_info(v)
    nodes = order(list(g.node), set(inputs) | inits)
    shapes, types = _shapes(model)
    kept = fold(nodes, consts, shapes, opset, {o.name for o in g.output}, types)
    return Model(
        kept, consts, inputs, [o.name for o in g.output], shapes, opset, _stored(nodes, inits)
    )


def _stored(nodes: list[onnx.NodeProto], inits: set[str]) -> set[str]:
    """The initializers, Constant nodes' values and Identities of either (the TorchScript
    exporter shares equal initializers so): what the file stores rather than computes."""
    stored = set(inits)
    for n in nodes:
        if n.op_type == "Constant" or (n.op_type == "Identity" and n.input[0] in stored):
            stored.update(n.output)
    return stored


def _init_names(model: onnx.ModelProto) -> set[str]:
    return {t.name for t in model.graph.initializer}


def _load(path: Path) -> onnx.ModelProto:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise fail(f"cannot read {path}: {e.strerror or e}") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf's DecodeError, whatever the runtime behind it
        raise fail(
            f"{path} is not an ONNX model (it does not parse as one; truncated or another format)",
            hint="give a .onnx file written by an exporter (torch.onnx.export, netspec export)",
        ) from None
    if model.ir_version == 0 or not model.HasField("graph") or not model.graph.node:
        raise fail(
            f"{path} is not an ONNX model (no IR version or no graph nodes)",
            hint="give a .onnx file written by an exporter (torch.onnx.export, netspec export)",
        )
    _load_external(model, path.parent)
    return model


def _load_external(model: onnx.ModelProto, folder: Path) -> None:
    """External tensors are read only from files inside the model's folder."""
    root = folder.resolve()
    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        where = (root / info.get("location", "")).resolve()
        if root not in where.parents or not where.is_file():
            raise fail(
                f"initializer '{t.name}' keeps its data in '{info.get('location', '')}', "
                f"which is not a file inside the model's folder {root}",
                hint="keep a model's external data files beside it",
            )
        offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        with where.open("rb") as f:
            f.seek(offset)
            raw = f.read() if length < 0 else f.read(length)
        t.raw_data = raw
        t.data_location = onnx.TensorProto.DEFAULT
        del t.external_data[:]


def _input_info(v: onnx.ValueInfoProto) -> tuple[list[int], str]:
    tt = v.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
    if len(dims) < 1 or any(d < 1 for d in dims[1:]):
        raise fail(
            f"graph input '{v.name}' has shape {dims}: netspec needs a batch axis and static "
            "per-sample dimensions"
        )
    dtypes: dict[int, str] = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}
    dtype = dtypes.get(tt.elem_type)
    if dtype is None:
        raise fail(f"graph input '{v.name}' has element type {tt.elem_type}: float32 or int64")
    return dims[1:], dtype


def order(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """The nodes in an order where each runs after what it reads; a dangling input (read, never
    produced) or a cycle is an error naming the nodes."""
    producer = {o: n for n in nodes for o in n.output if o}
    for n in nodes:
        for i in n.input:
            if i and i not in producer and i not in available:
                raise fail(
                    f"node '{n.name or n.op_type}' ({n.op_type}) reads '{i}', which no node, "
                    "initializer or graph input provides (a dangling input)"
                )
    waiting = {id(n): sum(1 for i in n.input if i in producer) for n in nodes}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            if i in producer:
                readers.setdefault(i, []).append(n)
    # The file's own order wherever it is a valid one (exporters write one): the earliest
    # ready node first, so the spec's statements follow the model's.
    index = {id(n): k for k, n in enumerate(nodes)}
    ready = [k for k, n in enumerate(nodes) if waiting[id(n)] == 0]
    heapq.heapify(ready)
    out: list[onnx.NodeProto] = []
    while ready:
        n = nodes[heapq.heappop(ready)]
        out.append(n)
        for o in n.output:
            for r in readers.get(o, []):
                waiting[id(r)] -= 1
                if waiting[id(r)] == 0:
                    heapq.heappush(ready, index[id(r)])
    if len(out) < len(nodes):
        stuck = [n.name or n.op_type for n in nodes if waiting[id(n)] > 0]
        raise fail(f"the graph has a cycle through node(s) {', '.join(stuck[:5])}")
    return out


def _shapes(model: onnx.ModelProto) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """Per-sample static shapes and element types (TensorProto codes) shape inference found."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shapes are a help to matching, not a requirement
        return {}, {}
    shapes, types = {}, {}
    for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if v.type.tensor_type.elem_type:
            types[v.name] = v.type.tensor_type.elem_type
        dims = v.type.tensor_type.shape.dim
        if v.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims[1:]):
            shapes[v.name] = tuple(d.dim_value for d in dims[1:])
    return shapes, types


def fold(
    nodes: list[onnx.NodeProto],
    consts: dict[str, Array],
    shapes: dict[str, tuple[int, ...]],
    opset: int,
    keep: set[str],
    types: dict[str, int] | None = None,
) -> list[onnx.NodeProto]:
    """Evaluate every node whose inputs are all constants (Shape of a tensor of known shape,
    and CastLike to one of known type, count as such) into `consts`; the nodes left are the
    network. torch's dynamo exporter writes CastLike(constant, x) for every literal it uses."""
    kept = []
    types = types or {}
    for n in nodes:
        if n.op_type == "Shape" and n.input[0] not in consts and n.input[0] in shapes:
            consts[n.output[0]] = _folded_shape(n, shapes[n.input[0]])
            continue
        like = n.input[1] if n.op_type == "CastLike" and len(n.input) == 2 else ""
        if (
            like
            and n.input[0] in consts
            and like not in consts
            and like in types
            and n.output[0] not in keep
        ):
            dtype = helper.tensor_dtype_to_np_dtype(types[like])
            consts[n.output[0]] = np.asarray(consts[n.input[0]]).astype(dtype)
            continue
        foldable = n.op_type not in _NEVER_FOLD and not (set(n.output) & keep)
        evaluable = n.op_type == "Constant" or bool(n.input)
        if foldable and evaluable and all(i in consts for i in n.input if i):
            consts.update(_evaluate(n, consts, opset))
            continue
        kept.append(n)
    return kept


def _folded_shape(n: onnx.NodeProto, shape: tuple[int, ...]) -> Array:
    full = np.array([0, *shape], dtype=np.int64)
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    start, end = attrs.get("start", 0), attrs.get("end")
    return full[start:end]


def _evaluate(n: onnx.NodeProto, consts: dict[str, Array], opset: int) -> dict[str, Array]:
    feeds = {i: consts[i] for i in n.input if i}
    try:
        graph = helper.make_graph(
            [n],
            "fold",
            [
                helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                for i, a in feeds.items()
            ],
            [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in n.output],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception as e:  # any evaluator failure is the model's problem
        raise fail(
            f"cannot fold constant node '{n.name or n.op_type}' ({n.op_type}): {e}"
        ) from None
    return {o: np.asarray(r) for o, r in zip(n.output, results, strict=True) if o}


def unsupported(nodes: list[onnx.NodeProto]) -> NetspecError:
    counts = Counter(n.op_type for n in nodes)
    parts = []
    for op, count in sorted(counts.items()):
        names = [n.name or n.output[0] for n in nodes if n.op_type == op][:3]
        parts.append(f"{op} x{count} (first: {', '.join(names)})")
    return fail(
        "the model uses ONNX ops netspec cannot express: " + "; ".join(parts),
        hint="nothing was written; `netspec docs` lists the ops netspec has",
    )
