"""The server's features as plain functions: hover, completion, definitions, hints, outline,
and the diagnostics path under the fuzzer's mutated specs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pygls.lsp.server import LanguageServer

from netspec import api
from netspec.lsp import schema
from netspec.lsp.analysis import INTERNAL, Document, analyse_document
from netspec.lsp.complete import complete
from netspec.lsp.facts import statement_facts
from netspec.lsp.hover import hover
from netspec.lsp.locate import definition
from netspec.lsp.session import Session
from netspec.lsp.symbols import folds, outline, tables
from netspec.ops import OPS
from netspec.recipe import TrainSpec
from tests.fuzzing import SPECS, mutate

ROOT = Path(__file__).resolve().parent.parent.parent

SPEC = """const WIDTH = 8
const HALF = WIDTH // 2

block Pair(ch: int, k: int = 3) {
  left = in -> conv2d(ch, k, padding=1) relu
  right = in -> conv2d(ch, 1)
  concat(left, right)
}

network Net {
  input image: [3, 8, 8]
  stem = conv2d(WIDTH, 3, padding=1)
  pair = Pair(HALF) * 2
  flatten
  dense(10)
}

train Net {
  optimizer = adam(lr=0.01)
  metrics = [accuracy]
}
"""


def _doc(tmp_path: Path, text: str = SPEC, name: str = "t.net") -> Document:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return analyse_document(path, text)


def _at(text: str, needle: str, line_hint: int = 0, offset: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the first `needle` at or after line `line_hint`."""
    lines = text.split("\n")
    for i in range(line_hint, len(lines)):
        if (col := lines[i].find(needle)) >= 0:
            return i + 1, col + 1 + offset
    raise AssertionError(needle)


def _labels(doc: Document | None, text: str) -> set[str]:
    lines = text.split("\n")
    return {i.label for i in complete(doc, text, len(lines), len(lines[-1]) + 1)}


# ---- hover ----------------------------------------------------------------------------------


