"""Shared fixtures: build networks from inline DSL text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from netspec import api
from netspec.ir import Analysis, Network

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def build(tmp_path: Path) -> Callable[..., Network]:
    """Expand inline DSL text as if it were a file `t.net`."""

    def make(text: str, network: str | None = None) -> Network:
        path = tmp_path / "t.net"
        path.write_text(text, encoding="utf-8")
        return api.load(path, network)

    return make


@pytest.fixture
def analyse(build: Callable[..., Network]) -> Callable[..., Analysis]:
    def make(text: str, network: str | None = None) -> Analysis:
        return api.check(build(text, network))

    return make
