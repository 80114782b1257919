"""Analysed IR + parameter arrays -> an ONNX ModelProto.

Each op lowers itself (`Op.to_onnx`) into plain `OnnxNode` descriptions through `_Lowering`,
the exporter's `OnnxIO`; this module only names things, collects initializers, wires aliases
(an op that is the identity at inference, such as dropout, returns None) and checks the result.
Tensor and initializer names are the spec's: layer `conv1` produces tensor `conv1` and reads
initializer `conv1.weight`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from netspec import __version__
from netspec.errors import EXIT_RUNTIME, EXIT_USAGE, NetspecError
from netspec.ir import Analysis, Network, Node
from netspec.losses import LOSSES
from netspec.ops.base import Array, OnnxNode, OpsetError, Params, Shape
from netspec.runs import check_weights, expected_shapes

MIN_OPSET = 13

# onnxruntime exposes no "newest opset" query, and loading a model whose opset is newer than its
# kernels can fail late (at the first node whose schema changed). So the default opset is the
# newest one the installed onnx knows, capped by this table of onnxruntime releases (from its
# compatibility notes); releases newer than the table get the last row, a safe floor.
_ORT_MAX_OPSET: tuple[tuple[tuple[int, int], int], ...] = (
    ((1, 14), 18),
    ((1, 15), 19),
    ((1, 17), 20),
    ((1, 18), 21),
    ((1, 21), 22),
    ((1, 22), 23),
)

Batch = Literal["dynamic"] | int
DYNAMIC_BATCH = "N"  # the symbolic name of a dynamic batch axis
_ACTIVATION_OP = {"softmax": "Softmax", "sigmoid": "Sigmoid"}  # a loss's fused activation
_DTYPES: dict[str, int] = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}


def onnxruntime_max_opset(version: str = onnxruntime.__version__) -> int:
    major, minor = (int(p) for p in version.split(".")[:2])
    best = _ORT_MAX_OPSET[0][1]
    for (ma, mi), opset in _ORT_MAX_OPSET:
        if (major, minor) >= (ma, mi):
            best = opset
    return best


def default_opset() -> int:
    """The newest opset both the installed onnx and onnxruntime support."""
    return min(onnx.defs.onnx_opset_version(), onnxruntime_max_opset())


def loss_activation_for(network: Network) -> str | None:
    """The ONNX activation the training loss fuses into itself (softmax for cross entropy)."""
    if network.train is None:
        return None
    activation = LOSSES[network.train.loss].activation
    return None if activation is None else _ACTIVATION_OP[activation]


def model_metadata(network: Network) -> dict[str, str]:
    """Metadata props recording where the model came from and how to feed it."""
    meta = {"netspec_version": __version__, "network": network.name}
    if network.source is not None:
        meta["source"] = network.source
        # Compiled from text, or moved since: the name alone still helps.
        with contextlib.suppress(OSError):
            meta["source_sha256"] = hashlib.sha256(Path(network.source).read_bytes()).hexdigest()
    if network.labels is not None:
        meta["labels"] = json.dumps(list(network.labels))
    train = network.train
    if train is not None:
        meta["loss"] = train.loss
        if train.data is not None and train.data.normalize != "none":
            meta["input_normalization"] = train.data.normalize
    return meta


def check_params(analysis: Analysis, params: Mapping[str, Array]) -> dict[str, Array]:
    """The arrays the spec declares, checked by name and shape; float arrays as float32."""
    check_weights(params, expected_shapes(analysis), "the weights")
    out = {k: np.asarray(v) for k, v in params.items()}
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in out.items()}


class _Lowering:
    """The `OnnxIO` handed to one node's `to_onnx`; collects what it asks for in `_Graph`."""

    def __init__(
        self,
        graph: _Graph,
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


class _Graph:
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


def _normalize_input(graph: _Graph, name: str, shift: Array, scale: Array) -> str:
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


def _lower_node(graph: _Graph, node: Node, io: _Lowering) -> list[OnnxNode] | None:
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


def _to_proto(graph: _Graph, node: Node, described: list[OnnxNode]) -> list[onnx.NodeProto]:
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


def _value_info(name: str, dtype: int, shape: Shape, batch: Batch) -> onnx.ValueInfoProto:
    head: int | str = DYNAMIC_BATCH if batch == "dynamic" else batch
    return helper.make_tensor_value_info(name, dtype, [head, *shape])


def to_onnx_model(
    analysis: Analysis,
    params: Mapping[str, Array],
    *,
    opset: int | None = None,
    batch: Batch = "dynamic",
    logits: bool = False,
    loss_activation: str | None = "auto",
    metadata: Mapping[str, str] | None = None,
    normalization: Mapping[str, tuple[Array, Array]] | None = None,
    fold_batchnorm: bool = True,
) -> onnx.ModelProto:
    """The network as a checked ONNX model.

    `normalization` maps an input to the (shift, scale) its training data was normalised with;
    the model then applies (x - shift) / scale itself, so it takes raw inputs like the data files.

    `loss_activation`: "auto" appends the activation the training loss fuses into itself
    (Softmax for cross_entropy, Sigmoid for binary_cross_entropy), as output `<out>.probs`;
    None or `logits=True` exports the raw outputs. `metadata` adds to `model_metadata`.

    `fold_batchnorm` folds each batchnorm that is the only reader of a conv into the conv's
    weight and bias (exact up to float32 rounding), as inference graphs should be; the conv's own
    output tensor then no longer appears in the graph. Turn it off to keep every spec tensor.
    """
    if opset is None:
        opset = default_opset()
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise NetspecError.at(
            f"opset {opset} is not supported: choose {MIN_OPSET} to "
            f"{onnx.defs.onnx_opset_version()} (default {default_opset()})",
            exit_code=EXIT_USAGE,
        )
    if batch != "dynamic" and batch < 1:
        raise NetspecError.at(f"batch must be 'dynamic' or >= 1, got {batch}", exit_code=EXIT_USAGE)
    net = analysis.network
    graph = _Graph(analysis, check_params(analysis, params), opset)
    alias: dict[str, str] = {}  # spec tensor -> the ONNX tensor that holds it
    dtypes: dict[str, int] = {}
    graph_inputs: list[onnx.ValueInfoProto] = []

    for name in analysis.order:
        node = net.node(name)
        info = analysis.layers[name]
        if node.op.op == "input":
            dtype = _DTYPES[getattr(node.op, "dtype", "float32")]
            dtypes[name] = dtype
            graph_inputs.append(_value_info(name, dtype, analysis.shape(name), batch))
            if normalization is not None and name in normalization:
                if name in net.outputs:  # one ONNX name cannot be the raw and the normalised x
                    raise NetspecError.at(
                        f"input '{name}' is also an output of {net.name}, and the model "
                        "normalises it: the exported graph cannot give the raw input and the "
                        "normalised one the same name",
                        node.span,
                        hint=f"output a copy instead, e.g. `{name}_out = {name} -> identity`",
                    )
                alias[name] = _normalize_input(graph, name, *normalization[name])
            continue
        inputs = [alias.get(i, i) for i in node.inputs]
        io = _Lowering(graph, node, inputs, list(info.input_shapes), analysis.shape(name))
        described = _lower_node(graph, node, io)
        if described is None:
            alias[name] = inputs[0]
            dtypes[name] = dtypes.get(inputs[0], TensorProto.FLOAT)
            continue
        dtypes[name] = TensorProto.FLOAT
        graph.nodes.extend(_to_proto(graph, node, described))

    if fold_batchnorm:
        _fold_batchnorms(graph, {alias.get(o, o) for o in net.outputs})
    outputs = _wire_outputs(graph, net, alias)
    activation = loss_activation_for(net) if loss_activation == "auto" else loss_activation
    graph_outputs = []
    for out in outputs:
        final = out
        # The loss's own activation, as training applied it (a final softmax before
        # cross_entropy is refused by the analysis, so it is never applied twice).
        if activation is not None and not logits:
            final = graph.fresh(f"{out}.probs")
            graph.nodes.append(helper.make_node(activation, [out], [final], final))
        dtype = dtypes.get(alias.get(out, out), TensorProto.FLOAT)
        graph_outputs.append(_value_info(final, dtype, analysis.shape(out), batch))

    used = {i for n in graph.nodes for i in n.input}
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(arr), name)
        for name, arr in graph.initializers.items()
        if name in used
    ]
    g = helper.make_graph(
        graph.nodes, net.name, graph_inputs, graph_outputs, initializer=initializers
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        g,
        opset_imports=opsets,
        producer_name="netspec",
        producer_version=__version__,
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    helper.set_model_props(model, {**model_metadata(net), **(metadata or {})})
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise NetspecError.at(
            f"the exported ONNX model fails onnx.checker (a netspec bug; please report it): {e}",
            exit_code=EXIT_RUNTIME,
        ) from None
    return model


def _fold_batchnorms(graph: _Graph, keep: set[str]) -> None:
    """Fold each BatchNormalization that is the only reader of a Conv's output into the Conv.

    At inference batchnorm is the per-channel affine map y = s (x - mean) + beta with
    s = gamma / sqrt(var + eps), so conv-then-batchnorm is one Conv with weight s W and bias
    s (b - mean) + beta (computed in float64, then rounded once to float32). `keep` holds
    tensors that must stay visible (network outputs).
    """
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.nodes:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    inits = graph.initializers
    folded: set[int] = set()
    for conv in graph.nodes:
        out = conv.output[0]
        users = readers.get(out, [])
        if conv.op_type != "Conv" or out in keep or len(users) != 1:
            continue
        (bn,) = users
        params = [conv.input[1], *bn.input[1:5]]
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 or bn.input[0] != out:
            continue
        if not all(name in inits for name in params):
            continue
        w, gamma, beta, mean, var = (inits[name].astype(np.float64) for name in params)
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)  # (F,)
        bias = inits[conv.input[2]].astype(np.float64) if len(conv.input) > 2 else 0.0
        w_name = graph.fresh(f"{conv.name}.weight_bn_folded")
        b_name = graph.fresh(f"{conv.name}.bias_bn_folded")
        inits[w_name] = (w * scale.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32)
        inits[b_name] = ((bias - mean) * scale + beta).astype(np.float32)
        x = conv.input[0]
        del conv.input[:]
        conv.input.extend([x, w_name, b_name])
        conv.output[0] = bn.output[0]
        folded.add(id(bn))
    graph.nodes = [n for n in graph.nodes if id(n) not in folded]


