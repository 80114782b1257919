"""The editor support stays out of everyone else's way."""

from __future__ import annotations

import subprocess
import sys

from tests.test_layering import PACKAGE, imports_of, modules


def test_only_the_server_modules_import_pygls_and_lsprotocol() -> None:
    offenders = [
        name
        for name, path in modules().items()
        if any(i.split(".")[0] in ("pygls", "lsprotocol") for i in imports_of(path))
    ]
    assert offenders == ["netspec.lsp.server", "netspec.lsp.session"]


def test_the_command_line_starts_without_loading_the_server() -> None:
    code = (
        "import sys, netspec.cli as c;"
        "c.main(['fmt', '--check', 'specs/lenet5.net']);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pygls', 'lsprotocol')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=60
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
