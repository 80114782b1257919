"""The intermediate representation: frozen, validated, JSON round-trippable.

`Network` is what the front end produces and the only thing back ends see (with
`Analysis`, the graph stage's plain-data results).
"""

from __future__ import annotations

import json
import stat
from functools import cached_property
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from netspec.errors import MAX_SOURCE_BYTES, SOURCES, Diagnostic, NetspecError, Severity, Span
from netspec.ops import AnyOp
from netspec.ops.base import Shape
from netspec.recipe import TrainSpec

IR_VERSION = 1


_set = object.__setattr__  # what pydantic's own model_construct writes a frozen model with


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def evolve(self, **changes: Any) -> Self:
        """This validated instance with some fields changed, not validated again: for values
        netspec built itself, of the types those fields hold (the 199,999 repetitions of a
        layer). Validating a node and a table row per layer was a third of a 200,000-layer
        check, and `model_copy(update=...)` costs as much as validating.

        The values are taken as they are, unlike validation's coercion (a list stays a list):
        every caller gives the exact types, which tests/test_trusted.py checks against
        validated instances. The set of fields given is shared with `self`'s: a frozen model
        never changes it, and pydantic copies it before any copy changes it. IR read from JSON
        is always validated (`read_ir`)."""
        cls = type(self)
        fields = cls.__pydantic_fields__
        if not changes.keys() <= fields.keys():
            raise TypeError(f"{cls.__name__} has no field(s) {sorted(changes.keys() - fields)}")
        state = self.__dict__
        if len(state) != len(fields):  # a cached property's value, of the old fields
            state = {k: v for k, v in state.items() if k in fields}
        given = self.__pydantic_fields_set__
        if not changes.keys() <= given:
            given = given | changes.keys()
        new = cls.__new__(cls)
        _set(new, "__dict__", {**state, **changes})
        _set(new, "__pydantic_fields_set__", given)
        _set(new, "__pydantic_extra__", None)
        _set(new, "__pydantic_private__", None)
        return new


class Node(_Model):
    """One primitive op applied to named tensors. Its output tensor has the node's name."""

    name: str  # hierarchical: `layer3.2.conv1`
    op: AnyOp
    inputs: tuple[str, ...] = ()
    span: Span | None = None
    scope: tuple[
        str, ...
    ] = ()  # enclosing block instances, outermost first: ('layer3', 'layer3.2')
    # The calls that made those instances, outermost first: where an error in a block's body
    # says which instance it is in. Optional: IR written before it has none.
    instantiated_at: tuple[Span, ...] = ()

    def diagnostic(self, severity: Severity, message: str, hint: str | None = None) -> Diagnostic:
        """A finding at this layer: its span and name, and in the hint the block instances
        it is in (innermost first), as the body line alone does not say which one it is."""
        if self.instantiated_at:
            calls = ", in ".join(str(s) for s in reversed(self.instantiated_at))
            hint = f"{hint} (instantiated at {calls})" if hint else f"instantiated at {calls}"
        return Diagnostic(severity, message, self.span, hint, self.name)


class Network(_Model):
    """A network with every block and repetition expanded into primitive nodes."""

    ir_version: int = IR_VERSION
    name: str
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    train: TrainSpec | None = None
    source: str | None = None  # the file it came from, for messages and metadata
    labels: tuple[str, ...] | None = None  # class names, when the spec gives them

    @field_validator("ir_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        # A newer netspec may have changed what fields mean: refuse rather than misread. (A
        # custom error, as a ValueError's message would start "Value error, ".)
        if v > IR_VERSION:
            raise PydanticCustomError(
                "ir_version",
                "IR version {v} is newer than this netspec, which reads version {known}; "
                "upgrade netspec, or compile the spec again with this one",
                {"v": v, "known": IR_VERSION},
            )
        if v < 1:
            raise PydanticCustomError("ir_version", "IR version {v} does not exist", {"v": v})
        return v

    @property
    def inputs(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.op.op == "input")

    def node(self, name: str) -> Node:
        """The node of that name (a dict lookup; the index is built once per network)."""
        return self._by_name[name]

    @cached_property
    def _by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}


class LayerInfo(_Model):
    """What the graph stage learned about one node."""

    name: str
    op: str
    input_shapes: tuple[Shape, ...]
    output_shape: Shape | None  # None when its shape rule failed
    params: int = 0
    state: int = 0  # non-trainable: batchnorm running statistics
    macs: int = 0  # per sample
    activation_bytes: int = 0  # per sample, float32
    param_shapes: dict[str, Shape] = Field(default_factory=dict)
    state_shapes: dict[str, Shape] = Field(default_factory=dict)
    failed: bool = False


class Analysis(_Model):
    """The analysed network: a topological order with per-layer facts and totals."""

    network: Network
    order: tuple[str, ...]
    layers: dict[str, LayerInfo]
    total_params: int
    trainable_params: int
    state_params: int
    macs: int
    activation_bytes: int  # per sample

    def shape(self, tensor: str) -> Shape:
        shape = self.layers[tensor].output_shape
        assert shape is not None, f"{tensor} has no inferred shape"
        return shape


def read_ir(path: Path, text: str | None = None) -> Network:
    """An IR JSON file (as `compile` writes it) -> Network, its file names confined.

    The IR's spans and `source` are paths netspec would open (to show a source line, to hash
    the spec): they may name only regular files, of bounded size, inside the IR's own folder.
    Any other is never opened: its spans keep their file:line:col but show no source line, and
    `source` is dropped."""
    try:
        raw = text if text is not None else path.read_text(encoding="utf-8")
        data: Any = json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise NetspecError.at(f"cannot read IR JSON {path}: {e}") from None
    if isinstance(data, dict) and "network" in data and "layers" in data:
        data = data["network"]  # a compiled analysis: the IR is inside
    try:
        net = Network.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise NetspecError.at(
            f"{path} is not a valid netspec IR: {where}: {first['msg']} "
            f"({e.error_count()} problem(s))"
        ) from None
    folder = path.resolve().parent
    spans = [s for n in net.nodes for s in (n.span, *n.instantiated_at) if s is not None]
    for file in {s.file for s in spans}:
        if not _readable_inside(file, folder):
            SOURCES.forbid(file)
    if net.source is not None and not _readable_inside(net.source, folder):
        net = net.model_copy(update={"source": None})
    return net


def _readable_inside(file: str, folder: Path) -> bool:
    """A regular file of bounded size inside `folder`, symlinks resolved."""
    try:
        resolved = Path(file).resolve()
        st = resolved.stat()
    except (OSError, RuntimeError, ValueError):  # missing, a loop, a NUL in the name
        return False
    return (
        resolved.is_relative_to(folder)
        and stat.S_ISREG(st.st_mode)
        and st.st_size <= MAX_SOURCE_BYTES
    )
