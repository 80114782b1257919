"""The grammar and the AST: what parses, what spans point at, and how syntax errors read."""

from __future__ import annotations

from pathlib import Path

import pytest
from lark.exceptions import UnexpectedInput

from netspec import syntax
from netspec import tree as ast
from netspec.errors import NetspecError, render

ROOT = Path(__file__).resolve().parent.parent


def parse_body(body: str) -> tuple[ast.Stmt, ...]:
    module = syntax.parse(f"network N {{\n{body}\n}}\n", "t.net")
    net = module.items[0]
    assert isinstance(net, ast.NetworkDef)
    return net.body


def syntax_error(text: str) -> str:
    with pytest.raises(NetspecError) as info:
        syntax.parse(text, "t.net")
    return render(info.value.diagnostics[0])


def test_each_line_is_a_statement_and_calls_on_a_line_chain() -> None:
    body = parse_body("input x: [1, 28, 28]\nconv2d(6, kernel=5) tanh\navgpool2d(2)")
    assert [type(s).__name__ for s in body] == ["InputStmt", "Chain", "Chain"]
    chain = body[1]
    assert isinstance(chain, ast.Chain)
    assert [c.name for c in chain.calls] == ["conv2d", "tanh"]


def test_an_assignment_ends_at_the_end_of_its_line() -> None:
    body = parse_body("y = dense(3) relu\nshort = y -> dense(3)\nadd(y, short)")
    assert isinstance(body[0], ast.Assign) and body[0].target == "y"
    assert isinstance(body[1], ast.Assign) and body[1].chain.source is not None
    assert isinstance(body[2], ast.Chain) and body[2].calls[0].name == "add"


def test_argument_lists_may_wrap_across_lines() -> None:
    body = parse_body("conv2d(\n  64,\n  kernel=[3,\n 3],\n)")
    call = body[0].calls[0]  # type: ignore[union-attr]
    assert [a.key for a in call.args] == [None, "kernel"]


def test_literals_cover_ints_floats_booleans_strings_lists_and_arithmetic() -> None:
    module = syntax.parse(
        'const A = 1_000\nconst B = 1e-3\nconst C = true\nconst D = "s"\n'
        "const E = [1, 2.5]\nconst F = -(A + 2) * 3 // 4 % 5 / 2\n",
        "t.net",
    )
    kinds = [type(i.value).__name__ for i in module.items]  # type: ignore[union-attr]
    assert kinds == ["Num", "Num", "Bool", "Str", "ListExpr", "BinOp"]
    first = module.items[0]
    assert isinstance(first, ast.ConstDef) and first.value == ast.Num(1000, first.value.span)


def test_repetition_binds_to_the_call_before_it() -> None:
    body = parse_body("layer1 = Basic(64) * 3 relu")
    calls = body[0].chain.calls  # type: ignore[union-attr]
    assert calls[0].repeat is not None and calls[1].repeat is None


def test_spans_point_at_the_call() -> None:
    body = parse_body("input x: [4]\n  dense(10)")
    call = body[1].calls[0]  # type: ignore[union-attr]
    assert (call.span.line, call.span.column, call.span.end_column) == (3, 3, 12)


def test_typed_inputs_and_block_parameters_parse() -> None:
    module = syntax.parse(
        "block B(ch: int, stride: int = 1) { conv2d(ch, 3, stride=stride) }\n"
        "network N { input t: int64[100]\n B(4) }",
        "t.net",
    )
    block, net = module.items
    assert isinstance(block, ast.BlockDef)
    assert [(p.name, p.type.id if p.type else None) for p in block.params] == [
        ("ch", "int"),
        ("stride", "int"),
    ]
    assert isinstance(net, ast.NetworkDef)
    stmt = net.body[0]
    assert isinstance(stmt, ast.InputStmt) and stmt.dtype is not None
    assert stmt.dtype.id == "int64"


def test_train_settings_may_share_a_line() -> None:
    module = syntax.parse(
        "train N { loss = cross_entropy  optimizer = adam(lr=1e-3)  batch = 64 }", "t.net"
    )
    train = module.items[0]
    assert isinstance(train, ast.TrainDef)
    assert [s.key for s in train.settings] == ["loss", "optimizer", "batch"]


