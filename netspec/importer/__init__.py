"""ONNX -> `.net` text and weights: the stage that reads a model netspec did not write.

Reading (`reading`) refuses what is not a usable model and folds constants and shape
subgraphs; each op family's small table of matchers (`windows`, `learned`, `simple`) turns
ONNX nodes back into netspec layers; `emit` writes the spec and keys the weights by its own
parameter names. Only this package and `netspec.onnx` import onnx.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx

from netspec.importer import attention, learned, recurrent, sequence, simple, windows
from netspec.importer.emit import emit
from netspec.importer.layers import Layer, Match, Matcher
from netspec.importer.reading import Model, fail, read, unsupported
from netspec.ops.base import Array

MATCHERS: dict[str, Matcher] = {
    **windows.MATCHERS,
    **learned.MATCHERS,
    **simple.MATCHERS,
    **sequence.MATCHERS,
    **recurrent.MATCHERS,
}


@dataclass
class Imported:
    text: str
    weights: dict[str, Array]
    notes: list[str] = field(default_factory=list)
    layers: int = 0


def import_model(path: Path, title: str | None = None) -> Imported:
    """The spec text and weights of an ONNX model; one error lists every unsupported op."""
    try:
        return _import(path, title)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        # A model that passes onnx.checker can still be inconsistent (an initializer whose
        # data does not fill its dims, an attribute of the wrong type): the file's fault.
        raise fail(f"{path} is a malformed ONNX model: {type(e).__name__}: {e}") from None


def _import(path: Path, title: str | None) -> Imported:
    model = read(path)
    m = Match(model)
    windows.fuse_pads(m)
    recurrent.fuse_time_major(m)
    attention.fuse(m)
    sequence.fuse_groupnorm(m)
    layers: list[Layer] = []
    bad: list[onnx.NodeProto] = []
    for node in model.nodes:
        if id(node) in m.taken:
            continue
        if id(node) in m.prepared:
            layers.append(m.prepared[id(node)])
            continue
        matcher = MATCHERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        found = matcher(node, m) if matcher is not None else None
        if found is None:
            bad.append(node)
        else:
            layers.extend(found if isinstance(found, list) else [found])
    if bad:
        raise unsupported(bad)
    text, weights = emit(model, layers, title or path.stem)
    return Imported(text, weights, _notes(model), len(layers))


def _notes(model: Model) -> list[str]:
    ops = {n.op_type for n in model.nodes}
    if "Conv" in ops and not ops & {"BatchNormalization", "Dropout"}:
        return [
            "an inference-only export (no batch norm or dropout nodes): any batch norms the "
            "original had were folded into its convs and import as plain convs"
        ]
    return []