def _wire_outputs(graph: _Graph, net: Network, alias: dict[str, str]) -> list[str]:
    """Give every network output a tensor of its own name, renaming rather than copying.

    An output that aliases another tensor (a trailing dropout) takes over that tensor's name
    when nothing else needs the old name; an Identity is inserted only for graph inputs,
    another output's tensor, or a second output aliasing the same tensor.
    """
    produced = {o for n in graph.nodes for o in n.output}
    taken_by_output: set[str] = set()
    for out in net.outputs:
        src = alias.get(out, out)
        if src == out:
            taken_by_output.add(out)
    renames: dict[str, str] = {}
    for out in net.outputs:
        src = alias.get(out, out)
        if src == out:
            continue
        if src in produced and src not in taken_by_output and src not in renames:
            renames[src] = out
            taken_by_output.add(out)
        else:
            graph.nodes.append(helper.make_node("Identity", [src], [out], out))
    for n in graph.nodes:
        n.input[:] = [renames.get(i, i) for i in n.input]
        n.output[:] = [renames.get(o, o) for o in n.output]
    return list(net.outputs)


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """Write the model atomically: a crash leaves the old file or the new one."""
    from netspec.files import atomic_write

    data = model.SerializeToString()

    def write(f: IO[bytes]) -> None:
        f.write(data)

    atomic_write(path, write)


def export_summary(model: onnx.ModelProto) -> dict[str, Any]:
    """Inputs, outputs and opset of a model, for the CLI's report."""

    def shape(v: onnx.ValueInfoProto) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    return {
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": {v.name: shape(v) for v in model.graph.input},
        "outputs": {v.name: shape(v) for v in model.graph.output},
        "nodes": len(model.graph.node),
        "initializers": len(model.graph.initializer),
    }
