"""The README's op table is generated from the registry and must not drift."""

from __future__ import annotations

from netspec.docs import README, render_readme


def test_readme_op_table_matches_the_registry() -> None:
    text = README.read_text(encoding="utf-8")
    assert render_readme(text) == text, "run `make docs` (python -m netspec.docs)"
