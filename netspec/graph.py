"""IR -> DAG -> analysed IR. The only module that imports networkx (for IR out of order).

Analyses run in topological order; an op raises a span-less ShapeError, and this stage adds
the layer's name and span, keeps going past it (downstream layers are skipped, independent
ones still checked) and returns every diagnostic with the partial analysis, so the summary
table can be printed up to the failure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pydantic import ValidationError

from netspec.errors import Diagnostic, NetspecError, Severity, ShapeError, suggest
from netspec.ir import Analysis, LayerInfo, Network, Node
from netspec.ops.base import Op, Shape, numel
from netspec.program import bulk
from netspec.recipe_checks import recipe_checks

BYTES_PER_FLOAT = 4


@dataclass(frozen=True)
class Graph:
    """The network as a DAG: nodes by name, how many layers read each tensor, and a
    topological order (empty when the graph is invalid)."""

    nodes: dict[str, Node]
    readers: dict[str, int]  # a tensor no layer reads is absent
    order: list[str]


def build_graph(net: Network) -> tuple[Graph, list[Diagnostic]]:
    """The network as a DAG of node names; names, inputs and cycles are validated here.

    Plain dicts, linear in the layers: what expand emits is in topological order already,
    and a NetworkX graph of 200,000 layers took seconds to build. NetworkX sorts (and finds
    the cycle of) hand-written IR JSON, which may list nodes in any order.
    """
    diags: list[Diagnostic] = []
    nodes: dict[str, Node] = {n.name: n for n in net.nodes}
    if len(nodes) < len(net.nodes):
        counts = Counter(n.name for n in net.nodes)
        diags += [
            _error(node, f"layer name '{node.name}' is used {counts[node.name]} times")
            for node in net.nodes
            if counts[node.name] > 1
        ]
    readers: dict[str, int] = {}
    seen: set[str] = set()
    in_order = True  # every input defined before it is read: what expand emits
    for node in net.nodes:
        if node.op.arity != len(node.inputs):
            diags += _arity(node)
        for src in node.inputs:
            if src not in seen:
                in_order = False
            if src not in nodes:
                diags.append(
                    _error(
                        node,
                        f"'{node.name}' reads the undefined tensor '{src}'",
                        suggest(src, nodes),
                    )
                )
            else:
                readers[src] = readers.get(src, 0) + 1
        seen.add(node.name)
    for out in net.outputs:
        if out not in nodes:
            diags.append(
                Diagnostic(
                    Severity.ERROR, f"output '{out}' is not defined", None, suggest(out, nodes)
                )
            )
    order = [n.name for n in net.nodes] if in_order else None
    if order is None:
        order, cycle = _sorted(net, nodes)
        if cycle:
            first = nodes[cycle[0]]
            diags.append(_error(first, "the graph has a cycle: " + " -> ".join([*cycle, cycle[0]])))
    return Graph(nodes, readers, order or []), diags


def _arity(node: Node) -> list[Diagnostic]:
    want = node.op.arity
    got = len(node.inputs)
    if want is None and got < 2:
        return [_error(node, f"{node.op.op} needs two or more inputs, got {got}")]
    if want is not None and not want <= got <= want + node.op.extra_inputs:
        most = want + node.op.extra_inputs
        takes = f"{want} input(s)" if most == want else f"{want} to {most} inputs"
        return [_error(node, f"{node.op.op} takes {takes}, got {got}")]
    return []


def _sorted(net: Network, nodes: dict[str, Node]) -> tuple[list[str], list[str]]:
    """A topological order of nodes listed in any order (ties broken by source order), or
    the cycle that prevents one. NetworkX is imported here, not by `check` of a spec, whose
    IR is in order: it took a third of `netspec check`'s start-up."""
    import networkx as nx

    g: nx.DiGraph = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from((src, n.name) for n in net.nodes for src in n.inputs if src in nodes)
    if not nx.is_directed_acyclic_graph(g):
        return [], [u for u, _ in nx.find_cycle(g)]
    return list(nx.lexicographical_topological_sort(g, key=_position(net))), []


