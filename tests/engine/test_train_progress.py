"""The CLI's progress display: one bar for the whole run, every epoch's line, in order."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from netspec.cli.train import _Bar


def _record(epoch: int) -> dict[str, object]:
    return {"epoch": epoch, "loss": 1.0 / epoch, "accuracy": 0.5, "seconds": 0.001, "lr": 0.1}


def _run(bar: _Bar, epochs: int, samples: int = 8) -> list[object]:
    """The epochs of a run as the loop reports them; the rich Progress of each epoch."""
    bars = []
    bar.run_start("numpy", "cpu")
    for epoch in range(1, epochs + 1):
        bar.epoch_start(epoch, epochs, samples)
        for done in range(4, samples + 1, 4):
            bar.batch_end(done, 0.5)
        bars.append(bar.bar)
        bar.epoch_end(_record(epoch))
    bar.close()
    return bars


@pytest.mark.parametrize("live", [True, False])
def test_every_epoch_prints_its_line_in_order(live: bool) -> None:
    sink = io.StringIO()
    bar = _Bar(Console(file=sink, force_terminal=live, width=200), live=live)
    _run(bar, 60)
    # The bar's cursor moves and colours aside, each line as the terminal ends up showing it.
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", sink.getvalue()).replace("\r", "\n")
    shown = [int(m) for m in re.findall(r"^epoch (\d+)/60  loss", text, flags=re.M)]
    assert shown == list(range(1, 61))
    assert "epoch 60/60  loss 0.01667  accuracy 0.5  (0.00 s)" in text
    assert bar.bar is None and not bar.pending  # closed, nothing held back


def test_one_bar_serves_the_whole_run() -> None:
    """A rich Progress started and stopped per epoch cost 7 ms an epoch (XOR's is 0.2 ms)."""
    bar = _Bar(Console(file=io.StringIO(), force_terminal=True, width=200), live=True)
    bars = _run(bar, 20)
    assert bars[0] is not None and all(b is bars[0] for b in bars)


def test_lines_are_held_back_at_most_a_flush_interval() -> None:
    """Fast epochs share a print; the first prints at once, and close prints the rest."""
    sink = io.StringIO()
    bar = _Bar(Console(file=sink, width=200), live=False)
    bar.epoch_start(1, 3, 8)
    bar.epoch_end(_record(1))
    assert "epoch 1/3" in sink.getvalue()
    bar.epoch_start(2, 3, 8)
    bar.epoch_end(_record(2))
    if "epoch 2/3" not in sink.getvalue():  # unless this machine took FLUSH_S between them
        assert bar.pending
    bar.close()
    assert "epoch 2/3" in sink.getvalue()
