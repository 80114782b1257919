"""`netspec graph` and `netspec plot`: arguments and printing only.

Imported by `netspec.cli` at start-up: the drawing modules (and matplotlib) load inside the
handlers, so `netspec check` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspec import cli
from netspec.errors import EXIT_SPEC, EXIT_USAGE, NetspecError, Severity


def _depth(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


def _add_commands(sub: Any, spec_command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    g = spec_command("graph", "draw the network: .svg, .png, .dot or a self-contained .html")
    g.add_argument(
        "-o", "--output", help="the picture, its format by suffix (default: <network>.svg)"
    )
    levels = g.add_mutually_exclusive_group()
    levels.add_argument("--expand", action="store_true", help="draw every layer of every block")
    levels.add_argument("--collapse", action="store_true", help="one box per outermost block")
    levels.add_argument(
        "--depth", type=_depth, metavar="N", help="expand blocks nested less than N deep"
    )
    g.add_argument(
        "--shapes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="tensor shapes on the edges (default); --no-shapes puts them in the boxes",
    )
    g.add_argument(
        "--engine",
        choices=("netspec", "dot"),
        default="netspec",
        help="layout: netspec's own (default, nothing to install) or Graphviz's dot",
    )
    p = sub.add_parser(
        "plot",
        help="draw training curves of one or more runs",
        description="Draw the loss and metrics of runs (folders holding history.json) side "
        "by side, training solid and validation dashed, the best epoch dotted.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (or history.json)")
    p.add_argument(
        "-o", "--output", help="the picture (.png, .svg; default: RUN_DIR/curves.png for one run)"
    )


cli._EXTENSIONS.append(_add_commands)


@cli.command("graph")
def cmd_graph(args: argparse.Namespace) -> int:
    from netspec import api
    from netspec.viz.draw import write_graph

    net = api.load(args.file, args.network, allow_outside_imports=args.allow_outside_imports)
    analysis, diags = api.analyse_network(net)
    out = Path(args.output) if args.output is not None else Path(f"{net.name}.svg")
    cli.check_output(args, out)  # -o or the default: the spec and its imports stay intact
    depth = 10_000 if args.expand else 0 if args.collapse else args.depth
    d = write_graph(analysis, diags, out, depth=depth, shapes=args.shapes, engine=args.engine)
    cli._report(diags)
    more = " (--expand or --depth N shows more)" if d.depth < d.max_depth else ""
    print(f"wrote {out}: {len(d.boxes)} boxes, blocks expanded {d.depth} deep{more}")
    return EXIT_SPEC if any(x.severity is Severity.ERROR for x in diags) else 0


@cli.command("plot")
def cmd_plot(args: argparse.Namespace) -> int:
    from netspec.viz import curves

    runs = curves.load_runs([Path(r) for r in args.runs])
    if args.output is not None:
        out = Path(args.output)
    elif len(runs) == 1:
        first = Path(args.runs[0])
        out = (first if first.is_dir() else first.parent) / curves.CURVES
    else:
        raise NetspecError.at("several runs need -o, e.g. -o compare.png", exit_code=EXIT_USAGE)
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise NetspecError.at(
            f"cannot draw curves as {out.suffix or 'a file without a suffix'}",
            hint="use .png, .svg or .pdf",
            exit_code=EXIT_USAGE,
        )
    panels = curves.save(runs, out)
    print(f"wrote {out}: {panels} panel(s), {len(runs)} run(s)")
    return 0