def _error(node: Node, message: str, hint: str | None = None) -> Diagnostic:
    return node.diagnostic(Severity.ERROR, message, hint)


def _warning(node: Node, message: str, hint: str | None = None) -> Diagnostic:
    return node.diagnostic(Severity.WARNING, message, hint)


def analyse(net: Network) -> tuple[Analysis, list[Diagnostic]]:
    """Shapes, parameter counts, MACs and memory per layer, with every diagnostic found."""
    with bulk():
        return _analyse(net)


def _analyse(net: Network) -> tuple[Analysis, list[Diagnostic]]:
    g, diags = build_graph(net)
    if any(d.severity is Severity.ERROR for d in diags):
        return _summarise(net, [n.name for n in net.nodes], {}), diags
    int_tensors = {n.name for n in net.inputs if getattr(n.op, "dtype", "") == "int64"}
    layers: dict[str, LayerInfo] = {}
    shapes: dict[str, Shape] = {}  # the output of each layer whose rules held
    origins: dict[str, str] = {}  # a [T, F] tensor -> the layer that made it [T, F]
    known: dict[tuple[int, tuple[Shape, ...]], _Rules] = {}
    for name in g.order:
        node = g.nodes[name]
        try:
            in_shapes = tuple([shapes[s] for s in node.inputs])
        except KeyError:
            continue  # an upstream layer failed (its error is reported) or was skipped
        if int_tensors or node.op.input_dtype != "float32":
            dtype_diag = _check_dtype(node, int_tensors)
            if dtype_diag is not None:
                diags.append(dtype_diag)
                layers[name] = _failed(node, in_shapes)
                continue
        rules = known.get((id(node.op), in_shapes))
        if rules is None or rules.op is not node.op:
            try:
                rules = _rules(node, in_shapes, known)
            except (ShapeError, ValidationError, ValueError) as e:
                hint = e.hint if isinstance(e, ShapeError) else None
                listed = ", ".join(str(list(s)) for s in in_shapes)
                diags.append(_error(node, f"{node.op.op} '{name}' (input {listed}): {e}", hint))
                layers[name] = _failed(node, in_shapes)
                continue
        row = rules.row
        if row is None:
            diags.append(
                _error(
                    node,
                    f"{node.op.op} '{name}' produces an empty tensor "
                    f"{list(rules.out)} from {[list(s) for s in in_shapes]}",
                )
            )
            layers[name] = _failed(node, in_shapes)
            continue
        if rules.warnings:
            diags.extend(_warning(node, f"{node.op.op} '{name}': {w}") for w in rules.warnings)
        if origins or rules.layout is not None:
            diags.extend(_layout(node, g, in_shapes, origins))
        layers[name] = row if row.name == name else row.evolve(name=name)
        shapes[name] = rules.out
    diags.extend(_unused(net, g))
    diags.extend(recipe_checks(net, layers))
    return _summarise(net, g.order, layers), diags


@dataclass(frozen=True)
class _Rules:
    """An op's rules for one tuple of input shapes: its table row (validated once, then
    copied with each layer's name; None when the output is empty), output shape, warnings and
    output layout (its inputs taken as plain, not [T, F])."""

    op: Op
    row: LayerInfo | None
    out: Shape
    warnings: list[str]
    layout: str | None


def _rules(
    node: Node, in_shapes: tuple[Shape, ...], known: dict[tuple[int, tuple[Shape, ...]], _Rules]
) -> _Rules:
    """The op's rules for these inputs, remembered: an op's rules are functions of its
    attributes and input shapes alone, and expand shares one op object between identical
    layers, so a chain of 200,000 of them computes them (and validates a row) once."""
    op = node.op
    out = op.infer_shape(in_shapes)
    if any(d < 1 for d in out):
        rules = _Rules(op, None, out, [], None)
        known[(id(op), in_shapes)] = rules
        return rules
    params, state = op.param_shapes(in_shapes), op.state_shapes(in_shapes)
    row = LayerInfo(
        name=node.name,
        op=op.op,
        input_shapes=in_shapes,
        output_shape=out,
        params=sum(numel(s) for s in params.values()),
        state=sum(numel(s) for s in state.values()),
        macs=op.macs(in_shapes, out),
        activation_bytes=numel(out) * BYTES_PER_FLOAT,
        param_shapes=params,
        state_shapes=state,
    )
    assert row.output_shape is not None
    layout = op.layout(in_shapes, [None] * len(in_shapes))
    rules = _Rules(op, row, row.output_shape, op.warnings(in_shapes), layout)
    known[(id(op), in_shapes)] = rules  # the op is kept, so its id stays its own
    return rules


