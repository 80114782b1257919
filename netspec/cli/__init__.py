"""The command line: arguments and printing only. Every NetspecError becomes a message and
an exit code; a traceback is shown only with --debug.

Each command is a `Command` (args.py) in one of the modules below, listed once in COMMANDS.
Handlers call `netspec.api`, which owns the pipeline and its guards; no back end is imported
here, and each handler imports what it needs when it runs, so `netspec check` starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from netspec import __version__
from netspec.cli import editor, generate, importing, model, pictures, spec, train
from netspec.cli.args import Command
from netspec.cli.outputs import check_output
from netspec.cli.report import err, report
from netspec.errors import EXIT_RUNTIME, EXIT_SPEC, EXIT_USAGE, NetspecError

COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        spec.CHECK,
        spec.COMPILE,
        spec.SCHEMA,
        train.TRAIN,
        train.EVAL,
        model.EXPORT,
        model.PREDICT,
        generate.SAMPLE,
        importing.IMPORT,
        pictures.GRAPH,
        pictures.PLOT,
        editor.FMT,
        editor.LSP,
    )
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="netspec", description="A declarative neural-network compiler."
    )
    p.add_argument("--version", action="version", version=f"netspec {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        sp = sub.add_parser(
            command.name, help=command.help, description=command.description or command.help
        )
        command.arguments(sp)
        # `netspec check x.net --debug` works too. SUPPRESS: absent after the command, it
        # leaves the value `--debug` before it set.
        sp.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show Python tracebacks"
        )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    command = COMMANDS[args.command]
    try:
        if getattr(args, "output", None) not in (None, "-"):
            check_output(args, Path(args.output), command.output_example)
        return command.run(args)
    except NetspecError as e:
        if args.debug:
            raise
        report(e.diagnostics)
        return e.exit_code
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`netspec check big.net | head`): not an error of ours. Point
        # stdout at devnull so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except RecursionError:
        if args.debug:
            raise
        err("error: the input nests too deeply to process")
        return EXIT_SPEC
    except MemoryError:
        if args.debug:
            raise
        err("error: out of memory")
        return EXIT_RUNTIME
    except Exception as e:  # a bug in netspec, not in the input: say so, keep the trace short
        if args.debug:
            raise
        err(
            f"internal error: {type(e).__name__}: {e}\n"
            "this is a bug in netspec; rerun with --debug for the traceback and report it"
        )
        return EXIT_RUNTIME


def run() -> None:
    sys.exit(main())


__all__ = ["COMMANDS", "EXIT_USAGE", "main", "run"]
