"""AST -> IR: names, blocks, repetition, imports, attribute validation mapped to spans."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from netspec import api
from netspec.errors import NetspecError, render
from netspec.ir import Network

Build = Callable[..., Network]


def errors_of(build: Build, text: str) -> list[str]:
    with pytest.raises(NetspecError) as info:
        api.check(build(text))
    return [render(d) for d in info.value.diagnostics]


BLOCKS = """
block Unit(width: int, act: str = "relu") {
  dense(width) relu
  dense(width)
  add(in) relu
}
network Deep {
  input x: [8]
  stem = dense(8)
  stage = Unit(8) * 3
  head = dense(2)
}
"""


def test_blocks_and_repetition_expand_to_hierarchical_names(build: Build) -> None:
    net = build(BLOCKS)
    names = [n.name for n in net.nodes]
    assert names[:2] == ["x", "stem"]
    assert "stage.0.dense_1" in names and "stage.2.add_1" in names
    assert names[-1] == "head"
    add = net.node("stage.1.add_1")
    assert add.inputs == ("stage.1.dense_2", "stage.0.relu_2")  # previous output, then `in`
    assert add.scope == ("stage.1",)


def test_unnamed_calls_count_per_op(build: Build) -> None:
    net = build("network N { input x: [4]\n dense(3) relu\n dense(2) relu }")
    assert [n.name for n in net.nodes] == ["x", "dense_1", "relu_1", "dense_2", "relu_2"]


def test_a_named_chain_of_several_calls_is_numbered(build: Build) -> None:
    net = build("network N { input x: [4]\n features = dense(3) relu dense(2) }")
    assert [n.name for n in net.nodes][1:] == ["features.0", "features.1", "features.2"]
    assert net.outputs == ("features.2",)


def test_block_parameters_support_arithmetic_and_defaults(build: Build) -> None:
    net = build(
        "block Wide(ch: int, mult: int = 4) { dense(ch * mult) }\n"
        "network N { input x: [4]\n Wide(2)\n Wide(3, mult=2) }"
    )
    units = [n.op.units for n in net.nodes if n.op.op == "dense"]  # type: ignore[attr-defined]
    assert units == [8, 6]


def test_constants_are_usable_everywhere(build: Build) -> None:
    net = build("const K = 5\nnetwork N { input x: [K * 2]\n dense(K) }")
    assert net.nodes[0].op.shape == (10,)  # type: ignore[attr-defined]


def test_the_trained_network_is_chosen_by_default(build: Build) -> None:
    text = (
        "network A { input x: [2]\n dense(1) }\nnetwork B { input x: [3]\n dense(1) }\n"
        "train A { loss = mse }"
    )
    assert build(text).name == "A"
    assert build(text, "B").name == "B"


def test_an_unknown_op_suggests_the_nearest(build: Build) -> None:
    (msg,) = errors_of(build, "network N { input x: [1, 8, 8]\n  flaten\n}")
    assert "t.net:2:3: error: unknown op or block 'flaten'" in msg
    assert "did you mean 'flatten'?" in msg


def test_an_unknown_attribute_suggests_the_nearest(build: Build) -> None:
    (msg,) = errors_of(build, "network N { input x: [4]\n  dense(3, bais=false)\n}")
    assert "dense 'dense_1' has no attribute 'bais'" in msg
    assert "did you mean 'bias'?" in msg
    assert "t.net:2:12" in msg  # the caret sits under the bad argument


def test_a_bad_attribute_value_points_at_the_value(build: Build) -> None:
    (msg,) = errors_of(build, "network N { input x: [4]\n  dense(0)\n}")
    assert "dense 'dense_1': units must be >= 1, got 0" in msg
    assert "t.net:2:9" in msg


def test_an_unknown_tensor_suggests_the_nearest(build: Build) -> None:
    (msg,) = errors_of(build, "network N { input image: [4]\n  imagr -> dense(2)\n}")
    assert "unknown tensor 'imagr'" in msg and "did you mean 'image'?" in msg


def test_tensors_are_assigned_once(build: Build) -> None:
    (msg,) = errors_of(build, "network N { input x: [4]\n y = dense(2)\n y = dense(2)\n}")
    assert "tensor 'y' is already defined" in msg


def test_block_parameters_are_type_checked(build: Build) -> None:
    (msg,) = errors_of(
        build, 'block B(ch: int) { dense(ch) }\nnetwork N { input x: [4]\n B("wide") }'
    )
    assert "block B: 'ch' must be int, got \"wide\"" in msg


def test_a_missing_block_parameter_is_named(build: Build) -> None:
    (msg,) = errors_of(build, "block B(ch: int) { dense(ch) }\nnetwork N { input x: [4]\n B() }")
    assert "block B needs a value for 'ch'" in msg


def test_a_recursive_block_is_refused(build: Build) -> None:
    (msg,) = errors_of(build, "block B() { B() }\nnetwork N { input x: [4]\n B() }")
    assert "block 'B' instantiates itself" in msg


def test_a_cycle_through_several_blocks_names_only_the_cycle(build: Build, tmp_path: Path) -> None:
    text = (
        "block A() { B() }\nblock B() { C() }\nblock C() { B() }\nnetwork N { input x: [4]\n A() }"
    )
    (msg,) = errors_of(build, text)
    assert msg.startswith(
        f"{tmp_path / 't.net'}:3:13: error: block 'B' instantiates itself (via B -> C)"
    )


def test_nesting_past_the_depth_limit_is_not_called_recursion(build: Build, tmp_path: Path) -> None:
    # 51 distinct blocks, each using the next: no cycle, one level too deep.
    blocks = "".join(f"block B{i}() {{ B{i + 1}() }}\n" for i in range(50))
    text = blocks + "block B50() { relu }\nnetwork N { input x: [4]\n B0() }"
    (msg,) = errors_of(build, text)
    assert msg == (
        f"{tmp_path / 't.net'}:50:15: error: block 'B50' would nest blocks 51 deep; "
        "netspec allows at most 50\n"
        "    block B49() { B50() }\n"
        "                  ^~~~~\n"
        "  hint: the chain: B0 -> B1 -> B2 -> ... -> B48 -> B49 -> B50"
        f" (instantiated at {tmp_path / 't.net'}:49:15)"
    )
    # One level less is fine.
    build(text.replace("B49() { B50() }", "B49() { relu }"))


def test_a_repetition_count_must_be_positive(build: Build) -> None:
    (msg,) = errors_of(build, "network N { input x: [4]\n dense(2) * 0 }")
    assert "a repetition count must be an integer >= 1, got 0" in msg


def test_a_huge_repetition_is_refused_quickly(build: Build) -> None:
    (msg,) = errors_of(build, "network N { input x: [4]\n relu * 1000000 }")
    assert "refusing to build it" in msg


def test_train_settings_are_validated_with_suggestions(build: Build) -> None:
    (msg,) = errors_of(build, "network N { input x: [4]\n dense(2) }\ntrain N { optimiser = sgd }")
    assert "train has no setting 'optimiser'" in msg and "did you mean 'optimizer'?" in msg


def test_an_unknown_optimizer_is_reported_at_its_value(build: Build) -> None:
    (msg,) = errors_of(build, "network N { input x: [4]\n dense(2) }\ntrain N { optimizer = adm }")
    assert "train: unknown optimizer 'adm'" in msg and "t.net:3:23" in msg
    assert "did you mean 'adam'?" in msg


def test_train_values_become_a_typed_recipe(build: Build) -> None:
    net = build(
        "network N { input x: [4]\n dense(2) }\n"
        'train N { data = "d.npz"  optimizer = rmsprop(0.01, momentum=0.9, nesterov=true)\n'
        "  schedule = step(5, 0.5)  metrics = [accuracy, top_k(3)]\n"
        "  early_stopping = early_stopping(patience=2) }"
    )
    spec = net.train
    assert spec is not None
    assert spec.optimizer.name == "rmsprop" and spec.optimizer.lr == 0.01
    assert spec.schedule.name == "step" and spec.schedule.every == 5  # type: ignore[union-attr]
    assert [m.name for m in spec.metrics] == ["accuracy", "top_k"] and spec.metrics[1].k == 3
    assert spec.early_stopping is not None and spec.early_stopping.patience == 2
    assert spec.data is not None and Path(spec.data.path).is_absolute()


def test_imports_bring_blocks_and_refuse_cycles(tmp_path: Path) -> None:
    (tmp_path / "blocks.net").write_text("block Two() { dense(2) }\n")
    (tmp_path / "main.net").write_text('import "blocks.net"\nnetwork N { input x: [3]\n Two() }')
    assert api.load(tmp_path / "main.net").nodes[-1].name == "two_1.dense_1"
    (tmp_path / "a.net").write_text('import "b.net"\n')
    (tmp_path / "b.net").write_text('import "a.net"\nnetwork N { input x: [1]\n relu }')
    with pytest.raises(NetspecError, match=r"import cycle: b.net -> a.net -> b.net"):
        api.load(tmp_path / "b.net")


def test_imports_from_outside_the_project_are_refused(tmp_path: Path) -> None:
    inner = tmp_path / "project"
    inner.mkdir()
    (tmp_path / "evil.net").write_text("block X() { relu }\n")
    (inner / "main.net").write_text('import "../evil.net"\nnetwork N { input x: [1]\n X() }')
    with pytest.raises(NetspecError, match="leaves the project folder"):
        api.load(inner / "main.net")
    assert api.load(inner / "main.net", allow_outside_imports=True).name == "N"


def test_the_ir_round_trips_through_json(build: Build) -> None:
    net = build(BLOCKS + "train Deep { loss = mse  optimizer = adam(lr=1e-3) }")
    assert Network.model_validate_json(net.model_dump_json()) == net


def test_ir_json_of_an_unknown_version_is_refused(build: Build, tmp_path: Path) -> None:
    import json

    data = json.loads(api.compile_json(api.check(build("network N { input x: [4]\n dense(2) }"))))
    assert data["network"]["ir_version"] == 1
    path = tmp_path / "n.json"
    path.write_text(json.dumps(data))
    assert api.load(path).name == "N"
    for version, why in (
        (
            99,
            "IR version 99 is newer than this netspec, which reads version 1; upgrade "
            "netspec, or compile the spec again with this one",
        ),
        (0, "IR version 0 does not exist"),
    ):
        data["network"]["ir_version"] = version
        path.write_text(json.dumps(data))
        with pytest.raises(NetspecError) as info:
            api.load(path)
        assert str(info.value) == (
            f"{path} is not a valid netspec IR: ir_version: {why} (1 problem(s))"
        )


WRONG_TYPES = [
    ("dense(true)", 7, "units must be an integer, got true (a boolean)", None),
    (
        'dense("3")',
        7,
        'units must be an integer, got "3" (a string)',
        "write 3 without quotes: quoted, it is a string",
    ),
    ("dense(3.5)", 7, "units must be an integer, got 3.5 (a float)", None),
    ('dense(3, bias="off")', 10, 'bias must be true or false, got "off" (a string)', None),
    ("dense(3, bias=0.0)", 10, "bias must be true or false, got 0.0 (a float)", None),
    ("dense(3, bias=1)", 10, "bias must be true or false, got 1 (an integer)", None),
    ("dropout(true)", 9, "p must be a number, got true (a boolean)", None),
    (
        'conv2d(4, kernel="3")',
        11,
        'kernel must be an integer or a list of integers, got "3" (a string)',
        "write 3 without quotes: quoted, it is a string",
    ),
    (
        "conv2d(4, 3, stride=true)",
        14,
        "stride must be an integer or a list of integers, got true (a boolean)",
        None,
    ),
    (
        'conv2d(4, 3, padding="1")',
        14,
        "padding must be an integer, a list of integers or 'same' or 'valid', got \"1\" (a string)",
        "write 1 without quotes: quoted, it is a string",
    ),
    (
        "conv2d(4, [3, true])",
        11,
        "kernel must be an integer or a list of integers, got [3, true]",
        "item 2 is true (a boolean)",
    ),
    (
        "dense(16 / 2)",
        7,
        "units must be an integer, got 8.0 (a float)",
        "write 8; to divide, `//` keeps an integer where `/` gives a float",
    ),
    # A list shows as the spec writes it, not as the Python tuple it becomes.
    (
        "conv2d(4, 3, dilation=[])",
        14,
        "dilation: dilation needs 1 or 2 values, got 0 (got [])",
        None,
    ),
]


@pytest.mark.parametrize(("call", "column", "message", "hint"), WRONG_TYPES)
def test_op_attributes_of_the_wrong_type_are_errors_at_the_value(
    build: Build, tmp_path: Path, call: str, column: int, message: str, hint: str | None
) -> None:
    (msg,) = errors_of(build, f"network N {{\n  input x: [3, 8, 8]\n  {call}\n}}")
    name = call.split("(")[0]
    head, _, caret, *rest = msg.splitlines()
    column += 2  # the columns above count from the call; the line is indented by two
    assert head == f"{tmp_path / 't.net'}:3:{column}: error: {name} '{name}_1': {message}"
    assert caret.index("^") - 4 == column - 1
    assert rest == ([f"  hint: {hint}"] if hint else [])


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("batch = true", "train: batch must be an integer, got true (a boolean)"),
        ("epochs = 2.0", "train: epochs must be an integer, got 2.0 (a float)"),
        ('shuffle = "no"', 'train: shuffle must be true or false, got "no" (a string)'),
    ],
)
def test_train_settings_hold_their_literals_to_their_types_as_op_attributes_do(
    build: Build, setting: str, message: str
) -> None:
    (msg,) = errors_of(
        build,
        f'network N {{\n  input x: [4]\n  dense(2)\n}}\ntrain N {{ data = "d.npz"\n {setting} }}',
    )
    assert message in msg.splitlines()[0]


def test_attribute_values_of_the_right_type_still_pass(build: Build) -> None:
    # An int fills a float; bare words and strings fill choices; lists fill tuples.
    net = build(
        "network N {\n  input x: [3, 8, 8]\n  dropout(0)\n  conv2d(4, [3, 3], padding=same)\n"
        '  conv2d(4, 3, stride=[1, 1], padding="valid", bias=false, init=normal(1))\n'
        "  reshape([4, 16])\n  rnn(4, nonlinearity=relu)\n}\n"
        'train N { data = "d.npz"\n optimizer = sgd(lr=1)\n loss = mse }'
    )
    ops = [n.op for n in net.nodes]
    assert ops[1].p == 0.0 and isinstance(ops[1].p, float)  # type: ignore[union-attr]
    assert ops[2].kernel == (3, 3) and ops[2].padding == "same"  # type: ignore[union-attr]
    assert ops[3].init.std == 1.0 and ops[3].bias is False  # type: ignore[union-attr]
    assert ops[5].nonlinearity == "relu"  # type: ignore[union-attr]
    assert net.train is not None and net.train.optimizer.lr == 1.0


UNKNOWN_NAMES = [
    # (body line, line, column, message, hint)
    ("dense(WIDHT)", 7, 9, "dense 'dense_1': units: unknown name 'WIDHT'", "did you mean 'WIDTH'?"),
    (
        "Unit(4)",
        3,
        9,
        "dense 'unit_1.dense_1': units: unknown name 'widht'",
        "did you mean 'width'?",
    ),
    (
        "dense(3, bias=flase)",
        7,
        17,
        "dense 'dense_1': bias: unknown name 'flase'",
        "did you mean 'false'?",
    ),
    (
        "dense(3, init=normal(STDD))",
        7,
        24,
        "dense 'dense_1': init.std: unknown name 'STDD'",
        "names defined here: WIDTH",
    ),
    (
        "conv2d(4, 3, padding=WIDHT)",
        7,
        24,
        "conv2d 'conv2d_1': padding: unknown name 'WIDHT'",
        "did you mean 'WIDTH'?",
    ),
]


@pytest.mark.parametrize(("body", "line", "column", "message", "hint"), UNKNOWN_NAMES)
def test_a_misspelt_name_is_an_unknown_name_with_a_suggestion(
    build: Build, tmp_path: Path, body: str, line: int, column: int, message: str, hint: str
) -> None:
    text = "const WIDTH = 8\nblock Unit(width) {\n  dense(widht)\n}\nnetwork N {\n"
    text += f"  input x: [3, 8, 8]\n  {body}\n}}\n"
    (msg,) = errors_of(build, text)
    head, _, caret, hint_line = msg.splitlines()
    assert head == f"{tmp_path / 't.net'}:{line}:{column}: error: {message}"
    assert caret.strip() == "^" + "~" * (len(message.split("'")[-2]) - 1)
    # Inside a block, the hint also names the instance: `(instantiated at t.net:7)`.
    assert hint_line.split(" (instantiated at ")[0] == f"  hint: {hint}"


def test_a_misspelt_choice_word_suggests_the_nearest_choice(build: Build) -> None:
    for value in ("hee", '"hee"'):
        (msg,) = errors_of(build, f"network N {{ input x: [4]\n dense(3, init={value}) }}")
        assert msg.splitlines()[0].endswith(
            "dense 'dense_1': init: unknown initialiser 'hee'; "
            "known: constant, glorot, glorot_normal, glorot_uniform, he, he_normal, he_uniform, "
            "msra, msra_normal, msra_uniform, normal, uniform, xavier, xavier_normal, "
            'xavier_uniform, zeros (got "hee")'
        )
        assert msg.splitlines()[-1] == "  hint: did you mean 'he'?"
    (msg,) = errors_of(build, "network N { input x: [3, 8, 8]\n conv2d(4, 3, padding=sam) }")
    assert "padding must be 'same' or 'valid', got 'sam'" in msg
    assert msg.splitlines()[-1] == "  hint: did you mean 'same'?"
    (msg,) = errors_of(
        build,
        "const EPOCHS = 3\nnetwork N { input x: [4]\n dense(2) }\n"
        'train N { data = "d.npz"\n loss = mse\n epochs = EPOCS }',
    )
    assert "train: epochs: unknown name 'EPOCS'" in msg and "did you mean 'EPOCHS'?" in msg


def test_a_misspelt_name_given_to_a_typed_block_parameter_gets_a_suggestion(
    build: Build,
) -> None:
    text = "const WIDTH = 8\nblock B(ch: int) { dense(ch) }\nnetwork N { input x: [4]\n B(WIDHT) }"
    (msg,) = errors_of(build, text)
    assert msg.splitlines()[0].endswith(
        ":4:4: error: block B: 'ch' must be int, got the unknown name 'WIDHT'"
    )
    assert msg.splitlines()[-1] == "  hint: did you mean 'WIDTH'?"


@pytest.mark.parametrize("count", ["10_000_000", "1000000000000", "A"])
def test_a_repetition_past_the_layer_limit_is_refused_before_anything_is_built(
    build: Build, count: str
) -> None:
    """The count is checked, not expanded: `* 10**12` once said "out of memory" (exit 3) and
    `* 300000000` built a 2.4 GB list before the layer limit stopped it."""
    import tracemalloc

    text = f"const A = 1000000 * 1000000\nnetwork N {{ input x: [3]\n dense(3) * {count}\n}}\n"
    tracemalloc.start()
    try:
        with pytest.raises(NetspecError) as info:
            build(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, peak
    (shown,) = [render(d) for d in info.value.diagnostics]
    assert info.value.exit_code == 1
    assert "t.net:3:13: error: repeating 'dense'" in shown and "200,000 layers" in shown


@pytest.mark.parametrize("call", ["elu(alpha=1e309)", "elu(alpha=-1e400)", "elu(alpha=1e308 * 10)"])
def test_a_non_finite_float_attribute_is_refused_where_it_is_written(
    build: Build, call: str
) -> None:
    (err,) = errors_of(build, f"network N {{ input x: [4]\n  dense(4) {call} }}")
    assert "t.net:2:16: error: elu 'elu_1': alpha must be a finite number, got" in err


def test_a_non_finite_recipe_value_is_refused(build: Build) -> None:
    with pytest.raises(NetspecError) as info:
        build(
            "network N { input x: [4]\n dense(2) }\ntrain N { loss = mse\n"
            " optimizer = sgd(lr=1e999) }"
        )
    assert "lr must be a finite number" in render(info.value.diagnostics[0])


def test_ir_json_with_nan_or_infinity_attributes_is_refused(build: Build, tmp_path: Path) -> None:
    net = build("network N { input x: [2, 4]\n pad([1, 1, 0, 0], value=1.5) }")
    text = net.model_dump_json().replace('"value":1.5', '"value":NaN')
    assert '"value":NaN' in text
    path = tmp_path / "n.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(NetspecError) as info:
        api.load(path)
    assert "finite number" in render(info.value.diagnostics[0])


@pytest.mark.parametrize(
    ("call", "hint"),
    [
        ("dense(10, activation=relu)", "write `dense(...) relu`"),
        ("conv1d(out_channels=4, kernel=3)", "did you mean 'filters'?"),
        ("conv1d(4, kernel_size=3)", "did you mean 'kernel'?"),
        ("linear(3)", "did you mean 'dense'?"),
        ("fc(3)", "did you mean 'dense'?"),
        ("InnerProduct(3)", "did you mean 'dense'?"),
        ("BatchNorm1d()", "did you mean 'batchnorm'?"),
        ("Conv1D(3, 2)", "did you mean 'conv1d'?"),
        ("zqxj(2)", "known ops: add, attention, avgpool1d"),
    ],
)
def test_other_frameworks_names_get_netspecs_name_as_the_hint(
    build: Build, call: str, hint: str
) -> None:
    (err,) = errors_of(build, f"network N {{ input x: [4, 8]\n  {call} }}")
    assert hint in err.split("hint: ")[1]
    assert "unknown name" not in err


def test_keras_learning_rate_hints_lr(build: Build) -> None:
    with pytest.raises(NetspecError) as info:
        build(
            "network N { input x: [4]\n dense(2) }\ntrain N { loss = mse\n"
            " optimizer = sgd(learning_rate=0.1) }"
        )
    assert "did you mean 'lr'?" in render(info.value.diagnostics[0])


def test_an_undefined_name_in_an_input_shape_is_an_unknown_name(build: Build) -> None:
    (err,) = errors_of(build, "network N { input x: [T, 8]\n dense(2) }")
    assert "error: input shape: unknown name 'T'" in err and "const T = " in err


def test_a_rule_across_fields_has_no_empty_attribute_path(build: Build) -> None:
    (err,) = errors_of(build, "network N { input x: [-1, 8]\n dense(2) }")
    assert "input 'x': every dimension must be >= 1" in err and ": :" not in err


def test_adding_two_vectors_of_different_widths_hints_a_dense_not_a_conv(build: Build) -> None:
    text = "network N { input x: [4]\n a = x -> dense(3)\n b = x -> dense(5)\n add(a, b) }"
    with pytest.raises(NetspecError) as info:
        api.check(build(text))
    (d,) = [d for d in info.value.diagnostics if d.hint]
    assert d.hint is not None and "dense(3)" in d.hint and "conv" not in d.hint


def test_an_error_inside_a_block_names_the_instance_that_built_it(build: Build) -> None:
    text = "block B(w: int) {\n  dense(w, bais=1)\n}\nnetwork N {\n  input x: [4]\n  B(3)\n}"
    (err,) = errors_of(build, text)
    assert "t.net:2:12: error:" in err and "t.net:6:3)" in err and "instantiated at" in err
