"""The command line: arguments and printing only. Every NetspecError becomes a message and
an exit code; a traceback is shown only with --debug."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netspec import __version__
from netspec.errors import (
    EXIT_RUNTIME,
    EXIT_SPEC,
    EXIT_USAGE,
    Diagnostic,
    NetspecError,
    Severity,
    render,
)

if TYPE_CHECKING:
    from netspec.ir import Analysis

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn

    return register


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _report(diags: Sequence[Diagnostic]) -> None:
    for d in diags:
        _err(render(d))
    errors = sum(d.severity is Severity.ERROR for d in diags)
    warnings = len(diags) - errors
    if errors or warnings:
        _err(f"{errors} error(s), {warnings} warning(s)")


def _human(n: float, unit: str = "") -> str:
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.3g}{suffix}{unit}" if suffix else f"{n:g}{unit}"
        n /= 1000
    return f"{n:.3g}P{unit}"


def _bytes(n: float) -> str:
    for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.1f} {suffix}" if suffix != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"


# ---- check / compile / schema ------------------------------------------------------------------


@command("check")
def cmd_check(args: argparse.Namespace) -> int:
    from netspec import api

    try:
        net = api.load(args.file, args.network, allow_outside_imports=args.allow_outside_imports)
        analysis, diags = api.analyse_network(net)
    except NetspecError as e:
        if args.json:  # a parse or expansion error is still an answer a program can read
            print(
                json.dumps(
                    {"valid": False, "diagnostics": [d.to_json() for d in e.diagnostics]}, indent=1
                )
            )
        raise
    errors = [d for d in diags if d.severity is Severity.ERROR]
    if args.json:
        print(json.dumps(_check_json(analysis, diags, args.batch), indent=1))
    else:
        _print_table(analysis, args.batch, failed=bool(errors))
    _report(diags)
    if errors or (args.strict and diags):
        return EXIT_SPEC
    return 0


def _check_json(analysis: Analysis, diags: list[Diagnostic], batch: int) -> dict[str, Any]:
    return {
        "network": analysis.network.name,
        "valid": not any(d.severity is Severity.ERROR for d in diags),
        "total_params": analysis.total_params,
        "trainable_params": analysis.trainable_params,
        "non_trainable_params": analysis.state_params,
        "param_bytes": analysis.total_params * 4,
        "macs": analysis.macs,
        "flops": 2 * analysis.macs,
        "batch": batch,
        "activation_bytes": analysis.activation_bytes * batch,
        "layers": [
            {
                "name": info.name,
                "op": info.op,
                "input_shapes": [list(s) for s in info.input_shapes],
                "output_shape": None if info.output_shape is None else list(info.output_shape),
                "params": info.params,
                "non_trainable_params": info.state,
                "macs": info.macs,
                "failed": info.failed,
            }
            for name in analysis.order
            if (info := analysis.layers.get(name)) is not None
        ],
        "diagnostics": [d.to_json() for d in diags],
    }


def _print_table(analysis: Analysis, batch: int, failed: bool) -> None:
    """The layer table as aligned plain text: a rich Table costs seconds for ResNet-1202."""
    rows = [("layer", "op", "output shape", "params", "MACs")]
    for name in analysis.order:
        info = analysis.layers.get(name)
        if info is None:
            continue
        shape = "FAILED" if info.output_shape is None else str(list(info.output_shape))
        params = f"{info.params:,}" + (f" (+{info.state:,})" if info.state else "")
        rows.append((name, info.op, shape, params, f"{info.macs:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"network {analysis.network.name}"]
    for i, r in enumerate(rows):
        lines.append(
            f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  "
            f"{r[3]:>{widths[3]}}  {r[4]:>{widths[4]}}".rstrip()
        )
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    if failed:
        lines.append("the layers after a failure were not checked")
    else:
        lines.append(
            f"parameters: {analysis.trainable_params:,} trainable"
            f" ({_bytes(analysis.trainable_params * 4)} as float32)"
            + (
                f", {analysis.state_params:,} non-trainable (+N above)"
                if analysis.state_params
                else ""
            )
        )
        lines.append(
            f"compute:    {_human(analysis.macs)} MACs per sample "
            f"({_human(2 * analysis.macs)} FLOPs; 1 MAC = one multiply-accumulate)"
        )
        lines.append(
            f"memory:     {_bytes(analysis.activation_bytes * batch)} of activations for batch "
            f"{batch} (forward, float32)"
        )
    sys.stdout.write("\n".join(lines) + "\n")


@command("compile")
def cmd_compile(args: argparse.Namespace) -> int:
    from netspec import api

    net = api.load(args.file, args.network, allow_outside_imports=args.allow_outside_imports)
    analysis = api.check(net)
    text = api.compile_json(analysis)
    if args.output in (None, "-"):
        print(text)
    else:
        from netspec.engine.files import atomic_write_text

        atomic_write_text(Path(args.output), text)  # main() has checked -o
        _err(f"wrote {args.output}")
    return 0


@command("schema")
def cmd_schema(args: argparse.Namespace) -> int:
    from netspec import api

    print(json.dumps(api.schema(), indent=1))
    return 0


# ---- outputs that would replace inputs ---------------------------------------------------------

# A file name of each command's output format, for the hint when -o names a folder.
_OUTPUT_EXAMPLES = {
    "compile": "model.json",
    "export": "model.onnx",
    "graph": "network.svg",
    "predict": "outputs.npz",
    "plot": "curves.png",
}


def check_output(args: argparse.Namespace, output: Path) -> None:
    """Refuse an output path that is a folder or one of the command's inputs: a file its
    arguments name, the files in a run folder it reads, and every file a spec it loads was read
    from (imports that only give constants too). main() checks -o; commands that pick a
    default output check that too."""
    from netspec.engine.files import check_output as refuse

    refuse(output, _input_paths(args), _OUTPUT_EXAMPLES.get(args.command, "out.dat"))


def _input_paths(args: argparse.Namespace) -> list[Path]:
    """Every file a command's arguments name for reading (a run folder: the files in it)."""
    from netspec import api
    from netspec.engine.checkpoint import HISTORY, NORMALIZATION, WEIGHTS

    paths = [
        Path(value)
        for key in ("file", "model", "data", "resume")
        if isinstance(value := getattr(args, key, None), str)
    ]
    outside = getattr(args, "allow_outside_imports", False)
    for key in ("file", "model"):  # a spec's imports
        spec = getattr(args, key, None)
        if isinstance(spec, str) and spec.endswith(".net") and Path(spec).is_file():
            paths += api.source_files(spec, allow_outside_imports=outside)
    for spec in getattr(args, "input", None) or []:  # predict's [NAME=]FILE
        paths += [Path(spec), Path(spec.partition("=")[2])] if "=" in spec else [Path(spec)]
    if isinstance(weights := getattr(args, "weights", None), str):
        folder = Path(weights) if Path(weights).is_dir() else Path(weights).parent
        paths += [Path(weights), folder / WEIGHTS, folder / NORMALIZATION]
    for run in getattr(args, "runs", None) or []:  # plot reads a run's history
        paths += [Path(run), Path(run) / HISTORY]
    return paths


