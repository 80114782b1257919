"""Graph analysis: shapes, counts, and diagnostics that keep going past the first failure."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from netspec.errors import NetspecError, Severity, Span
from netspec.graph import analyse
from netspec.ir import Analysis, Network, Node
from netspec.ops.activation import Relu
from netspec.ops.dense import Dense
from netspec.ops.io import Input
from netspec.ops.merge import Add

Build = Callable[..., Network]


def test_dense_counts_weights_biases_and_macs(analyse: Callable[..., Analysis]) -> None:
    a = analyse("network N { input x: [784]\n dense(256) relu\n dense(10) }")
    assert a.trainable_params == 784 * 256 + 256 + 256 * 10 + 10
    assert a.macs == 784 * 256 + 256 * 10
    assert a.layers["dense_2"].output_shape == (10,)
    assert a.activation_bytes == 4 * (784 + 256 + 256 + 10)


def test_fan_out_and_merge_shapes(analyse: Callable[..., Analysis]) -> None:
    a = analyse(
        "network N { input x: [4]\n a = x -> dense(3)\n b = x -> dense(5)\n"
        " c = concat(a, b)\n add(c, c) }"
    )
    assert a.layers["c"].output_shape == (8,)
    assert a.order.index("a") < a.order.index("c")


def test_every_independent_error_is_reported_and_the_table_stops_at_failures(
    build: Build,
) -> None:
    net = build(
        "network N { input x: [2, 3, 3]\n a = x -> dense(3)\n b = x -> flatten dense(4)\n"
        " c = b -> dense(2)\n d = concat(c, b, axis=1)\n}"
    )
    analysis, diags = analyse(net)
    errors = [d for d in diags if d.severity is Severity.ERROR]
    assert len(errors) == 2
    assert errors[0].layer == "a" and "insert `flatten`" in (errors[0].hint or "")
    assert errors[1].layer == "d" and "axis 1 is out of range" in errors[1].message
    assert analysis.layers["a"].failed and analysis.layers["c"].output_shape == (2,)


def test_an_unused_tensor_is_a_warning(analyse: Callable[..., Analysis], build: Build) -> None:
    _, diags = analyse_diags(build("network N { input x: [4]\n side = x -> dense(2)\n x -> relu }"))
    (warning,) = diags
    assert warning.severity is Severity.WARNING and "'side' is never used" in warning.message


def analyse_diags(net: Network) -> tuple[Analysis, list]:  # type: ignore[type-arg]
    return analyse(net)


def test_cross_entropy_after_softmax_is_an_error(build: Build) -> None:
    net = build(
        "network N { input x: [4]\n dense(3) sigmoid }\ntrain N { loss = binary_cross_entropy }"
    )
    _, diags = analyse(net)
    assert any("applied after an explicit sigmoid" in d.message for d in diags)


def test_cycles_undefined_and_duplicate_names_in_hand_written_ir() -> None:
    span = Span(file="ir.json", line=1, column=1)
    net = Network(
        name="Bad",
        nodes=(
            Node(name="x", op=Input(shape=(3,)), span=span),
            Node(name="a", op=Add(), inputs=("x", "b"), span=span),
            Node(name="b", op=Relu(), inputs=("a",), span=span),
            Node(name="c", op=Dense(units=2), inputs=("nope",), span=span),
            Node(name="c", op=Relu(), inputs=("b",), span=span),
        ),
        outputs=("c",),
    )
    _, diags = analyse(net)
    text = "\n".join(d.message for d in diags)
    assert "layer name 'c' is used 2 times" in text
    assert "'c' reads the undefined tensor 'nope'" in text
    assert "the graph has a cycle: a -> b -> a" in text


def test_require_raises_every_error(build: Build) -> None:
    from netspec import api

    with pytest.raises(NetspecError) as info:
        api.check(build("network N { input x: [2, 2]\n a = x -> dense(3, in_features=5)\n}"))
    (diag,) = info.value.diagnostics
    assert "declares in_features=5 but its input has 2 features" in diag.message
    assert diag.hint == "change in_features to 2, or drop it: netspec infers it"


def test_class_labels_must_match_the_output_size(build: Build) -> None:
    net = build('network N { input x: [4]\n dense(3) }\ntrain N { labels = ["a", "b"] }')
    assert net.labels == ("a", "b")
    _, diags = analyse(net)
    (error,) = diags
    assert "train names 2 labels but 'dense_1' has 3 outputs" in error.message


def test_cross_entropy_takes_class_scores_per_position(build: Build) -> None:
    net = build(
        "network N { input x: [5, 4]\n lstm(6, return_sequences=true)\n dense(3) }\n"
        "train N { loss = cross_entropy }"
    )
    assert analyse(net)[1] == []


@pytest.mark.parametrize(
    ("body", "loss", "says"),
    [
        (
            "reshape([1, 5, 4])\n conv2d(3, [1, 1])",
            "cross_entropy",
            "cross_entropy needs one score per class, a [K] output or [T, K] (K per position); "
            "'conv2d_1' gives [3, 5, 4]",
        ),
        (
            "lstm(6, return_sequences=true)\n dense(3)",
            "hinge",
            "hinge needs one score per class, a [K] output; 'dense_1' gives [5, 3]",
        ),
        (
            "reshape([1, 5, 4])\n conv2d(3, [5, 4])",
            "hinge",
            "hinge needs one score per class, a [K] output; 'conv2d_1' gives [3, 1, 1]",
        ),
        (
            "flatten\n dense(1)",
            "cross_entropy",
            "cross_entropy over the one output unit of 'dense_1' is always 0",
        ),
    ],
)
def test_a_classification_loss_needs_a_vector_of_class_scores(
    build: Build, body: str, loss: str, says: str
) -> None:
    net = build(f"network N {{ input x: [5, 4]\n {body} }}\ntrain N {{ loss = {loss} }}")
    _, diags = analyse(net)
    (error,) = diags
    assert error.message.startswith(says) and error.hint is not None


def test_binary_and_regression_losses_take_any_output_shape(build: Build) -> None:
    for loss in ("binary_cross_entropy", "mse", "mae"):
        net = build(f"network N {{ input x: [5, 4]\n dense(1) }}\ntrain N {{ loss = {loss} }}")
        assert analyse(net)[1] == []


def _layout_warnings(build: Build, body: str) -> list[str]:
    _, diags = analyse(build("network N {\n" + body + "\n}"))
    return [d.message for d in diags if "[time, features]" in d.message]


@pytest.mark.parametrize(
    ("body", "reader"),
    [
        ("input t: int64[20]\n embedding(50, 32)\n conv1d(64, 3)", "conv1d"),
        (
            "input t: int64[20]\n embedding(50, 32)\n relu\n dropout(0.1)\n maxpool1d(2)",
            "maxpool1d",
        ),
        ("input x: [20, 8]\n lstm(16, return_sequences=true)\n global_avgpool", "global_avgpool"),
        ("input x: [20, 8]\n dense(16)\n batchnorm", "batchnorm"),
        (
            "input x: [20, 8]\n bidirectional(gru(4, return_sequences=true))\n avgpool1d(2)",
            "avgpool1d",
        ),
    ],
)
def test_a_time_major_tensor_entering_a_channels_first_op_is_a_warning_with_the_fix(
    build: Build, body: str, reader: str
) -> None:
    _, diags = analyse(build("network N {\n" + body + "\n}"))
    (warning,) = [d for d in diags if "[time, features]" in d.message]
    assert warning.severity is Severity.WARNING and warning.message.startswith(reader)
    assert warning.hint is not None and "transpose(perm=[1, 0])" in warning.hint


def test_transposed_sequences_and_channels_first_inputs_give_no_layout_warning(
    build: Build,
) -> None:
    assert not _layout_warnings(
        build, "input t: int64[20]\n embedding(50, 32)\n transpose([1, 0])\n conv1d(64, 3)"
    )
    assert not _layout_warnings(build, "input x: [8, 20]\n conv1d(4, 3)\n batchnorm")
    assert not _layout_warnings(build, "input x: [20, 8]\n lstm(16)\n dense(4)")
