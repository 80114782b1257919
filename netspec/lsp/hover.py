"""Hover text (Markdown): what the thing under the cursor is and what it computed.

A call: the op's signature and summary (or the block's parameters), then each expansion's
input and output shapes, parameters and MACs. A block or network name: its totals. A name:
the constant's value, the parameter's declaration or the tensor's shape. An attribute or a
`train` setting: what it accepts and its default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import BaseModel

from netspec import tree as ast
from netspec.docs import signature as op_signature
from netspec.lsp import locate, schema
from netspec.lsp.analysis import Document, Instance
from netspec.lsp.facts import count, human, shape_text
from netspec.lsp.locate import Position, contains
from netspec.ops import OPS
from netspec.recipe import TrainSpec

MAX_ROWS = 8  # expansions listed one by one; the rest are summed


def hover(doc: Document, at: Position) -> str | None:
    """Markdown for the position, or None where there is nothing to say."""
    if doc.module is None:
        return None
    path = locate.path_at(doc.module, at)
    for depth in range(len(path), 0, -1):  # the innermost thing that has something to say
        node = path[depth - 1]
        for kind, explain in _EXPLAIN:
            if isinstance(node, kind):
                text = explain(doc, path[:depth], at)
                if text is not None:
                    return text
    return None


def _code(text: str) -> str:
    return f"```netspec\n{text}\n```"


def _blocks(doc: Document) -> dict[str, ast.BlockDef]:
    if doc.program is not None:
        return doc.program.blocks
    assert doc.module is not None
    return {i.name: i for i in doc.module.items if isinstance(i, ast.BlockDef)}


def block_header(block: ast.BlockDef) -> str:
    params = []
    for p in block.params:
        text = p.name + ("" if p.type is None else f": {p.type.id}")
        if p.default is not None:
            text += (
                " = …"
                if not isinstance(p.default, ast.Num | ast.Str | ast.Bool)
                else (f" = {schema.value_text(p.default.value)}")
            )
        params.append(text)
    return f"block {block.name}({', '.join(params)})"


# ---- what calls computed ---------------------------------------------------------------------


def instance_name(inst: Instance) -> str:
    """The name a call's expansion goes by: its layer, or its block instance (`layer1.0`)."""
    nodes = inst.network.nodes[inst.trace.start : inst.trace.end]
    if len(nodes) == 1 and nodes[0].name == inst.trace.output:
        return nodes[0].name
    scopes = [n.scope[-1] for n in nodes if n.scope]
    return min(scopes, key=len) if scopes else inst.trace.output


def block_instances(doc: Document, name: str) -> list[Instance]:
    """Every expansion of every call of the block `name`."""
    return [i for insts in doc.instances.values() for i in insts if i.trace.call.name == name]


def instances_table(instances: Sequence[Instance]) -> str:
    """One line for one expansion; a table for several, with their totals."""
    if not instances:
        return "_not expanded: the spec has an error above this, or nothing uses it_"
    if len(instances) == 1:
        i = instances[0]
        ins = ", ".join(shape_text(s) for s in i.input_shapes) or "—"
        return (
            f"`{instance_name(i)}`: {ins} → {shape_text(i.output_shape)}  \n"
            f"parameters: {count(i.params)}"
            + (f" (+{count(i.state)} non-trainable)" if i.state else "")
            + f" · MACs: {count(i.macs)} ({human(i.macs)})"
        )
    rows = ["| layer | input | output | params | MACs |", "|---|---|---|---:|---:|"]
    for i in instances[:MAX_ROWS]:
        ins = ", ".join(shape_text(s) for s in i.input_shapes)
        rows.append(
            f"| `{instance_name(i)}` | {ins} | {shape_text(i.output_shape)} "
            f"| {count(i.params)} | {count(i.macs)} |"
        )
    more = len(instances) - MAX_ROWS
    params, macs = sum(i.params for i in instances), sum(i.macs for i in instances)
    state = sum(i.state for i in instances)
    total = (
        f"{len(instances)} expansions{f' ({more} not listed)' if more > 0 else ''}: "
        f"{count(params)} parameters"
        + (f" (+{count(state)} non-trainable)" if state else "")
        + f", {count(macs)} MACs ({human(macs)})"
    )
    return "\n".join(rows) + "\n\n" + total


