"""What a command is, and the argument types and options several commands share.

Argument types turn a bad value into a usage error (exit 2) at parse time, never a traceback
later.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

from netspec import memory

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """One subcommand: its arguments and its handler, listed in cli.COMMANDS."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Handler
    output_example: str = "out.dat"  # a file name of its -o format, for hints
    description: str | None = None  # the help page's text, when it says more than `help`


def spec_arguments(p: argparse.ArgumentParser) -> None:
    """The spec a command reads: FILE, --network, --allow-outside-imports."""
    p.add_argument("file", help="a .net spec or an IR .json")
    p.add_argument("--network", help="which network of the file (default: the trained one)")
    allow_outside_imports(p)


def allow_outside_imports(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-outside-imports",
        action="store_true",
        help="allow `import` of files outside the spec's folder",
    )


def max_memory(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--max-memory",
        type=memory_limit,
        default="auto",
        metavar="SIZE",
        help=f"refuse a {what} whose memory estimate exceeds SIZE (e.g. 4G; 'none': no limit; "
        f"default: {memory.DEFAULT_SHARE * 100:.0f}%% of the memory available)",  # %% for argparse
    )


def memory_limit(text: str) -> int | None:
    """`--max-memory`: auto, none, or a size such as 4G."""
    try:
        return memory.parse_limit(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _bounded_int(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds)."""
    return _bounded_int(text, 0)


def _bounded_int(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {text}")
    return value
