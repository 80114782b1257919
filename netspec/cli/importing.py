"""`import`: an ONNX model as a readable `.net` spec and its weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from netspec.cli.args import Command
from netspec.cli.outputs import check_output
from netspec.errors import EXIT_USAGE, NetspecError


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the .onnx model to import")
    p.add_argument("-o", "--output", required=True, help="the .net spec to write")
    p.add_argument("--weights-out", help="the .npz of its weights, keyed by the spec's names")


def run_import(args: argparse.Namespace) -> int:
    from netspec import api

    out = Path(args.output)
    weights = None if args.weights_out is None else Path(args.weights_out)
    if weights is not None:
        check_output(args, weights, "model.npz")
        if weights.resolve() == out.resolve():
            raise NetspecError.at(
                f"-o and --weights-out are the same file {out}: the spec and its weights "
                "need a file each",
                hint="e.g. -o model.net --weights-out model.npz",
                exit_code=EXIT_USAGE,
            )
    summary = api.import_onnx(args.model, out, weights)
    print(
        f"imported {args.model} -> {out}: network {summary['network']}, "
        f"{summary['layers']} layers, {summary['params']:,} parameters"
        + (f"; weights -> {weights}" if weights is not None else "")
    )
    for note in summary["notes"]:
        print(f"note: {note}")
    return 0


IMPORT = Command(
    "import",
    "turn an ONNX model into a .net spec (and its weights)",
    _arguments,
    run_import,
    output_example="model.net",
)
