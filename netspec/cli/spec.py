"""`check`, `compile` and `schema`: the spec itself."""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path

from netspec.cli.args import Command, positive_int, spec_arguments
from netspec.cli.report import check_json, err, file_json, print_checked, print_table, report
from netspec.errors import EXIT_SPEC, Diagnostic, NetspecError, Severity
from netspec.ir import Analysis


def _check_arguments(p: argparse.ArgumentParser) -> None:
    spec_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--strict", action="store_true", help="fail on warnings too")
    p.add_argument(
        "--all",
        action="store_true",
        dest="full",
        help="print every row of the layer table (a long one shows its ends and failures)",
    )
    p.add_argument(
        "--batch", type=positive_int, default=1, help="batch size for the memory estimate"
    )


def run_check(args: argparse.Namespace) -> int:
    """`check`, with Python's cyclic garbage collector paused throughout: the analysis makes
    no reference cycles, and the collector's passes over a 200,000-layer network's million
    objects (as it is built, checked and printed) took a tenth of the time. The objects are
    freed as usual when the handler returns, before the collector is resumed."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _run_check(args)
    finally:
        if enabled:
            gc.enable()


def _run_check(args: argparse.Namespace) -> int:
    from netspec import api

    try:
        if Path(args.file).suffix == ".json" or args.network is not None:
            net = api.load(
                args.file, args.network, allow_outside_imports=args.allow_outside_imports
            )
            return _check_one(args, *api.analyse_network(net))
        checked = api.check_file(args.file, allow_outside_imports=args.allow_outside_imports)
    except NetspecError as e:
        if args.json:  # a parse or expansion error is still an answer a program can read
            diagnostics = [d.to_json() for d in e.diagnostics]
            print(json.dumps({"valid": False, "diagnostics": diagnostics}, indent=1))
        raise
    diags = checked.diagnostics
    if args.json:
        print(json.dumps(file_json(checked, args.batch), indent=1))
    else:
        for n in checked.networks:
            if n.analysis is not None:
                print_table(n.analysis, args.batch, failed=n.failed, full=args.full)
        print_checked(checked)
    report(diags)
    errors = any(d.severity is Severity.ERROR for d in diags)
    return EXIT_SPEC if errors or (args.strict and diags) else 0


def _check_one(args: argparse.Namespace, analysis: Analysis, diags: list[Diagnostic]) -> int:
    """`check` of one network: an IR JSON, or the spec's network --network names."""
    errors = [d for d in diags if d.severity is Severity.ERROR]
    if args.json:
        print(json.dumps(check_json(analysis, diags, args.batch), indent=1))
    else:
        print_table(analysis, args.batch, failed=bool(errors), full=args.full)
    report(diags)
    return EXIT_SPEC if errors or (args.strict and diags) else 0


def _compile_arguments(p: argparse.ArgumentParser) -> None:
    spec_arguments(p)
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.add_argument(
        "--target",
        choices=("json", "torch"),
        default="json",
        help="json: the IR; torch: the torch.fx GraphModule's Python code (needs torch)",
    )


def run_compile(args: argparse.Namespace) -> int:
    from netspec import api
    from netspec.files import atomic_write_text

    net = api.load(args.file, args.network, allow_outside_imports=args.allow_outside_imports)
    analysis = api.check(net)
    if args.target == "torch":  # torch is optional: a missing one is a message and exit 3
        text = api.torch_code(analysis).rstrip("\n")
    else:
        text = api.compile_json(analysis)
    if args.output in (None, "-"):
        print(text)
    else:
        atomic_write_text(Path(args.output), text)  # main() has checked -o
        err(f"wrote {args.output}")
    return 0


def run_schema(args: argparse.Namespace) -> int:
    from netspec import api

    print(json.dumps(api.schema(), indent=1))
    return 0


CHECK = Command("check", "validate a spec and print its layer table", _check_arguments, run_check)
COMPILE = Command(
    "compile",
    "write the IR with inferred shapes as JSON",
    _compile_arguments,
    run_compile,
    output_example="model.json",
)
SCHEMA = Command("schema", "print the IR's JSON Schema", lambda p: None, run_schema)