def _layout(
    node: Node, g: Graph, in_shapes: tuple[Shape, ...], origins: dict[str, str]
) -> list[Diagnostic]:
    """Track [T, F] tensors and warn where one reaches an op that reads [C, L]: conv1d would
    take the time steps for channels, a pool or batchnorm would reduce the wrong axis."""
    layouts = ["TF" if s in origins else None for s in node.inputs]
    if node.op.layout(in_shapes, layouts) == "TF":
        seen = [origins[s] for s in node.inputs if s in origins]
        origins[node.name] = seen[0] if node.op.keeps_layout and seen else node.name
    if not node.op.channels_first:
        return []
    out: list[Diagnostic] = []
    for src, shape in zip(node.inputs, in_shapes, strict=True):
        if src in origins and len(shape) == 2:
            maker = g.nodes[origins[src]]
            via = "" if maker.name == src else f" (from {maker.op.op} '{maker.name}')"
            t, f = shape
            out.append(
                _warning(
                    node,
                    f"{node.op.op} '{node.name}' reads its input {list(shape)} as "
                    f"[channels, length], but '{src}' is [time, features]{via}: it would take "
                    f"the {t} time steps for channels and work over the {f} features",
                    f"insert `transpose(perm=[1, 0])` before {node.op.op} to make it "
                    f"[{f}, {t}] (features as channels)",
                )
            )
    return out


def _position(net: Network) -> object:
    """Ties in the topological order are broken by source order, so tables read top-down."""
    index = {n.name: i for i, n in enumerate(net.nodes)}
    return lambda name: f"{index[name]:09d}"


def _failed(node: Node, in_shapes: tuple[Shape, ...]) -> LayerInfo:
    """The table row of a layer whose rule failed: it has no output shape or counts."""
    return LayerInfo(
        name=node.name,
        op=node.op.op,
        input_shapes=in_shapes,
        output_shape=None,
        failed=True,
    )


def _check_dtype(node: Node, int_tensors: set[str]) -> Diagnostic | None:
    """Only inputs declared int64 produce integers; every op after them produces floats."""
    for src in node.inputs:
        produced = "int64" if src in int_tensors else "float32"
        if produced != node.op.input_dtype:
            return _error(
                node,
                f"{node.op.op} '{node.name}' needs {node.op.input_dtype} input "
                f"but '{src}' is {produced}",
                "declare token inputs as `input tokens: int64[T]`"
                if node.op.input_dtype == "int64"
                else "integer inputs feed an embedding layer first",
            )
    return None


def _unused(net: Network, g: Graph) -> list[Diagnostic]:
    outputs = set(net.outputs)
    return [
        _warning(n, f"the output of '{n.name}' is never used")
        for n in net.nodes
        if n.name not in g.readers and n.name not in outputs
    ]


def _summarise(net: Network, order: list[str], layers: dict[str, LayerInfo]) -> Analysis:
    trainable = sum(info.params for info in layers.values())
    state = sum(info.state for info in layers.values())
    return Analysis(
        network=net,
        order=tuple(order),
        layers=layers,
        total_params=trainable + state,
        trainable_params=trainable,
        state_params=state,
        macs=sum(info.macs for info in layers.values()),
        activation_bytes=sum(info.activation_bytes for info in layers.values()),
    )


def require(analysis: Analysis, diags: list[Diagnostic]) -> Analysis:
    """The analysis, or NetspecError with every error when there is one."""
    errors = [d for d in diags if d.severity is Severity.ERROR]
    if errors:
        raise NetspecError(errors)
    return analysis
