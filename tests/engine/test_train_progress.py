"""The CLI's progress display: every epoch's line, in order, and a bar drawn sparingly."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from netspec.cli.train import _Bar


def _record(epoch: int) -> dict[str, object]:
    return {"epoch": epoch, "loss": 1.0 / epoch, "accuracy": 0.5, "seconds": 0.001, "lr": 0.1}


def _run(bar: _Bar, epochs: int, samples: int = 8) -> None:
    """The epochs of a run as the loop reports them, then run_train's close."""
    bar.run_start("numpy", "cpu")
    for epoch in range(1, epochs + 1):
        bar.epoch_start(epoch, epochs, samples)
        for done in range(4, samples + 1, 4):
            bar.batch_end(done, 0.5)
        bar.epoch_end(_record(epoch))
    bar.close()


def _screen(text: str) -> list[str]:
    """Each line as a terminal ends up showing it: a carriage return starts it over."""
    return [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]


@pytest.mark.parametrize("live", [True, False])
def test_every_epoch_prints_its_line_in_order(live: bool) -> None:
    sink = io.StringIO()
    bar = _Bar(Console(file=sink, force_terminal=live, width=200), live=live)
    _run(bar, 60)
    shown = _screen(sink.getvalue())
    epochs = [int(m.group(1)) for line in shown if (m := re.match(r"epoch (\d+)/60  loss", line))]
    assert epochs == list(range(1, 61))
    assert "epoch 60/60  loss 0.01667  accuracy 0.5  (0.00 s)" in shown
    assert shown[-1] == ""  # the bar is gone: the cursor is on a clean line
    assert not bar.pending


def test_the_bar_is_drawn_at_most_every_draw_interval() -> None:
    """rich's Progress cost 1.5 ms a drawing: XOR's epochs take 0.2 ms."""
    sink = io.StringIO()
    bar = _Bar(Console(file=sink, force_terminal=True, width=200), live=True, threads="1 thread")
    bar.DRAW_S = bar.FLUSH_S = 3600.0
    _run(bar, 60)
    # The first batch draws it, the first epoch's line (written at once) draws it again above;
    # close writes the other 59 lines and takes the bar away.
    assert sink.getvalue().count("samples/s") == 2
    assert "epoch 1/60 " in sink.getvalue() and "1 thread" in sink.getvalue()


def test_the_bar_fits_the_terminal() -> None:
    """A line wider than the terminal wraps, and a carriage return could not redraw it."""
    sink = io.StringIO()
    bar = _Bar(Console(file=sink, force_terminal=True, width=40), live=True, threads="x" * 80)
    bar.epoch_start(1, 3, 8)
    bar.batch_end(4, 0.5)
    drawn = sink.getvalue()
    assert 0 < len(drawn) <= 39 and "\n" not in drawn
    bar.close()
    assert sink.getvalue().endswith("\r")


def test_lines_are_held_back_at_most_a_flush_interval() -> None:
    """Under a live bar fast epochs share a write; the first is written at once, and close
    writes the rest."""
    sink = io.StringIO()
    bar = _Bar(Console(file=sink, width=200), live=True)
    bar.epoch_start(1, 3, 8)
    bar.epoch_end(_record(1))
    assert "epoch 1/3" in sink.getvalue()
    bar.FLUSH_S = 3600.0
    bar.epoch_start(2, 3, 8)
    bar.epoch_end(_record(2))
    assert "epoch 2/3" not in sink.getvalue() and bar.pending
    bar.close()
    assert "epoch 2/3" in sink.getvalue()


def test_without_a_terminal_every_epoch_line_is_written_at_once() -> None:
    """A log or CI (no live bar) gets each epoch's line when it ends, not at the next one."""
    sink = io.StringIO()
    bar = _Bar(Console(file=sink, width=200), live=False)
    bar.FLUSH_S = 3600.0
    for epoch in (1, 2):
        bar.epoch_start(epoch, 3, 8)
        bar.epoch_end(_record(epoch))
        assert f"epoch {epoch}/3" in sink.getvalue() and not bar.pending


def test_a_quiet_console_gets_no_bar_and_no_lines() -> None:
    """The bar writes to the console's file itself: it must keep a quiet console quiet."""
    sink = io.StringIO()
    for live in (True, False):
        bar = _Bar(Console(file=sink, width=200, quiet=True), live=live)
        bar.epoch_start(1, 2, 8)
        bar.batch_end(4, 0.5)
        bar.epoch_end(_record(1))
        bar.close()
    assert sink.getvalue() == ""
