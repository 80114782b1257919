"""PNG output: the scene drawn by matplotlib (Agg), or the DOT text laid out by Graphviz.

matplotlib is the optional `plot` extra and Graphviz a system program; both are looked up
when used, and a missing one is a message saying how to install it, never a traceback.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import IO, Any

from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.viz.scene import Arrow, Curve, Rect, Scene, Text

PLOT_HINT = "install the plot extra: pip install 'netspec[plot]' (or pip install matplotlib)"
MAX_PIXELS = 30000  # per side; Agg refuses images over 2**16 pixels wide or tall
DPI = 100.0


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def require_matplotlib(what: str) -> None:
    if not have_matplotlib():
        raise NetspecError.at(f"{what} needs matplotlib", hint=PLOT_HINT, exit_code=EXIT_RUNTIME)


def figure(width_in: float, height_in: float, dpi: float = DPI) -> Any:
    """A matplotlib Figure on the Agg canvas, without pyplot's global state."""
    require_matplotlib("drawing a PNG")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def scene_png(scene: Scene, f: IO[bytes], scale: float = 1.5) -> None:
    """Draw the scene at `scale` device pixels per scene pixel (less for huge scenes)."""
    from matplotlib.patches import FancyBboxPatch, PathPatch, Polygon
    from matplotlib.path import Path as MplPath

    scale = min(scale, MAX_PIXELS / max(scene.width, scene.height))
    dpi = DPI * scale
    fig = figure(scene.width / DPI, scene.height / DPI, dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, scene.width)
    ax.set_ylim(scene.height, 0)
    ax.set_axis_off()
    pt = 72.0 / DPI  # scene pixels -> points at the figure's nominal DPI
    for it in scene.items:
        if isinstance(it, Rect):
            ax.add_patch(
                FancyBboxPatch(
                    (it.x, it.y),
                    it.w,
                    it.h,
                    boxstyle=f"round,pad=0,rounding_size={it.radius}",
                    facecolor=it.fill,
                    edgecolor=it.stroke,
                    linewidth=it.width * pt,
                    linestyle="--" if it.dashed else "-",
                )
            )
        elif isinstance(it, Text):
            ax.text(
                it.x,
                it.y,
                it.text,
                fontsize=it.size * pt,
                color=it.color,
                ha={"start": "left", "middle": "center", "end": "right"}[it.anchor],
                va="baseline",
                fontweight="bold" if it.bold else "normal",
                family="DejaVu Sans",
            )
        elif isinstance(it, Curve):
            codes = [MplPath.MOVETO] + [MplPath.CURVE4] * (len(it.points) - 1)
            ax.add_patch(
                PathPatch(
                    MplPath(list(it.points), codes),
                    facecolor="none",
                    edgecolor=it.color,
                    linewidth=it.width * pt,
                    linestyle="--" if it.dashed else "-",
                )
            )
        elif isinstance(it, Arrow):
            ax.add_patch(Polygon(list(it.points), closed=True, facecolor=it.color, linewidth=0))
    fig.savefig(f, format="png", dpi=dpi, facecolor="white")


def run_dot(dot_text: str, fmt: str) -> bytes:
    """Graphviz's own layout of the DOT text, as `fmt` (svg, png)."""
    exe = shutil.which("dot")
    if exe is None:
        raise NetspecError.at(
            "--engine dot needs Graphviz's `dot` program, which is not installed",
            hint="drop --engine dot (netspec lays out SVG, PNG and HTML itself), or install "
            "Graphviz (apt install graphviz, brew install graphviz)",
            exit_code=EXIT_RUNTIME,
        )
    done = subprocess.run(
        [exe, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True, timeout=300
    )
    if done.returncode != 0:
        raise NetspecError.at(
            f"dot failed: {done.stderr.decode('utf-8', 'replace').strip()}",
            exit_code=EXIT_RUNTIME,
        )
    return done.stdout


def write_bytes(path: Path, data: bytes) -> None:
    from netspec.files import atomic_write

    def write(f: IO[bytes]) -> None:
        f.write(data)

    atomic_write(path, write)
