"""Golden diagnostics: every tests/diagnostics/<case>.net, checked by the CLI, prints exactly
<case>.err on stderr.

The CLI runs in-process from inside tests/diagnostics with relative paths, so the expected
text holds no machine-specific path. `UPDATE_GOLDEN=1 pytest tests/test_diagnostics.py`
rewrites the .err files; review the diff as a user would read the messages.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netspec.cli import main
from netspec.errors import EXIT_SPEC

CASES = Path(__file__).resolve().parent / "diagnostics"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _cases() -> list[str]:
    return sorted(p.stem for p in CASES.glob("*.net"))


@pytest.mark.parametrize("case", _cases())
def test_check_prints_the_golden_diagnostics(
    case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(CASES)
    code = main(["check", f"{case}.net"])
    # Imported files are named by absolute path (see the test below); strip the folder so the
    # golden text stays machine-independent.
    stderr = capsys.readouterr().err.replace(f"{CASES}{os.sep}", "")
    golden = CASES / f"{case}.err"
    if UPDATE:
        golden.write_text(stderr, encoding="utf-8")
    assert stderr == golden.read_text(encoding="utf-8")
    # Every case is a spec with at least one error: the exit code says so.
    assert "error:" in stderr
    assert code == EXIT_SPEC


def test_every_case_has_a_golden_file_and_there_are_enough_cases() -> None:
    cases = _cases()
    assert len(cases) >= 20
    assert sorted(p.stem for p in CASES.glob("*.err")) == cases


def test_several_independent_errors_are_reported_in_one_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(CASES)
    main(["check", "several_errors.net"])
    stderr = capsys.readouterr().err
    located = [line for line in stderr.splitlines() if line.startswith("several_errors.net:")]
    assert len(located) >= 3
    assert len({line.split(":")[1] for line in located}) >= 3  # on three different lines


def test_diagnostics_in_imported_files_name_them_relative_to_the_spec(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user ran `netspec check import_cycle_a.net`; the error lies in import_cycle_b.net
    # and should be named as the user would write it, not by this machine's absolute path.
    monkeypatch.chdir(CASES)
    main(["check", "import_cycle_a.net"])
    stderr = capsys.readouterr().err
    assert stderr.startswith("import_cycle_b.net:1:1: error: import cycle")
