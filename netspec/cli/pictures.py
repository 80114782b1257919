"""`graph` and `plot`: pictures of a network and of training runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from netspec.cli.args import Command, spec_arguments
from netspec.cli.outputs import check_output
from netspec.cli.report import report
from netspec.errors import EXIT_SPEC, Severity


def _depth(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


def _graph_arguments(g: argparse.ArgumentParser) -> None:
    spec_arguments(g)
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


def run_graph(args: argparse.Namespace) -> int:
    from netspec import api

    net = api.load(args.file, args.network, allow_outside_imports=args.allow_outside_imports)
    analysis, diags = api.analyse_network(net)
    out = Path(args.output) if args.output is not None else Path(f"{net.name}.svg")
    check_output(args, out, "network.svg")  # -o or the default: the spec and imports stay intact
    depth = 10_000 if args.expand else 0 if args.collapse else args.depth
    d = api.draw(analysis, diags, out, depth=depth, shapes=args.shapes, engine=args.engine)
    report(diags)
    more = " (--expand or --depth N shows more)" if d.depth < d.max_depth else ""
    print(f"wrote {out}: {len(d.boxes)} boxes, blocks expanded {d.depth} deep{more}")
    return EXIT_SPEC if any(x.severity is Severity.ERROR for x in diags) else 0


def _plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (or history.json)")
    p.add_argument(
        "-o", "--output", help="the picture (.png, .svg; default: RUN_DIR/curves.png for one run)"
    )


def run_plot(args: argparse.Namespace) -> int:
    from netspec import api

    out, panels, runs = api.plot(args.runs, args.output)
    print(f"wrote {out}: {panels} panel(s), {runs} run(s)")
    return 0


GRAPH = Command(
    "graph",
    "draw the network: .svg, .png, .dot or a self-contained .html",
    _graph_arguments,
    run_graph,
    output_example="network.svg",
)
PLOT = Command(
    "plot",
    "draw training curves of one or more runs",
    _plot_arguments,
    run_plot,
    output_example="curves.png",
    description="Draw the loss and metrics of runs (folders holding history.json) side by "
    "side, training solid and validation dashed, the best epoch dotted.",
)
