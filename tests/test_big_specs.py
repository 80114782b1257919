"""Large specs (issue 14, item 22): a chain just under the 200,000-layer limit is checked in
seconds, one past it is refused before anything is built, and the table of a long network
shows its ends and its failures rather than 200,000 rows."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from netspec import api
from netspec.cli import main
from netspec.cli.report import TABLE_ENDS
from netspec.errors import EXIT_SPEC, NetspecError


def chain(tmp_path: Path, layers: int, middle: str = "") -> Path:
    path = tmp_path / "big.net"
    half = (layers - 1) // 2
    body = (
        f"  dense(3) * {layers}\n"
        if not middle
        else (f"  dense(3) * {half}\n  {middle}\n  dense(3) * {layers - half - 1}\n")
    )
    path.write_text(f"network Big {{\n  input x: [8]\n{body}}}\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_a_chain_just_under_the_layer_limit_is_checked_without_a_networkx_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It took 23 s of CPU (a NetworkX graph, every layer's rules, the garbage collector's
    # passes over 200,000 new objects), 66 s wall on a loaded machine and 900 MB; the time is
    # measured in benchmarks/check_speed.py --chain, here what made it slow must not come back.
    def no_graph(*args: object, **kwargs: object) -> None:
        raise AssertionError("expand's IR is in order: the graph stage needs no NetworkX graph")

    monkeypatch.setattr("networkx.DiGraph", no_graph)
    analysis = api.check(api.load(chain(tmp_path, 199_990)))
    assert len(analysis.order) == 199_991  # the input and every dense
    assert analysis.trainable_params == 8 * 3 + 3 + (3 * 3 + 3) * 199_989


def test_check_of_a_spec_does_not_import_networkx(tmp_path: Path) -> None:
    # Only IR JSON out of order needs NetworkX's sort; importing it was a third of start-up.
    code = (
        "import sys, netspec.cli as c; code = c.main(['check', sys.argv[1]]);"
        "print(code, 'networkx' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(chain(tmp_path, 10))],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=60,
        check=False,
    )
    assert done.stdout.splitlines()[-1] == "0 False", done.stderr


def test_the_memory_a_chain_takes_is_linear_and_small(tmp_path: Path) -> None:
    """Traced bytes held by a loaded and checked chain, at three lengths: each further layer
    costs as much as the one before (linear), and about a kilobyte: a layer's node and table
    row (a dict of fields each, sharing their values with the op's first layer), its name
    and inputs. Each was validated into copies of everything, 2.9 KB a layer."""
    api.check(api.load(chain(tmp_path, 10)))  # one-time costs: imports, caches
    held = []
    for layers in (2000, 6000, 10000):
        path = chain(tmp_path, layers)
        tracemalloc.start()
        try:
            analysis = api.check(api.load(path))
            held.append(tracemalloc.get_traced_memory()[0])
        finally:
            tracemalloc.stop()
        assert len(analysis.layers) == layers + 1
        del analysis
    first, second = (held[1] - held[0]) / 4000, (held[2] - held[1]) / 4000
    assert abs(second - first) < 0.2 * first, (first, second)
    assert second < 1200, second


def test_a_chain_past_the_limit_is_refused_before_it_is_built(tmp_path: Path) -> None:
    path = chain(tmp_path, 250_000)
    tracemalloc.start()
    try:
        with pytest.raises(NetspecError, match="past 200,000 layers"):
            api.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000  # a list of 250,000 layers alone would be far more


def test_a_long_table_shows_its_ends_and_all_shows_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = chain(tmp_path, 3000)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if " dense " in line]
    assert len(rows) == 2 * TABLE_ENDS - 1  # and the input row
    assert f"  ... {3001 - 2 * TABLE_ENDS:,} more layer(s) (--all shows every one) ..." in out
    assert "parameters: 36,015 trainable" in out  # the totals count every layer
    assert main(["check", str(path), "--all"]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if " dense " in line]) == 3000


def test_a_failing_layer_in_the_middle_of_a_long_table_is_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = chain(tmp_path, 3000, middle="reshape([2, 2])")
    assert main(["check", str(path)]) == EXIT_SPEC
    out = capsys.readouterr().out
    failing = [line for line in out.splitlines() if "FAILED" in line]
    assert len(failing) == 1 and "reshape" in failing[0]
    # The layers before it are elided; those after it were not checked, so not listed.
    assert out.count("more layer(s)") == 1
    assert out.index("more layer(s)") < out.index("FAILED")