def test_a_missing_parenthesis_names_what_was_expected() -> None:
    text = syntax_error("network N {\n  conv2d(6 kernel=5)\n}")
    assert "t.net:2:12: error: syntax error: unexpected 'kernel'; expected one of ')', ','" in text
    assert "^~~~~~" in text


def test_an_unclosed_brace_says_the_file_ends_early() -> None:
    text = syntax_error("network N {\n  dense(3)\n")
    assert "unexpected the end of the file" in text
    assert "'}'" in text


def test_single_quotes_get_a_hint() -> None:
    text = syntax_error("network N { x = 'a' }")
    assert 'unexpected character "\'"' in text
    assert 'hint: strings use double quotes: "like this"' in text


def test_terminal_names_never_leak_into_messages() -> None:
    text = syntax_error("network N { dense(3 }")
    for raw in ("RPAR", "LPAR", "RBRACE", "COMMA", "_NL"):
        assert raw not in text


# ---- stored parser tables ---------------------------------------------------------------------


def test_the_stored_parser_tables_match_the_grammar() -> None:
    """`make tables` was run after the last grammar edit (else every start compiles it)."""
    import lark

    from netspec import _parser_tables as stored

    grammar = syntax.GRAMMAR.read_text(encoding="utf-8")
    assert syntax._grammar_hash(grammar) == stored.GRAMMAR_SHA256, "run `make tables`"
    if lark.__version__ == stored.LARK:  # another Lark compiles the grammar: slower, not wrong
        assert syntax._parser().source_path == "<deserialized>"  # loaded, not compiled


@pytest.mark.parametrize(
    "path",
    sorted(p for d in ("specs", "examples", "tests/diagnostics") for p in ROOT.glob(f"{d}/*.net")),
)
def test_the_stored_parser_and_the_compiled_grammar_agree(path: Path) -> None:
    """Same trees on every bundled file, and the same first error where there is one."""
    compiled = syntax._build_parser(syntax.GRAMMAR.read_text(encoding="utf-8"))
    text = path.read_text(encoding="utf-8")
    results = []
    for parser in (syntax._parser(), compiled):
        try:
            results.append(parser.parse(text))
        except UnexpectedInput as err:
            results.append((type(err).__name__, err.line, err.column))
    assert results[0] == results[1]


def test_stale_tables_are_ignored_and_the_grammar_is_compiled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from netspec import _parser_tables as stored

    source = "network N {\n  input x: [4]\n  dense(2) relu\n}\n"
    fresh = syntax._parser().parse(source)
    monkeypatch.setattr(stored, "GRAMMAR_SHA256", "stale")
    monkeypatch.setattr(stored, "TABLES", {})  # would fail to load if it were used
    syntax._parser.cache_clear()
    try:
        rebuilt = syntax._parser()
        assert rebuilt.parse(source) == fresh
    finally:
        syntax._parser.cache_clear()


def test_the_stored_parser_reports_positions_like_the_compiled_one() -> None:
    """Spans come from `propagate_positions`, an option the stored tables must carry."""
    body = parse_body("input x: [4]\n  dense(2)   relu")
    chain = body[1]
    assert isinstance(chain, ast.Chain)
    assert (chain.calls[1].span.line, chain.calls[1].span.column) == (3, 14)


def test_a_byte_order_mark_at_the_start_of_a_file_is_ignored(tmp_path: Path) -> None:
    from netspec import api

    path = tmp_path / "bom.net"
    path.write_bytes(b"\xef\xbb\xbfnetwork N { input x: [4]\n  dense(2, foo=1)\n}\n")
    with pytest.raises(NetspecError) as info:
        api.load(path)
    assert render(info.value.diagnostics[0]) == (
        f"{path}:2:12: error: dense 'dense_1' has no attribute 'foo'\n"
        "      dense(2, foo=1)\n"
        "               ^~~~~\n"
        "  hint: known attributes: units, bias, in_features, init"
    )
    module = syntax.parse("\ufeffnetwork N {\n  input x: [4]\n}\n", "t.net")
    assert module.items[0].span.column == 1


