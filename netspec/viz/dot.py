"""A diagram -> Graphviz DOT text: boxes, clusters as `subgraph cluster_*`, shapes on edges.

Writing DOT needs nothing installed; `dot` itself is only run for `--engine dot`.
"""

from __future__ import annotations

from netspec.viz.diagram import Box, Diagram
from netspec.viz.scene import FILL, STROKE, shape_text


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node(b: Box) -> str:
    label = f"{b.title}\n{b.subtitle}"
    if b.status == "failed" and b.messages:
        label += "\n" + b.messages[0]
    style = "rounded,filled" + (",dashed" if b.status == "unchecked" else "")
    extra = ",penwidth=2" if b.status in ("failed", "warning") else ""
    fill = "#ffebee" if b.status == "failed" else FILL.get(b.category, "#ffffff")
    return (
        f"{_q(b.name)} [label={_q(label)},style={_q(style)},fillcolor={_q(fill)},"
        f"color={_q(STROKE[b.status])}{extra}];"
    )


def to_dot(d: Diagram, shapes: bool = True) -> str:
    lines = [
        f"digraph {_q(d.title)} {{",
        "  rankdir=TB;",
        f"  label={_q(d.title + chr(10) + d.summary)}; labelloc=t; fontname=Helvetica;",
        "  node [shape=box,fontname=Helvetica,fontsize=11];",
        '  edge [fontname=Helvetica,fontsize=9,color="#666666"];',
    ]
    placed: set[str] = set()
    children = {
        c.name: [
            k.name for k in d.clusters if k.level == c.level + 1 and set(k.boxes) <= set(c.boxes)
        ]
        for c in d.clusters
    }

    def cluster(name: str, indent: str) -> None:
        c = next(k for k in d.clusters if k.name == name)
        lines.append(f"{indent}subgraph {_q('cluster_' + name)} {{")
        lines.append(f'{indent}  label={_q(name)}; style="rounded,dashed"; color="#99aabb";')
        for child in children[name]:
            cluster(child, indent + "  ")
        for box in c.boxes:
            if box not in placed:
                placed.add(box)
                lines.append(indent + "  " + _node(d.boxes[box]))
        lines.append(indent + "}")

    for c in d.clusters:
        if c.level == 0:
            cluster(c.name, "  ")
    for name, b in d.boxes.items():
        if name not in placed:
            lines.append("  " + _node(b))
    for e in d.edges:
        label = f" [label={_q(shape_text(e.shape))}]" if shapes else ""
        lines.append(f"  {_q(e.src)} -> {_q(e.dst)}{label};")
    for i, e in enumerate(d.outputs):
        out = f"output:{i}"
        lines.append(f"  {_q(out)} [shape=point,width=0.05];")
        label = f" [label={_q(shape_text(e.shape))}]" if shapes else ""
        lines.append(f"  {_q(e.src)} -> {_q(out)}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"
