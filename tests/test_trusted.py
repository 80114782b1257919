"""The IR objects netspec builds without validating them again (`evolve`: a repetition's node,
a repeated layer's table row) equal the validated ones field for field, types included: what
validation would have coerced (a list to a tuple) must already be of the field's type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from netspec import api
from netspec.errors import Span
from netspec.ir import LayerInfo, Network, Node
from netspec.ops import OP_CLASSES
from netspec.ops.base import Example, Op
from netspec.ops.io import Input

EXAMPLES = [
    pytest.param(ex, id=f"{cls.kind()}-{k}")
    for cls in OP_CLASSES
    if cls.kind() != "input"
    for k, ex in enumerate(cls.examples())
]


def same(built: BaseModel, cls: type[BaseModel]) -> None:
    """`built` is what validating the fields it was given gives: equal, dumped alike, of the
    same types (repr tells a tuple from a list), the others defaulted alike."""
    validated = cls.model_validate({k: getattr(built, k) for k in built.model_fields_set})
    assert built == validated
    assert built.model_dump() == validated.model_dump()
    assert built.model_dump_json() == validated.model_dump_json()
    assert repr(built) == repr(validated)
    assert built.model_fields_set == validated.model_fields_set


def twins(ex: Example) -> Network:
    """Two layers of the example's op reading the same inputs: the analysis validates the
    first one's row and copies it for the second."""
    inputs = [
        Node(name=f"x{i}", op=Input(shape=s, dtype=ex.op.input_dtype))
        for i, s in enumerate(ex.inputs)
    ]
    reads = tuple(n.name for n in inputs)
    layers = [Node(name=name, op=ex.op, inputs=reads) for name in ("a", "b")]
    return Network(name="N", nodes=(*inputs, *layers), outputs=("a", "b"))


@pytest.mark.parametrize("ex", EXAMPLES)
def test_a_repeated_layers_row_equals_a_validated_one(ex: Example) -> None:
    analysis, diags = api.analyse_network(twins(ex))
    assert not [d for d in diags if d.severity == "error"]
    first, second = analysis.layers["a"], analysis.layers["b"]
    assert second.name == "b" and second.model_copy(update={"name": "a"}) == first
    same(second, LayerInfo)


@pytest.mark.parametrize("ex", EXAMPLES)
def test_an_evolved_node_equals_a_validated_one(ex: Example) -> None:
    span = Span(file="t.net", line=3, column=2, end_line=3, end_column=9)
    first = Node(name="l.0", op=ex.op, inputs=("x",), span=span)
    changes: dict[str, Any] = {
        "name": "blk_2.l.1",
        "inputs": ("blk_2.in", "memory"),
        "span": span,
        "scope": ("blk_2",),
        "instantiated_at": (span,),
    }
    evolved = first.evolve(**changes)
    same(evolved, Node)
    assert evolved == Node(op=ex.op, **changes)
    assert first.name == "l.0"  # the first node is untouched


def test_evolve_refuses_a_field_the_model_does_not_have() -> None:
    node = Node(name="a", op=Input(shape=(3,)))
    with pytest.raises(TypeError, match="no field"):
        node.evolve(nmae="b")


def test_evolve_of_a_network_with_a_cached_index_does_not_copy_the_index() -> None:
    net = Network(name="N", nodes=(Node(name="a", op=Input(shape=(3,))),), outputs=("a",))
    assert net.node("a").name == "a"  # builds the cached index
    other = net.evolve(nodes=(Node(name="b", op=Input(shape=(3,))),), outputs=("b",))
    assert other.node("b").name == "b"
    with pytest.raises(KeyError):
        other.node("a")


SPEC = """
block Res(ch: int) {
  conv2d(ch, 3, padding=1) batchnorm relu
}
network Net {
  input x: [4, 6, 6]
  conv2d(4, 1) * 3
  r = Res(4) * 3
  flatten
  head = dense(5) * 2
  dense(2)
}
network Seq {
  input x: [5, 8]
  input m: [3, 8]
  dense(8) * 2
  attention(m, heads=2) * 2
}
"""


REPEATED = {"Net": {"r.2.conv2d_1": "r.1.relu_1", "head.1": "head.0", "conv2d_3": "conv2d_2"}}
REPEATED["Seq"] = {"dense_2": "dense_1", "attention_2": "attention_1"}


@pytest.mark.parametrize("network", ["Net", "Seq"])
def test_the_nodes_of_repetitions_equal_validated_ones(tmp_path: Path, network: str) -> None:
    path = tmp_path / "t.net"
    path.write_text(SPEC, encoding="utf-8")
    net = api.load(path, network)
    for name, source in REPEATED[network].items():  # later instances: the nodes evolved
        assert net.node(name).inputs[0] == source
    if network == "Seq":
        assert net.node("attention_2").inputs == ("attention_1", "m")
    for node in net.nodes:
        same(node, Node)
        assert isinstance(node.op, Op)
    again = Network.model_validate_json(net.model_dump_json())
    assert again == net
    analysis = api.check(net)
    assert len(analysis.layers) == len(net.nodes)
    for info in analysis.layers.values():
        same(info, LayerInfo)
