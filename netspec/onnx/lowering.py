"""Lowering each node: the `OnnxIO` an op's `to_onnx` is handed, and the graph being built.

Each op lowers itself (`Op.to_onnx`) into plain `OnnxNode` descriptions; this module names the
tensors and initializers they ask for (the spec's own names: layer `conv1` produces tensor
`conv1` and reads initializer `conv1.weight`) and turns the descriptions into NodeProtos,
checked against the opset.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper

from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.ir import Analysis, Node
from netspec.ops.base import Array, OnnxNode, OpsetError, Params, Shape


class Lowering:
    """The `OnnxIO` handed to one node's `to_onnx`; collects what it asks for in `Graph`."""

    def __init__(
        self,
        graph: Graph,
        node: Node,
        inputs: list[str],
        input_shapes: list[Shape],
        output_shape: Shape,
    ) -> None:
        self._graph = graph
        self._node = node.name
        self.inputs = inputs
        self.output = node.name
        self.input_shapes = input_shapes
        self.output_shape = output_shape
        self.opset = graph.opset

    def _local_params(self) -> Params:
        prefix = f"{self._node}."
        return {k[len(prefix) :]: v for k, v in self._graph.params.items() if k.startswith(prefix)}

    def param(self, local: str) -> str:
        name = f"{self._node}.{local}"
        if name not in self._graph.params:
            # A bug in the op, not an opset limit: it must not look like an OpsetError.
            raise KeyError(f"{self._node} asks for parameter '{local}', which it does not declare")
        self._graph.initializers.setdefault(name, self._graph.params[name])
        return name

    def derived(self, local: str, fn: Callable[[Params], Array]) -> str:
        name = self._graph.fresh(f"{self._node}.{local}")
        self._graph.initializers[name] = _as_initializer(np.asarray(fn(self._local_params())))
        return name

    def const(self, hint: str, value: Array) -> str:
        name = self._graph.fresh(f"{self._node}.{hint}")
        self._graph.initializers[name] = np.asarray(value)
        return name

    def tmp(self, hint: str) -> str:
        return self._graph.fresh(f"{self._node}.{hint}")


class Graph:
    """Names, nodes and initializers of the graph being built."""

    def __init__(self, analysis: Analysis, params: dict[str, Array], opset: int) -> None:
        self.opset = opset
        self.params = params
        self.initializers: dict[str, Array] = {}
        self.nodes: list[onnx.NodeProto] = []
        # Every spec name is taken up front, so a tmp or const can never shadow one.
        self.taken: set[str] = set(analysis.order) | set(params)

    def fresh(self, name: str) -> str:
        base, k = name, 1
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name


def normalize_input(graph: Graph, name: str, shift: Array, scale: Array) -> str:
    """Sub and Div on a graph input; returns the tensor the network reads instead."""
    shift_name, scale_name = graph.fresh(f"{name}.norm_shift"), graph.fresh(f"{name}.norm_scale")
    graph.initializers[shift_name] = np.asarray(shift, np.float32)
    graph.initializers[scale_name] = np.asarray(scale, np.float32)
    centred, out = graph.fresh(f"{name}.centred"), graph.fresh(f"{name}.normalized")
    graph.nodes.append(helper.make_node("Sub", [name, shift_name], [centred], centred))
    graph.nodes.append(helper.make_node("Div", [centred, scale_name], [out], out))
    return out


def _as_initializer(arr: Array) -> Array:
    return arr.astype(np.float32) if arr.dtype.kind == "f" else arr


def _min_opset(op_type: str) -> int | None:
    versions = [
        s.since_version
        for s in onnx.defs.get_all_schemas_with_history()
        if s.name == op_type and s.domain == ""
    ]
    return min(versions) if versions else None


def _opset_error(node: Node, opset: int, message: str) -> NetspecError:
    return NetspecError.at(
        f"{node.op.op} '{node.name}' cannot be exported to ONNX opset {opset}: {message}",
        node.span,
        hint="export with a newer --opset",
        layer=node.name,
        exit_code=EXIT_RUNTIME,
    )


def lower_node(graph: Graph, node: Node, io: Lowering) -> list[OnnxNode] | None:
    try:
        return node.op.to_onnx(io)
    except NotImplementedError:
        raise NetspecError.at(
            f"{node.op.op} '{node.name}' has no ONNX lowering yet",
            node.span,
            layer=node.name,
            exit_code=EXIT_RUNTIME,
        ) from None
    except OpsetError as e:
        raise _opset_error(node, graph.opset, str(e)) from None


def to_proto(graph: Graph, node: Node, described: list[OnnxNode]) -> list[onnx.NodeProto]:
    protos = []
    for k, d in enumerate(described):
        schema_ok = True
        try:
            onnx.defs.get_schema(d.op_type, graph.opset, "")
        except onnx.defs.SchemaError:
            schema_ok = False
        if not schema_ok:
            since = _min_opset(d.op_type)
            why = (
                f"ONNX has no operator {d.op_type}"
                if since is None
                else f"its lowering uses {d.op_type}, which needs opset >= {since}"
            )
            raise _opset_error(node, graph.opset, why)
        name = node.name if len(described) == 1 else f"{node.name}/{k}"
        protos.append(helper.make_node(d.op_type, list(d.inputs), list(d.outputs), name, **d.attrs))
    return protos
