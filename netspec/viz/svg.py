"""A scene -> SVG text, and the self-contained HTML page (SVG inline, the layer table beside).

Neither needs a system program: the layout is netspec's own (keras-team/keras#10935 is the
complaint about diagrams that need the Graphviz binary).
"""

from __future__ import annotations

from html import escape

from netspec.errors import Diagnostic
from netspec.ir import Analysis
from netspec.viz.diagram import human
from netspec.viz.scene import Arrow, Curve, Rect, Scene, Text, shape_text

FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def to_svg(scene: Scene, standalone: bool = True) -> str:
    """The SVG document; `standalone=False` omits the namespace for inlining in HTML."""
    ns = ' xmlns="http://www.w3.org/2000/svg"' if standalone else ""
    w, h = _n(scene.width), _n(scene.height)
    out = [
        f'<svg{ns} width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT}" role="img">',
        f'<rect width="{w}" height="{h}" fill="#ffffff"/>',
    ]
    for it in scene.items:
        if isinstance(it, Rect):
            dash = ' stroke-dasharray="4 3"' if it.dashed else ""
            rect = (
                f'<rect x="{_n(it.x)}" y="{_n(it.y)}" width="{_n(it.w)}" height="{_n(it.h)}" '
                f'rx="{_n(it.radius)}" fill="{it.fill}" stroke="{it.stroke}" '
                f'stroke-width="{_n(it.width)}"{dash}'
            )
            tip = f"<title>{escape(it.tip)}</title>" if it.tip else ""
            out.append(f"{rect}>{tip}</rect>" if tip else f"{rect}/>")
        elif isinstance(it, Text):
            weight = ' font-weight="bold"' if it.bold else ""
            out.append(
                f'<text x="{_n(it.x)}" y="{_n(it.y)}" font-size="{_n(it.size)}" '
                f'fill="{it.color}" text-anchor="{it.anchor}"{weight}>{escape(it.text)}</text>'
            )
        elif isinstance(it, Curve):
            (x0, y0), rest = it.points[0], it.points[1:]
            path = f"M{_n(x0)},{_n(y0)}" + "".join(
                ("C" if i % 3 == 0 else " ") + f"{_n(x)},{_n(y)}" for i, (x, y) in enumerate(rest)
            )
            dash = ' stroke-dasharray="4 3"' if it.dashed else ""
            out.append(
                f'<path d="{path}" fill="none" stroke="{it.color}" '
                f'stroke-width="{_n(it.width)}"{dash}/>'
            )
        elif isinstance(it, Arrow):
            pts = " ".join(f"{_n(x)},{_n(y)}" for x, y in it.points)
            out.append(f'<polygon points="{pts}" fill="{it.color}"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


_CSS = """
body { font-family: DejaVu Sans, Helvetica, Arial, sans-serif; margin: 16px; color: #222; }
main { display: flex; gap: 24px; align-items: flex-start; }
.diagram { flex: 0 0 auto; overflow: auto; max-height: 95vh; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; }
th, td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { color: #c62828; font-weight: bold; }
tr.unchecked td { color: #999; }
.aside { position: sticky; top: 0; max-height: 95vh; overflow: auto; }
.diag { color: #c62828; font-size: 12px; }
.warn { color: #a86b00; }
"""


def to_html(scene: Scene, analysis: Analysis, diags: list[Diagnostic]) -> str:
    """One page that works offline: the diagram inline and the layer table beside it."""
    net = analysis.network
    rows = []
    for node in net.nodes:
        info = analysis.layers.get(node.name)
        state = "unchecked" if info is None else "failed" if info.failed else ""
        shape = "not checked" if info is None else shape_text(info.output_shape)
        params = 0 if info is None else info.params
        macs = 0 if info is None else info.macs
        rows.append(
            f'<tr class="{state}"><td>{escape(node.name)}</td><td>{escape(node.op.op)}</td>'
            f'<td>{escape(shape)}</td><td class="n">{params:,}</td>'
            f'<td class="n">{human(macs)}</td></tr>'
        )
    found = "".join(
        f'<li class="{"diag" if str(d.severity) == "error" else "diag warn"}">'
        f"{escape(str(d.severity))}: {escape(d.message)}"
        + (f"<br><small>hint: {escape(d.hint)}</small>" if d.hint else "")
        + "</li>"
        for d in diags
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{escape(net.name)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{escape(net.name)}</h1>\n"
        f"<p>{analysis.trainable_params:,} trainable parameters · "
        f"{human(analysis.macs)} MACs per sample · {len(net.nodes)} layers</p>\n"
        + (f"<ul>{found}</ul>\n" if found else "")
        + f'<main><div class="diagram">\n{to_svg(scene, standalone=False)}</div>\n'
        '<div class="aside"><table><tr><th>layer</th><th>op</th><th>output shape</th>'
        "<th>params</th><th>MACs</th></tr>\n" + "\n".join(rows) + "\n</table></div></main>\n"
        "</body></html>\n"
    )