def test_hover_on_a_constant_shows_its_value(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    assert hover(doc, _at(SPEC, "HALF", 12)) == "```netspec\nconst HALF = 4\n```"


def test_hover_on_a_block_name_shows_its_parameters_and_each_instance(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    text = hover(doc, _at(SPEC, "Pair", 3))
    assert text is not None and "block Pair(ch: int, k: int = 3)" in text
    # Each instance: two convolutions of 4 filters over 8 (then 8) channels, and the concat.
    net = api.check(api.load(tmp_path / "t.net"))
    per_instance = [
        sum(info.params for name, info in net.layers.items() if name.startswith(f"pair.{i}."))
        for i in range(2)
    ]
    for i, params in enumerate(per_instance):
        assert f"| `pair.{i}` | [8, 8, 8] | [8, 8, 8] | {params:,} |" in text


def test_hover_on_a_tensor_a_parameter_and_an_attribute(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    assert hover(doc, _at(SPEC, "left, right")) == "tensor `left`: [4, 8, 8]"
    param = hover(doc, _at(SPEC, "ch, k"))
    assert param is not None and "parameter `ch` of block Pair" in param
    attr = hover(doc, _at(SPEC, "padding=1", 11))
    assert attr is not None and "padding: int ≥ 0 | list of int ≥ 0 | same | valid = 0" in attr
    setting = hover(doc, _at(SPEC, "optimizer"))
    assert setting is not None and "adam" in setting and "= sgd" in setting
    adam = hover(doc, _at(SPEC, "adam"))
    assert (
        adam is not None
        and "adam(lr=0.001, weight_decay=0, beta1=0.9, beta2=0.999, eps=1e-08)" in adam
    )


def test_hover_on_a_network_name_shows_its_totals(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    analysis = api.check(api.load(tmp_path / "t.net"))
    text = hover(doc, _at(SPEC, "Net {"))
    assert text is not None and f"parameters: {analysis.trainable_params:,}" in text
    assert f"MACs: {analysis.macs:,}" in text


# ---- inlay hints ----------------------------------------------------------------------------


def test_a_block_statement_hint_sums_its_instances(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    analysis = api.check(api.load(tmp_path / "t.net"))
    facts = {f.stmt.span.line: f for f in statement_facts(doc)}
    pair = facts[_at(SPEC, "pair = ")[0]]
    params = sum(i.params for n, i in analysis.layers.items() if n.startswith("pair."))
    assert pair.totals is not None and (pair.totals.blocks, pair.totals.params) == (2, params)
    assert pair.label.startswith("-> [8, 8, 8] · 2 blocks · ")
    # Inside the block, one shape per distinct instance input: both see [8, 8, 8].
    assert facts[_at(SPEC, "left = ")[0]].label == "-> [4, 8, 8]"


def test_no_hints_for_statements_after_an_error(tmp_path: Path) -> None:
    text = SPEC.replace("flatten\n", "flatten\n  conv2d(3, 3)\n")  # conv2d on [512]
    doc = _doc(tmp_path, text)
    lines = {f.stmt.span.line for f in statement_facts(doc)}
    assert _at(text, "flatten")[0] in lines
    assert _at(text, "conv2d(3, 3)")[0] not in lines
    assert _at(text, "dense(10)")[0] not in lines
    assert any("conv2d" in f.message for f in doc.findings)


# ---- completion -----------------------------------------------------------------------------


def test_every_op_attribute_is_offered_inside_its_call(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    for name, cls in OPS.items():
        if name == "input":
            continue
        text = SPEC + f"network Y {{\n  input x: [3, 8, 8]\n  {name}("
        expected = {f for f in cls.model_fields if f != "op"}
        assert expected <= _labels(doc, text), name


def test_train_settings_and_their_choices_come_from_the_recipe_model(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    start = "train X {\n  "
    assert _labels(doc, start) >= set(TrainSpec.KEYS)
    for key in ("loss", "optimizer", "schedule"):
        words = {c.label for c in schema.choices(TrainSpec.model_fields[key].annotation)}
        assert words and words <= _labels(doc, f"{start}{key} = ")
    metrics = schema.choices(TrainSpec.model_fields["metrics"].annotation)
    assert {c.label for c in metrics} <= _labels(doc, f"{start}metrics = [accuracy, ")
    assert {"lr", "beta1", "beta2", "eps", "weight_decay"} <= _labels(
        doc, f"{start}optimizer = adam("
    )
    assert {"patience", "monitor"} <= _labels(doc, f"{start}early_stopping = early_stopping(")


def test_names_are_offered_where_they_fit(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    body = "network Y {\n  input x: [3, 8, 8]\n  a = conv2d(3, 3)\n  "
    assert {"x", "a"} <= _labels(doc, SPEC + body + "b = a -> ")
    assert {"x", "a", "axis"} <= _labels(doc, SPEC + body + "concat(")
    starts = _labels(doc, SPEC + body)
    assert {"conv2d", "dense", "Pair", "input", "output"} <= starts
    assert {"WIDTH", "HALF"} <= _labels(doc, SPEC + body + "dense(")
    assert {"same", "valid"} == _labels(doc, SPEC + body + "conv2d(3, padding=") - {
        "WIDTH",
        "HALF",
    }
    assert {"ch", "k"} <= _labels(doc, SPEC + body + "Pair(")
    assert {"ch", "k"} <= _labels(doc, "block B(ch: int, k = 2) {\n  dense(")
    assert "in" in _labels(doc, "block B(ch: int) {\n  y = ")
    assert _labels(doc, "") == {"network", "block", "train", "const", "import"}
    assert _labels(doc, SPEC + body + "# dens") == set()


def test_completion_works_from_the_text_when_the_file_does_not_parse(tmp_path: Path) -> None:
    text = "const K = 3\nblock B(w: int) {\n  dense(w)\n}\nnetwork X {\n  input x: [4]\n  B("
    doc = _doc(tmp_path, text)
    assert doc.module is None
    assert {"w", "K"} <= _labels(doc, text)
    assert {"B", "dense"} <= _labels(None, "block B(w: int) {\n}\nnetwork X {\n  ")


# ---- definitions and outline ---------------------------------------------------------------


def test_definitions_of_blocks_constants_tensors_parameters_and_imports(tmp_path: Path) -> None:
    (tmp_path / "lib.net").write_text("const DEPTH = 2\n", encoding="utf-8")
    text = 'import "lib.net"\n' + SPEC
    doc = _doc(tmp_path, text)
    assert doc.module is not None

    def target(needle: str, line: int = 0) -> tuple[str, str, int, int]:
        got = definition(doc.module, *tables(doc), _at(text, needle, line))  # type: ignore[arg-type]
        assert got is not None, needle
        return got.kind, Path(got.span.file).name, got.span.line, got.span.column

    assert target("Pair(HALF)") == ("block", "t.net", 5, 7)
    assert target("HALF)") == ("const", "t.net", 3, 1)
    assert target("left, right") == ("tensor", "t.net", 6, 3)
    assert target("ch, k") == ("parameter", "t.net", 5, 12)
    assert target('"lib.net"')[:2] == ("file", "lib.net")
    assert target("Net {", 17) == ("network", "t.net", 11, 9)
    assert definition(doc.module, *tables(doc), _at(text, "conv2d")) is None  # an op


def test_the_outline_and_folds(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    assert doc.module is not None
    assert [(s.kind, s.name) for s in outline(doc.module)] == [
        ("const", "WIDTH"),
        ("const", "HALF"),
        ("block", "Pair"),
        ("network", "Net"),
        ("train", "train Net"),
    ]
    assert folds(doc.module) == [(3, 7), (9, 15), (17, 20)]


# ---- the diagnostics path under attack -------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_mutated_specs_never_break_the_diagnostics_path(tmp_path: Path, spec: Path) -> None:
    """The fuzz suite's mutations of every spec, through what the server runs on each
    keystroke: the analysis, its conversion to protocol diagnostics, the inlay hints, and
    hover and completion at random places. Every problem must come out as a located
    finding of netspec's own, never an internal error."""
    session = Session(LanguageServer("test", "0"))
    source = spec.read_bytes()
    for seed in range(6):
        rng = random.Random(seed)
        data = source
        for _ in range(1 + seed % 3):
            data = mutate(data, rng)
        text = data.decode("utf-8", errors="replace")
        doc = analyse_document(tmp_path / spec.name, text)
        assert not [f.message for f in doc.findings if f.message.startswith(INTERNAL)]
        lines = text.split("\n")
        for f in doc.findings:
            d = session.diagnostic(f, lines)
            assert 0 <= d.range.start.line <= max(len(lines) - 1, 0)
        [fact.label for fact in statement_facts(doc)]
        for _ in range(5):
            line = rng.randrange(1, len(lines) + 1)
            column = rng.randrange(1, len(lines[line - 1]) + 2)
            hover(doc, (line, column))
            complete(doc, text, line, column)


def test_completion_inside_attention_offers_the_tensors_for_its_memory(tmp_path: Path) -> None:
    text = "network X {\n  input x: [4, 8]\n  input memory: [6, 8]\n  y = attention("
    doc = _doc(tmp_path, text)
    assert {"x", "memory", "heads", "causal"} <= _labels(doc, text)
    assert "memory" not in _labels(doc, text.replace("attention(", "dense("))