# ---- parser ----------------------------------------------------------------------------------


# Argparse types for numbers: a bad value is a usage error (exit 2), never a traceback later.
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="netspec", description="A declarative neural-network compiler."
    )
    p.add_argument("--version", action="version", version=f"netspec {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def spec_command(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("file", help="a .net spec or an IR .json")
        sp.add_argument("--network", help="which network of the file (default: the trained one)")
        sp.add_argument(
            "--allow-outside-imports",
            action="store_true",
            help="allow `import` of files outside the spec's folder",
        )
        return sp

    c = spec_command("check", "validate a spec and print its layer table")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument("--strict", action="store_true", help="fail on warnings too")
    c.add_argument(
        "--batch", type=positive_int, default=1, help="batch size for the memory estimate"
    )
    c = spec_command("compile", "write the IR with inferred shapes as JSON")
    c.add_argument("-o", "--output", help="output file (default: stdout)")
    sub.add_parser("schema", help="print the IR's JSON Schema")
    for extend in _EXTENSIONS:
        extend(sub, spec_command)
    for sp in sub.choices.values():  # `netspec check x.net --debug` works too
        # SUPPRESS: absent after the command, it leaves the value `--debug` before it set.
        sp.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show Python tracebacks"
        )
    return p


# Other modules (train, export, ...) add their subcommands here.
_EXTENSIONS: list[Callable[..., None]] = []

# After _EXTENSIONS: these modules register into it (and import their heavy libraries lazily).
import netspec.engine.commands  # noqa: E402
import netspec.lsp.commands  # noqa: E402
import netspec.onnx.commands  # noqa: E402
import netspec.viz.commands  # noqa: E402, F401


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    try:
        if getattr(args, "output", None) not in (None, "-"):
            check_output(args, Path(args.output))
        return COMMANDS[args.command](args)
    except NetspecError as e:
        if args.debug:
            raise
        _report(e.diagnostics)
        return e.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`netspec check big.net | head`): not an error of ours. Point
        # stdout at devnull so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except RecursionError:
        if args.debug:
            raise
        _err("error: the input nests too deeply to process")
        return EXIT_SPEC
    except MemoryError:
        if args.debug:
            raise
        _err("error: out of memory")
        return EXIT_RUNTIME
    except Exception as e:  # a bug in netspec, not in the input: say so, keep the trace short
        if args.debug:
            raise
        _err(
            f"internal error: {type(e).__name__}: {e}\n"
            "this is a bug in netspec; rerun with --debug for the traceback and report it"
        )
        return EXIT_RUNTIME


def run() -> None:
    sys.exit(main())


__all__ = ["EXIT_USAGE", "main", "run"]