def _rendered(source: str, line: int, column: int, end_column: int) -> str:
    from netspec.errors import Diagnostic, Severity, SourceCache, Span

    sources = SourceCache()
    sources.add("t.net", source)
    span = Span(file="t.net", line=line, column=column, end_line=line, end_column=end_column)
    return render(Diagnostic(Severity.ERROR, "m", span), sources)


def test_the_caret_follows_tabs_in_the_source_line() -> None:
    # "\tdense(2, foo=1)": foo is at column 11; the tab shows as four spaces.
    assert _rendered("\tdense(2, foo=1)\n", 1, 11, 16) == (
        "t.net:1:11: error: m\n        dense(2, foo=1)\n                 ^~~~~"
    )
    assert _rendered("  \tx\ty\n", 1, 6, 7) == ("t.net:1:6: error: m\n        x   y\n            ^")


def test_lines_are_counted_as_the_parser_counts_them() -> None:
    # U+2028, a form feed and a lone CR end no line for Lark; CRLF ends one line.
    text = "# a \u2028 b \f c \r d\r\nnetwork N {\r\n  dense(2)\r\n"
    assert _rendered(text, 3, 3, 8) == ("t.net:3:3: error: m\n      dense(2)\n      ^~~~~")
    assert _rendered(text, 1, 1, 2).splitlines()[1] == "    # a \\u2028 b \\x0c c \\r d"


def test_control_characters_in_the_source_line_are_escaped() -> None:
    shown = _rendered("dense(2) \x1b[31m\x00x\n", 1, 10, 11)
    assert shown == "t.net:1:10: error: m\n    dense(2) \\x1b[31m\\x00x\n             ^~~~"
    assert "\x1b" not in shown and "\x00" not in shown
    # The caret still finds a culprit after an escaped character.
    assert _rendered("\x00 dense(\n", 1, 3, 8).splitlines()[2] == "         ^~~~~"


def test_an_integer_literal_past_the_limit_is_refused_where_it_is_written() -> None:
    assert syntax_error(f"const A = {ast.MAX_INT}\nconst B = {ast.MAX_INT + 1}\n") == (
        "t.net:2:11: error: the integer 1000000000001 is too large; "
        "netspec allows at most 1,000,000,000,000\n"
        "    const B = 1000000000001\n"
        "              ^~~~~~~~~~~~~"
    )
    # Longer than Python converts to int: still the same located message, abridged.
    message = syntax_error("const A = " + "9" * 5000 + "\n").splitlines()[0]
    assert message == (
        "t.net:1:11: error: the integer 999999999999...9999 (5,000 characters) is too large; "
        "netspec allows at most 1,000,000,000,000"
    )


@pytest.mark.parametrize(
    ("literal", "bad", "column"),
    [
        (r"\x", r"\x", 19),
        (r"\u12", r"\u", 19),
        (r"a\qb", r"\q", 20),
        (r"\N{bogus}", r"\N{bogus}", 19),
    ],
)
def test_a_bad_escape_in_a_string_is_a_located_syntax_error(
    literal: str, bad: str, column: int
) -> None:
    text = f'network N {{ input x: [4]\n relu }}\ntrain N {{ data = "{literal}"\n }}\n'
    shown = syntax_error(text)
    assert shown.startswith(f"t.net:3:{column}: error: syntax error: bad escape `{bad}`"), shown
    assert "^" + "~" * (len(bad) - 1) in shown and "hint:" in shown


def test_string_escapes_decode_and_non_ascii_text_is_kept() -> None:
    module = syntax.parse('train N { data = "é\\n\\"q\\"\\\\\\x41\\u00e9" }\n', "t.net")
    train = module.items[0]
    assert isinstance(train, ast.TrainDef)
    value = train.settings[0].value
    assert isinstance(value, ast.Str) and value.value == 'é\n"q"\\Aé'


def test_a_syntax_error_on_a_crlf_line_ending_in_a_dangling_assignment_is_located() -> None:
    shown = syntax_error("network N {\r\n input x: [4]\r\n t = \r\n}\r\n")
    assert shown.startswith("t.net:3:"), shown
    assert "syntax error" in shown and "\r" not in shown
