"""What a DSL attribute or `train` setting accepts, read from its Pydantic model.

Nothing here is a hand-kept list: an op's attributes are its fields, a setting's choices are
the `Literal`s and tagged models (optimizers, schedules, metrics, ...) of its annotation, so a
new op, optimizer or loss shows up in hover and completion by being registered.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

_TAGS = ("name", "op")  # the field that names a tagged model: adam(...), lstm(...)
_HIDDEN = frozenset({"op", "name", "network"})
_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


@dataclass(frozen=True)
class Choice:
    """One value a field accepts; `model` when it is written as a call with fields of its own."""

    label: str
    detail: str | None = None
    model: type[BaseModel] | None = None


@dataclass(frozen=True)
class FieldDoc:
    name: str
    type: str
    default: str | None  # None: required
    choices: tuple[Choice, ...]

    @property
    def text(self) -> str:
        """`stride: int ≥ 1 | list of int ≥ 1 = 1`"""
        return f"{self.name}: {self.type}" + ("" if self.default is None else f" = {self.default}")


def value_text(value: Any) -> str:
    """A default as the DSL writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "auto"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, BaseModel):
        tag = next((getattr(value, t) for t in _TAGS if t in type(value).model_fields), None)
        return str(tag) if tag is not None else type(value).__name__
    return str(value)


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """An Annotated type's base and its constraint objects (Ge(1), ...)."""
    meta: list[Any] = []
    while get_origin(annotation) is typing.Annotated:
        base, *extra = get_args(annotation)
        for x in extra:
            meta.extend(x.metadata if isinstance(x, FieldInfo) else [x])
        annotation = base
    return annotation, meta


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def tags(model: type[BaseModel]) -> tuple[str, ...]:
    """The names a tagged model is written by: `adam`, or each metric's name."""
    for tag in _TAGS:
        f = model.model_fields.get(tag)
        if f is not None and get_origin(f.annotation) is Literal:
            return tuple(str(v) for v in get_args(f.annotation))
    return ()


def describe(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """`int ≥ 1 | list of int ≥ 1 | same | valid`"""
    annotation, meta = _unwrap(annotation)
    meta = [*metadata, *meta]
    if _is_union(annotation):
        parts = [
            part
            for a in get_args(annotation)
            if a is not type(None)
            for part in describe(a, meta).split(" | ")
        ]
        if type(None) in get_args(annotation):
            parts.append("auto")
        return " | ".join(dict.fromkeys(parts))
    if get_origin(annotation) is Literal:
        return " | ".join(str(v) for v in get_args(annotation))
    if get_origin(annotation) in (tuple, list):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return "list" if not args else f"list of {describe(args[0])}"
    if _is_model(annotation):
        return " | ".join(tags(annotation)) or annotation.__name__
    name = getattr(annotation, "__name__", str(annotation))
    bounds = [
        f"{sign} {value_text(getattr(m, attr))}"
        for m in meta
        for attr, sign in _BOUNDS
        if getattr(m, attr, None) is not None
    ]
    return f"{name} {', '.join(bounds)}" if bounds and annotation in (int, float) else name


def choices(annotation: Any) -> list[Choice]:
    """The words (and calls) a field accepts, in the order its type lists them."""
    annotation, _ = _unwrap(annotation)
    if _is_union(annotation):
        return [c for a in get_args(annotation) for c in choices(a)]
    if get_origin(annotation) is Literal:
        return [Choice(str(v)) for v in get_args(annotation)]
    if annotation is bool:
        return [Choice("true"), Choice("false")]
    if get_origin(annotation) in (tuple, list):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return choices(args[0]) if args else []
    if _is_model(annotation):
        names = tags(annotation)
        if len(names) == 1:
            return [Choice(names[0], signature(annotation, names[0]), annotation)]
        own = annotation.__dict__.get("__doc__") or ""  # not BaseModel's, inherited
        doc = inspect.cleandoc(own).split("\n\n")[0].replace("\n", " ") or None
        return [Choice(n, doc, annotation) for n in names]
    return []


def model_for(annotation: Any, name: str) -> type[BaseModel] | None:
    """The model of a field's type written as `name(...)`: adam in an optimizer, ..."""
    for choice in choices(annotation):
        if choice.label == name and choice.model is not None:
            return choice.model
    return None


def field_doc(name: str, info: FieldInfo) -> FieldDoc:
    if info.default is not PydanticUndefined:
        default: str | None = value_text(info.default)
    elif info.default_factory is not None:
        default = value_text(info.default_factory())  # type: ignore[call-arg]
    else:
        default = None
    return FieldDoc(
        name, describe(info.annotation, info.metadata), default, tuple(choices(info.annotation))
    )


def fields(model: type[BaseModel]) -> list[FieldDoc]:
    """A model's DSL-visible fields (its tag and a recipe's network excluded)."""
    return [field_doc(k, f) for k, f in model.model_fields.items() if k not in _HIDDEN]


def signature(model: type[BaseModel], name: str) -> str:
    """`adam(lr=0.001, beta1=0.9, ...)`: a tagged model's call with its defaults."""
    parts = [f.name if f.default is None else f"{f.name}={f.default}" for f in fields(model)]
    return f"{name}({', '.join(parts)})" if parts else name