def _call(doc: Document, path: list[object], at: Position) -> str | None:
    call = path[-1]
    assert isinstance(call, ast.Call)
    block = _blocks(doc).get(call.name)
    if block is not None:
        head = _code(block_header(block))
    elif call.name in OPS:
        cls = OPS[call.name]
        head = _code(op_signature(cls)) + f"\n\n{cls.summary}"
    else:
        return None
    return head + "\n\n" + instances_table(doc.instances_of(call))


def _block_or_network(doc: Document, path: list[object], at: Position) -> str | None:
    item = path[-1]
    if isinstance(item, ast.BlockDef) and contains(item.name_span, at):
        return _code(block_header(item)) + "\n\n" + instances_table(block_instances(doc, item.name))
    if isinstance(item, ast.NetworkDef | ast.TrainDef) and contains(item.name_span, at):
        name = item.name if isinstance(item, ast.NetworkDef) else item.network
        return _network(doc, name)
    return None


def _network(doc: Document, name: str) -> str | None:
    analysis = doc.analyses.get(name)
    if analysis is None:
        return f"network `{name}`: _not analysed (see the errors)_"
    outs = ", ".join(
        f"`{o}` {shape_text(info.output_shape if (info := analysis.layers.get(o)) else None)}"
        for o in analysis.network.outputs
    )
    state = f" (+{count(analysis.state_params)} non-trainable)" if analysis.state_params else ""
    return (
        f"network `{name}`: {len(analysis.network.nodes):,} layers  \n"
        f"outputs: {outs}  \n"
        f"parameters: {count(analysis.trainable_params)}{state} · "
        f"MACs: {count(analysis.macs)} ({human(analysis.macs)}) per sample"
    )


# ---- names, attributes and settings ----------------------------------------------------------


def _name(doc: Document, path: list[object], at: Position) -> str | None:
    name = path[-1]
    assert isinstance(name, ast.Name)
    item = path[0]
    if locate.is_tensor_reference(path, name):
        return _tensor(doc, item, name.id)
    if isinstance(item, ast.BlockDef):
        for p in item.params:
            if p.name == name.id:
                return _code(block_header(item)) + f"\n\nparameter `{p.name}` of block {item.name}"
    if doc.program is not None and name.id in doc.program.consts:
        return _const(doc, doc.program.consts[name.id])
    return None


def _const(doc: Document, const: ast.ConstDef) -> str:
    value = doc.consts.get(const.name)
    shown = "not computed (see the errors)" if value is None else schema.value_text(value)
    return _code(f"const {const.name} = {shown}")


def _const_def(doc: Document, path: list[object], at: Position) -> str | None:
    const = path[-1]
    assert isinstance(const, ast.ConstDef)
    return _const(doc, const)


def _tensor(doc: Document, item: object, name: str) -> str | None:
    if not isinstance(item, ast.NetworkDef | ast.BlockDef):
        return None
    if name == "in" and isinstance(item, ast.BlockDef):
        calls = block_instances(doc, item.name)
        shapes = list(dict.fromkeys(shape_text(s) for i in calls for s in i.input_shapes[:1]))
        return f"`in`: the input of block {item.name}: {', '.join(shapes) or 'not expanded'}"
    for stmt in item.body:
        if isinstance(stmt, ast.InputStmt) and stmt.name == name:
            info = doc.layer(name)
            return f"input `{name}`: {shape_text(None if info is None else info.output_shape)}"
        if isinstance(stmt, ast.Assign) and stmt.target == name and stmt.chain.calls:
            last = doc.instances_of(stmt.chain.calls[-1])
            if isinstance(item, ast.NetworkDef):
                last = last[-1:]
            shapes = list(dict.fromkeys(shape_text(i.output_shape) for i in last))
            return f"tensor `{name}`: {' | '.join(shapes) or 'not expanded'}"
    return None


def _assign(doc: Document, path: list[object], at: Position) -> str | None:
    stmt = path[-1]
    assert isinstance(stmt, ast.Assign)
    return _tensor(doc, path[0], stmt.target) if contains(stmt.target_span, at) else None


