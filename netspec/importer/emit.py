"""Writing recovered layers as `.net` text: valid, unique layer names from the model's own
names, explicit inputs where the data flow is not the previous statement, and the weights
keyed by the spec's parameter names (`<layer>.<local>`)."""

from __future__ import annotations

import keyword
import re
from typing import Any

import numpy as np

from netspec.importer.layers import Layer, Nested
from netspec.importer.reading import Model, fail
from netspec.ops import OPS
from netspec.ops.base import Array

_RESERVED = {"network", "block", "train", "input", "in", "true", "false", "import"}


def identifier(raw: str) -> str:
    """A DSL name for an ONNX name: separators become '_', and a leading digit gets 'l'."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", raw).strip("_")
    name = re.sub(r"_+", "_", name)
    if not name:
        return "layer"
    return f"l{name}" if name[0].isdigit() else name


class Names:
    """Unique layer names, none of them a keyword. An op's name is a fine layer name (`lstm =
    bidirectional(lstm(64))`): a reference to it reads as the layer, a call as the op."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def fresh(self, raw: str) -> str:
        base = identifier(raw)
        if base in _RESERVED or keyword.iskeyword(base):
            base = f"{base}_1"
        name, k = base, 1
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name


def _raw_name(layer: Layer) -> str:
    """netspec's exports name the final tensor after the layer; other exporters write tensor
    names like '/features/features.0/Conv_output_0', whose node name reads better."""
    if "/" not in layer.output and not layer.output.endswith("_output_0"):
        return layer.output
    return layer.node.name or layer.output


def value(v: Any) -> str:
    if isinstance(v, Nested):
        return _call(v.op, v.attrs, [])
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def call(layer: Layer, inputs: list[str]) -> str:
    """`op(positional..., key=value...)`; a merge lists its tensors first, and an op that
    takes extra tensors (attention's memory) names them after its first."""
    return _call(layer.op, layer.attrs, inputs)


def _call(op: str, given: dict[str, Any], inputs: list[str]) -> str:
    positional = OPS[op].positional
    arity = OPS[op].arity
    args = list(inputs) if arity is None else list(inputs[arity:])
    attrs = dict(given)
    for key in positional:
        if key not in attrs:
            break
        args.append(value(attrs.pop(key)))
    args += [f"{k}={value(v)}" for k, v in attrs.items()]
    return f"{op}({', '.join(args)})" if args else op


def emit(model: Model, layers: list[Layer], title: str) -> tuple[str, dict[str, Array]]:
    names = Names()
    tensor: dict[str, str] = {}  # ONNX tensor -> layer name
    lines = [f"network {identifier(title) or 'Imported'} {{"]
    for raw, (shape, dtype) in model.inputs.items():
        tensor[raw] = names.fresh(raw)
        kind = "" if dtype == "float32" else dtype
        lines.append(f"  input {tensor[raw]}: {kind}{value(list(shape))}")
    weights: dict[str, Array] = {}
    previous = tensor[next(reversed(model.inputs))] if model.inputs else None
    for layer in layers:
        name = names.fresh(_raw_name(layer))
        ins = [tensor[i] for i in layer.inputs]
        text = call(layer, ins)
        if OPS[layer.op].arity is None or ins[0] == previous:
            lines.append(f"  {name} = {text}")
        else:
            lines.append(f"  {name} = {ins[0]} -> {text}")
        for local, arr in layer.params.items():
            a = np.asarray(arr)
            weights[f"{name}.{local}"] = a.astype(np.float32) if a.dtype.kind == "f" else a
        tensor[layer.output] = previous = name
    outs = []
    for o in model.outputs:
        if o not in tensor or o in model.inputs:
            raise fail(f"graph output '{o}' is not computed by any layer netspec recovered")
        outs.append(tensor[o])
    if outs != [previous]:
        lines.append(f"  output {', '.join(outs)}")
    lines.append("}")
    return "\n".join(lines) + "\n", weights
