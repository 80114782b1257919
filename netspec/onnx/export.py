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
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from netspec import __version__
from netspec.errors import EXIT_RUNTIME, EXIT_USAGE, MAX_SOURCE_BYTES, NetspecError
from netspec.ir import Analysis, Network, Node
from netspec.losses import LOSSES
from netspec.onnx.fold import fold_batchnorms
from netspec.onnx.lowering import Graph, Lowering, lower_node, normalize_input, to_proto
from netspec.ops.base import Array, Shape
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


def loss_activation_for(network: Network, output: str | None = None) -> str | None:
    """The ONNX activation an output's training loss fuses into itself (softmax for cross
    entropy); `output` None: the first output's."""
    if network.train is None:
        return None
    chosen = network.train.output_losses(network.outputs)
    activation = LOSSES[chosen[output or network.outputs[0]][0]].activation
    return None if activation is None else _ACTIVATION_OP[activation]


def model_metadata(network: Network) -> dict[str, str]:
    """Metadata props recording where the model came from and how to feed it."""
    meta = {"netspec_version": __version__, "network": network.name}
    if network.source is not None:
        meta["source"] = network.source
        # Compiled from text, or moved since: the name alone still helps. Only a regular file
        # of a spec's size is hashed (an IR's `source` could name /dev/zero or a FIFO).
        with contextlib.suppress(OSError, ValueError):
            source = Path(network.source)
            st = source.stat()
            if stat.S_ISREG(st.st_mode) and st.st_size <= MAX_SOURCE_BYTES:
                meta["source_sha256"] = hashlib.sha256(source.read_bytes()).hexdigest()
    if network.labels is not None:
        meta["labels"] = json.dumps(list(network.labels))
    train = network.train
    if train is not None:
        meta["loss"] = train.loss
        if train.losses is not None:  # each output's, for predict to read the outputs by
            meta["losses"] = json.dumps(
                {o: n for o, (n, _) in train.output_losses(network.outputs).items()}
            )
        if train.data is not None and train.data.normalize != "none":
            meta["input_normalization"] = train.data.normalize
    return meta


def check_params(analysis: Analysis, params: Mapping[str, Array]) -> dict[str, Array]:
    """The arrays the spec declares, checked by name and shape; float arrays as float32."""
    check_weights(params, expected_shapes(analysis), "the weights")
    out = {k: np.asarray(v) for k, v in params.items()}
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in out.items()}


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
    opset = _check_request(opset, batch)
    net = analysis.network
    graph = Graph(analysis, check_params(analysis, params), opset)
    graph_inputs, alias, dtypes = _lower(graph, analysis, batch, normalization or {})
    if fold_batchnorm:
        fold_batchnorms(graph, {alias.get(o, o) for o in net.outputs})
    outputs = _wire_outputs(graph, net, alias)
    graph_outputs = []
    for out in outputs:
        auto = loss_activation == "auto"
        activation = loss_activation_for(net, out) if auto else loss_activation
        final = out
        # The loss's own activation, as training applied it (a final softmax before
        # cross_entropy is refused by the analysis, so it is never applied twice).
        if activation is not None and not logits:
            final = graph.fresh(f"{out}.probs")
            graph.nodes.append(helper.make_node(activation, [out], [final], final))
        dtype = dtypes.get(alias.get(out, out), TensorProto.FLOAT)
        graph_outputs.append(_value_info(final, dtype, analysis.shape(out), batch))
    model = _model(graph, net, graph_inputs, graph_outputs)
    helper.set_model_props(model, {**model_metadata(net), **(metadata or {})})
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise NetspecError.at(
            f"the exported ONNX model fails onnx.checker (a netspec bug; please report it): {e}",
            exit_code=EXIT_RUNTIME,
        ) from None
    return model


def _check_request(opset: int | None, batch: Batch) -> int:
    """The opset to write (the default when None), refusing one onnx cannot write."""
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
    return opset


def _lower(
    graph: Graph,
    analysis: Analysis,
    batch: Batch,
    normalization: Mapping[str, tuple[Array, Array]],
) -> tuple[list[onnx.ValueInfoProto], dict[str, str], dict[str, int]]:
    """Every node into `graph`, in order: the graph inputs, and for each spec tensor the ONNX
    tensor holding it (an op that is the identity at inference aliases its input) and dtype."""
    net = analysis.network
    alias: dict[str, str] = {}  # spec tensor -> the ONNX tensor that holds it
    dtypes: dict[str, int] = {}
    graph_inputs: list[onnx.ValueInfoProto] = []
    for name in analysis.order:
        node = net.node(name)
        if node.op.op == "input":
            dtypes[name] = _DTYPES[getattr(node.op, "dtype", "float32")]
            graph_inputs.append(_value_info(name, dtypes[name], analysis.shape(name), batch))
            if name in normalization:
                _refuse_normalised_output(net, node)
                alias[name] = normalize_input(graph, name, *normalization[name])
            continue
        inputs = [alias.get(i, i) for i in node.inputs]
        shapes = list(analysis.layers[name].input_shapes)
        io = Lowering(graph, node, inputs, shapes, analysis.shape(name))
        described = lower_node(graph, node, io)
        if described is None:
            alias[name] = inputs[0]
            dtypes[name] = dtypes.get(inputs[0], TensorProto.FLOAT)
            continue
        dtypes[name] = TensorProto.FLOAT
        graph.nodes.extend(to_proto(graph, node, described))
    return graph_inputs, alias, dtypes


def _refuse_normalised_output(net: Network, node: Node) -> None:
    if node.name in net.outputs:  # one ONNX name cannot be the raw and the normalised x
        raise NetspecError.at(
            f"input '{node.name}' is also an output of {net.name}, and the model normalises "
            "it: the exported graph cannot give the raw input and the normalised one the same "
            "name",
            node.span,
            hint=f"output a copy instead, e.g. `{node.name}_out = {node.name} -> identity`",
        )


def _model(
    graph: Graph,
    net: Network,
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
) -> onnx.ModelProto:
    """The ModelProto of a lowered graph: only the initializers some node reads."""
    used = {i for n in graph.nodes for i in n.input}
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(arr), name)
        for name, arr in graph.initializers.items()
        if name in used
    ]
    g = helper.make_graph(graph.nodes, net.name, inputs, outputs, initializer=initializers)
    opsets = [helper.make_opsetid("", graph.opset)]
    return helper.make_model(
        g,
        opset_imports=opsets,
        producer_name="netspec",
        producer_version=__version__,
        ir_version=helper.find_min_ir_version_for(opsets),
    )


def _wire_outputs(graph: Graph, net: Network, alias: dict[str, str]) -> list[str]:
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