def _input(doc: Document, path: list[object], at: Position) -> str | None:
    stmt = path[-1]
    assert isinstance(stmt, ast.InputStmt)
    return _tensor(doc, path[0], stmt.name)


def _field_text(model: type[BaseModel], key: str, what: str) -> str | None:
    info = model.model_fields.get(key)
    if info is None:
        return None
    doc = schema.field_doc(key, info)
    text = _code(doc.text) + f"\n\n{what}"
    if doc.choices:
        text += "\n\naccepts: " + ", ".join(f"`{c.label}`" for c in doc.choices)
    return text


def _arg(doc: Document, path: list[object], at: Position) -> str | None:
    """`key=` of an op call, a block call or a value call (`adam(lr=...)`)."""
    arg = path[-1]
    assert isinstance(arg, ast.Arg)
    if arg.key is None or at > (arg.span.line, arg.span.column + len(arg.key)):
        return None  # not on the key: the value says more
    owner = path[-2] if len(path) >= 2 else None
    if isinstance(owner, ast.Call) and owner.name in OPS:
        return _field_text(OPS[owner.name], arg.key, f"attribute of {owner.name}")
    if isinstance(owner, ast.Call) and (block := _blocks(doc).get(owner.name)) is not None:
        return _code(block_header(block)) + f"\n\nparameter `{arg.key}` of block {block.name}"
    if isinstance(owner, ast.FunCall):
        model = _value_model(path[:-1])
        return None if model is None else _field_text(model, arg.key, f"field of {owner.name}")
    return None


def _value_model(path: list[object]) -> type[BaseModel] | None:
    """The model a value call (`adam(...)`, `normal(0.1)`, `lstm(64)`) is validated by."""
    call = path[-1]
    assert isinstance(call, ast.FunCall)
    if call.name in OPS:
        return OPS[call.name]
    parent = path[-2] if len(path) >= 2 else None
    if isinstance(parent, ast.ListExpr):  # metrics = [top_k(3)]
        parent = path[-3] if len(path) >= 3 else None
    if isinstance(parent, ast.Setting):
        info = TrainSpec.model_fields.get(parent.key)
    elif isinstance(parent, ast.Arg) and parent.key is not None and len(path) >= 3:
        owner = path[-3]
        model: type[BaseModel] | None = None
        if isinstance(owner, ast.Call):
            model = OPS.get(owner.name)
        elif isinstance(owner, ast.FunCall):
            model = _value_model(path[:-2])
        info = None if model is None else model.model_fields.get(parent.key)
    else:
        info = None
    return None if info is None else schema.model_for(info.annotation, call.name)


def _funcall(doc: Document, path: list[object], at: Position) -> str | None:
    call = path[-1]
    assert isinstance(call, ast.FunCall)
    if not contains(call.name_span, at):
        return None
    model = _value_model(path)
    if model is None:
        return None
    own = model.__dict__.get("__doc__")
    return _code(schema.signature(model, call.name)) + (f"\n\n{own.strip()}" if own else "")


def _setting(doc: Document, path: list[object], at: Position) -> str | None:
    setting = path[-1]
    assert isinstance(setting, ast.Setting)
    if not contains(setting.key_span, at):
        return None
    return _field_text(TrainSpec, setting.key, "train setting")


def _import(doc: Document, path: list[object], at: Position) -> str | None:
    imp = path[-1]
    assert isinstance(imp, ast.Import)
    target = (doc.path.resolve().parent / imp.path).resolve()
    state = "" if target.is_file() else " (missing)"
    return f"import `{target}`{state}"


_EXPLAIN: tuple[tuple[type, Callable[[Document, list[object], Position], str | None]], ...] = (
    (ast.Name, _name),
    (ast.Arg, _arg),
    (ast.FunCall, _funcall),
    (ast.Call, _call),
    (ast.Setting, _setting),
    (ast.Assign, _assign),
    (ast.InputStmt, _input),
    (ast.ConstDef, _const_def),
    (ast.Import, _import),
    (ast.BlockDef, _block_or_network),
    (ast.NetworkDef, _block_or_network),
    (ast.TrainDef, _block_or_network),
)
