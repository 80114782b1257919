"""A `train { ... }` section -> TrainSpec: each setting validated where it is written, and data
paths made relative to the spec file, as a user expects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netspec import tree as ast
from netspec.errors import Diagnostic, NetspecError, Severity, Span, suggest
from netspec.freezing import unknown_names
from netspec.ir import Node
from netspec.program import Program
from netspec.recipe import TrainSpec
from netspec.validation import build_model
from netspec.values import evaluate, plain


def _err(message: str, span: Span | None, hint: str | None = None) -> NetspecError:
    return NetspecError.at(message, span, hint)


def train_section(
    program: Program, name: str, consts: dict[str, Any], nodes: Sequence[Node] = ()
) -> TrainSpec | None:
    """The network's train section, validated; `freeze` names are checked against `nodes`."""
    tdef = program.trains.get(name)
    if tdef is None:
        return None
    values: dict[str, Any] = {"network": name}
    spans: dict[str, Span] = {}
    base = Path(tdef.span.file).resolve().parent
    for s in tdef.settings:
        if s.key in values:
            raise _err(f"train: '{s.key}' is set twice", s.key_span)
        if s.key not in TrainSpec.KEYS:
            raise _err(
                f"train has no setting '{s.key}'",
                s.key_span,
                suggest(s.key, TrainSpec.KEYS) or f"known: {', '.join(TrainSpec.KEYS)}",
            )
        value = evaluate(s.value, consts)
        if s.key in ("data", "val_data"):
            value = _resolve_data(plain(value), base)
        values[s.key] = value
        spans[s.key] = s.value.span
    spec: TrainSpec = build_model(TrainSpec, values, spans, tdef.span, "train", strict=True)
    freeze = next((s for s in tdef.settings if s.key == "freeze"), None)
    if freeze is not None:
        _check_freeze(spec, freeze.value, nodes, name)
    return spec


def _check_freeze(spec: TrainSpec, value: ast.Expr, nodes: Sequence[Node], network: str) -> None:
    """Each name `freeze` gives is a layer or block of the network: a located error for each
    that is not, at its own item where the list is written out."""
    items = value.items if isinstance(value, ast.ListExpr) else ()
    spans = [i.span for i in items] if len(items) == len(spec.freeze) else []
    errors = [
        Diagnostic(
            Severity.ERROR,
            f"freeze: network {network} has no layer or block named '{name}'",
            spans[spec.freeze.index(name)] if spans else value.span,
            hint or "name a layer (`conv1`), a block instance or a repetition (`layer1`)",
        )
        for name, hint in unknown_names(spec.freeze, nodes)
    ]
    if errors:
        raise NetspecError(errors)


def _resolve_data(value: Any, base: Path) -> Any:
    """Make data paths relative to the spec file, as a user expects."""

    def fix(p: Any) -> Any:
        return str(base / p) if isinstance(p, str) and p and not Path(p).is_absolute() else p

    if isinstance(value, str):
        return fix(value)
    if isinstance(value, dict):
        out = dict(value)
        out["args"] = [fix(a) if i == 0 else a for i, a in enumerate(out.get("args", []))]
        for key in ("path", "labels"):
            if key in out:
                out[key] = fix(out[key])
        if out.get("name") in ("npy", "idx"):
            out["args"] = [fix(a) for a in out["args"]]
            if "x" in out:
                out["x"] = fix(out["x"])
        return out
    return value
