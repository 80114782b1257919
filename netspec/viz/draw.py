"""`write_graph`: an analysed network to a diagram file, the format chosen by its suffix."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Literal

from netspec.errors import EXIT_USAGE, Diagnostic, NetspecError
from netspec.files import atomic_write, atomic_write_text
from netspec.ir import Analysis
from netspec.viz import diagram, dot, raster, scene, svg

FORMATS = (".svg", ".png", ".dot", ".gv", ".html")
Engine = Literal["netspec", "dot"]


def write_graph(
    analysis: Analysis,
    diags: list[Diagnostic],
    path: Path,
    *,
    depth: int | None = None,
    shapes: bool = True,
    engine: Engine = "netspec",
) -> diagram.Diagram:
    """Draw the network into `path` (.svg, .png, .dot, .html); returns what was drawn."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise NetspecError.at(
            f"cannot draw {path.name}: the format follows the suffix, one of " + ", ".join(FORMATS),
            exit_code=EXIT_USAGE,
        )
    d = diagram.build(analysis, diags, depth)
    if suffix in (".dot", ".gv"):
        atomic_write_text(path, dot.to_dot(d, shapes))
    elif engine == "dot":
        if suffix == ".html":
            raise NetspecError.at(
                "--engine dot draws .svg and .png; the .html page uses netspec's layout",
                exit_code=EXIT_USAGE,
            )
        raster.write_bytes(path, raster.run_dot(dot.to_dot(d, shapes), suffix[1:]))
    else:
        drawn = scene.render(d, shapes)
        if suffix == ".svg":
            atomic_write_text(path, svg.to_svg(drawn))
        elif suffix == ".html":
            atomic_write_text(path, svg.to_html(drawn, analysis, diags))
        else:
            raster.require_matplotlib("drawing a PNG")

            def write(f: IO[bytes]) -> None:
                raster.scene_png(drawn, f)

            atomic_write(path, write)
    return d
