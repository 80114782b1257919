"""A diagram -> drawing primitives in pixels (rectangles, text, Bézier curves, arrowheads).

SVG and matplotlib both draw this one scene, so the PNG and the SVG agree. Text widths are
estimated (no font metrics without a renderer): labels are cut to the box width instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from netspec.viz.diagram import Box, Diagram, Edge

Point = tuple[float, float]
Pos = Callable[[Box], Point]  # a box's top-left corner

TITLE_PX = 12.0
SUB_PX = 10.0
LABEL_PX = 10.0
CHAR_EM = 0.6  # average advance of DejaVu Sans / Helvetica, in font sizes
BOX_H = 38.0
MARGIN = 24.0
GAP = 30.0  # between rows, plus room for the frames of blocks that end or start there
FRAME_TOP = 20.0
FRAME_BOTTOM = 18.0

# Fills by op category (ColorBrewer Pastel1, so text stays readable).
FILL = {
    "io": "#e5e5e5",
    "layer": "#fddbc7",
    "recurrent": "#fddbc7",
    "activation": "#e0f3db",
    "norm": "#e6e0f3",
    "pool": "#d1e5f0",
    "merge": "#fff2ae",
    "shape": "#f2f2f2",
    "block": "#deebf7",
}
STROKE = {"ok": "#555555", "warning": "#d08c00", "failed": "#c62828", "unchecked": "#aaaaaa"}
CLUSTER_FILLS = ("#f7fbff", "#fcfcf0", "#f7f7f7", "#fff7f3")
EDGE = "#666666"
RED = "#c62828"


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    stroke: str
    width: float = 1.0
    dashed: bool = False
    radius: float = 5.0
    tip: str = ""  # a tooltip (SVG <title>)


@dataclass(frozen=True)
class Text:
    x: float
    y: float  # baseline
    text: str
    size: float
    color: str = "#222222"
    bold: bool = False
    anchor: Literal["start", "middle", "end"] = "start"


@dataclass(frozen=True)
class Curve:
    """A path: a start point, then cubic Bézier segments of three points each."""

    points: tuple[Point, ...]
    color: str = EDGE
    width: float = 1.2
    dashed: bool = False


@dataclass(frozen=True)
class Arrow:
    points: tuple[Point, Point, Point]
    color: str = EDGE


Item = Rect | Text | Curve | Arrow


@dataclass
class Scene:
    width: float
    height: float
    items: list[Item] = field(default_factory=list)


def text_width(text: str, size: float) -> float:
    return len(text) * size * CHAR_EM


def fit(text: str, width: float, size: float) -> str:
    """The text, cut with an ellipsis to fit `width` pixels."""
    room = int(width / (size * CHAR_EM))
    return text if len(text) <= room else text[: max(room - 1, 1)] + "…"


def wrap(text: str, chars: int, lines: int) -> list[str]:
    out: list[str] = []
    for word in text.split():
        if out and len(out[-1]) + 1 + len(word) <= chars:
            out[-1] += " " + word
        else:
            out.append(word)
    if len(out) > lines:
        out = [*out[: lines - 1], fit(" ".join(out[lines - 1 :]), chars * LABEL_PX * CHAR_EM, 10)]
    return out


def shape_text(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def render(d: Diagram, shapes: bool = True) -> Scene:
    """Place the diagram's boxes in pixels and turn every part into primitives."""
    levels = max((c.level + 1 for c in d.clusters), default=0)
    longest = max(
        (
            max(text_width(b.title, TITLE_PX), text_width(_subtitle(b, d, shapes), SUB_PX))
            for b in d.boxes.values()
        ),
        default=100.0,
    )
    box_w = min(max(longest + 16, 120.0), 330.0)
    pitch_x = box_w + 44 + 24 * levels
    top = MARGIN + 40 + (FRAME_TOP if d.clusters else 0.0)  # room for the title
    row_y = _row_tops(d, top)

    def pos(b: Box) -> tuple[float, float]:
        return b.col * pitch_x, row_y[b.row]

    pitch_y = BOX_H + GAP
    items: list[Item] = []
    items += _clusters(d, pos, box_w)
    occupied = {(b.col, b.row) for b in d.boxes.values()}
    labelled: set[tuple[str, str]] = set()
    right = {e.src for e in d.edges if d.boxes[e.dst].col > d.boxes[e.src].col}
    for e in d.edges:
        items += _edge(e, d, pos, box_w, occupied, pitch_y, shapes, labelled, e.src in right)
    for e in d.outputs:  # a short stub below each output, labelled with its shape
        x, y = pos(d.boxes[e.src])
        sx, sy = x + box_w / 2, y + BOX_H
        items.append(Curve(((sx, sy), (sx, sy + 6), (sx, sy + 14), (sx, sy + 20))))
        items.append(_arrowhead((sx, sy + 10), (sx, sy + 24)))
        if shapes and (e.src, e.tensor) not in labelled:
            items.append(Text(sx + 6, sy + 14, shape_text(e.shape), LABEL_PX, EDGE))
    for b in d.boxes.values():
        items += _box(b, d, pos, box_w, shapes)
    # Shift everything right of the skip arcs, which bulge left of column 0.
    xs = [x for it in items for x in _xs(it)]
    ys = [y for it in items for y in _ys(it)]
    dx = MARGIN - min(xs, default=0.0)
    width = max(max(xs, default=0.0) + dx + MARGIN, 360.0)
    height = max(ys, default=0.0) + MARGIN
    moved = [_shift(it, dx) for it in items]
    head: list[Item] = [
        Text(MARGIN, MARGIN + 14, d.title, 16.0, bold=True),
        Text(MARGIN, MARGIN + 32, d.summary, 11.0, RED if "error" in d.summary else "#555555"),
    ]
    notes: list[Item] = [
        Text(MARGIN, height + 14 * (i + 1), fit(n, width - 2 * MARGIN, 11.0), 11.0, RED)
        for i, n in enumerate(d.notes)
    ]
    return Scene(width, height + 14 * len(notes) + (8 if notes else 0), head + moved + notes)


def _row_tops(d: Diagram, top: float) -> list[float]:
    """Each row's y: the gap below a row grows by the frames ending above it and starting
    below it, so nested blocks never overlap."""
    rows = max((b.row for b in d.boxes.values()), default=0) + 1
    ends = [0] * rows
    starts = [0] * rows
    for c in d.clusters:
        inside = [d.boxes[n].row for n in c.boxes]
        starts[min(inside)] += 1
        ends[max(inside)] += 1
    ys = [top]
    for r in range(1, rows):
        gap = GAP + FRAME_BOTTOM * ends[r - 1] + FRAME_TOP * starts[r]
        ys.append(ys[-1] + BOX_H + gap)
    return ys


def _subtitle(b: Box, d: Diagram, shapes: bool) -> str:
    if shapes or b.category == "block":
        return b.subtitle
    out = [e for e in (*d.edges, *d.outputs) if e.src == b.name]
    return b.subtitle + (f" → {shape_text(out[0].shape)}" if out else "")


def _clusters(d: Diagram, pos: Pos, box_w: float) -> list[Item]:
    """Expanded blocks as rounded frames; deeper frames sit inside their parents."""
    frames: dict[str, tuple[float, float, float, float]] = {}
    for c in sorted(d.clusters, key=lambda c: -c.level):
        x0 = y0 = float("inf")
        x1 = y1 = float("-inf")
        for name in c.boxes:
            x, y = pos(d.boxes[name])
            x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x + box_w), max(y1, y + BOX_H)
        for inner in d.clusters:
            if inner.level > c.level and set(inner.boxes) <= set(c.boxes):
                ix0, iy0, ix1, iy1 = frames[inner.name]
                x0, y0, x1, y1 = min(x0, ix0), min(y0, iy0), max(x1, ix1), max(y1, iy1)
        frames[c.name] = (x0 - 10, y0 - FRAME_TOP, x1 + 10, y1 + FRAME_BOTTOM)
    items: list[Item] = []
    for c in d.clusters:
        x0, y0, x1, y1 = frames[c.name]
        fill = CLUSTER_FILLS[c.level % len(CLUSTER_FILLS)]
        items.append(Rect(x0, y0, x1 - x0, y1 - y0, fill, "#9ab", 1.0, True, 8.0, c.name))
        items.append(Text(x0 + 6, y0 + 13, fit(c.name, x1 - x0 - 12, 10.0), 10.0, "#456", True))
    return items


def _edge(
    e: Edge,
    d: Diagram,
    pos: Pos,
    box_w: float,
    occupied: set[tuple[int, int]],
    pitch_y: float,
    shapes: bool,
    labelled: set[tuple[str, str]],
    fans_right: bool,
) -> list[Item]:
    a, b = d.boxes[e.src], d.boxes[e.dst]
    (ax, ay), (bx, by) = pos(a), pos(b)
    spread = box_w / 2 - 14
    start = (ax + box_w / 2 + max(-spread, min(spread, 14.0 * (b.col - a.col))), ay + BOX_H)
    end = (bx + box_w / 2 + max(-spread, min(spread, 14.0 * (a.col - b.col))), by)
    blocked = a.col == b.col and any((a.col, r) in occupied for r in range(a.row + 1, b.row))
    items: list[Item] = []
    anchor: Literal["start", "end"] = "start"
    if blocked:  # a skip connection: bulge left of the column instead of crossing boxes
        out = 26.0 + 6.0 * min(b.row - a.row, 6)
        start = (ax + 10, ay + BOX_H / 2)
        end = (bx + 10, by + BOX_H / 2 - 4)
        c1 = (ax - out, ay + BOX_H / 2 + pitch_y * 0.4)
        c2 = (bx - out, by - pitch_y * 0.4)
        items.append(Curve((start, c1, c2, end)))
        items.append(_arrowhead(c2, end))
        label_at = (ax - out * 0.75 - 4, ay + BOX_H + pitch_y * 0.3)
        anchor = "end"
    else:
        tip = (end[0], end[1] - 1)
        between = range(a.row + 1, b.row)
        points: tuple[Point, ...]
        down_first = not any((a.col, r) in occupied for r in between)
        across_first = not any((b.col, r) in occupied for r in between)
        if fans_right and across_first:  # a fan-out: across below the source, then down
            down_first = False
        if a.col != b.col and down_first:
            # Down the source's own column, then across in the gap above the target, so a
            # long edge from a side branch does not cut through the branches beside it.
            turn = (start[0], end[1] - GAP * 0.9)
            points = (start, start, turn, turn, *_s_curve(turn, tip))
        elif a.col != b.col and across_first:
            turn = (end[0], start[1] + GAP * 0.9)
            points = (start, *_s_curve(start, turn), turn, tip, tip)
        else:
            points = (start, *_s_curve(start, tip))
        items.append(Curve(points))
        items.append(_arrowhead((end[0], end[1] - 10), tip))
        stem = ax + box_w / 2
        if fans_right:  # the edges leave to the right: label on the left of the stem
            label_at, anchor = (stem - 5, start[1] + 13), "end"
        else:
            label_at = (stem + 5, start[1] + 13)
    if shapes and (e.src, e.tensor) not in labelled:
        labelled.add((e.src, e.tensor))
        items.append(Text(*label_at, shape_text(e.shape), LABEL_PX, EDGE, anchor=anchor))
    return items


def _s_curve(p: Point, q: Point) -> tuple[Point, Point, Point]:
    bend = min((q[1] - p[1]) / 2, 40.0)
    return (p[0], p[1] + bend), (q[0], q[1] - bend), q


def _arrowhead(before: Point, tip: Point) -> Arrow:
    (x0, y0), (x1, y1) = before, tip
    length = max(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5, 1e-9)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    back = (x1 - 7 * ux, y1 - 7 * uy)
    return Arrow(
        (tip, (back[0] - 3.5 * uy, back[1] + 3.5 * ux), (back[0] + 3.5 * uy, back[1] - 3.5 * ux))
    )


def _box(b: Box, d: Diagram, pos: Pos, box_w: float, shapes: bool) -> list[Item]:
    x, y = pos(b)
    fill = "#ffebee" if b.status == "failed" else FILL.get(b.category, "#ffffff")
    stroke = STROKE[b.status]
    width = 2.0 if b.status in ("failed", "warning") else 1.0
    tip = "\n".join([b.name, *b.messages])
    items: list[Item] = []
    if b.category == "block":  # a collapsed block: a stack of cards
        items.append(Rect(x + 4, y + 4, box_w, BOX_H, fill, stroke, width, tip=tip))
    items.append(
        Rect(x, y, box_w, BOX_H, fill, stroke, width, dashed=b.status == "unchecked", tip=tip)
    )
    color = "#999999" if b.status == "unchecked" else "#222222"
    cx = x + box_w / 2
    items.append(
        Text(cx, y + 16, fit(b.title, box_w - 10, TITLE_PX), TITLE_PX, color, True, "middle")
    )
    sub = fit(_subtitle(b, d, shapes), box_w - 10, SUB_PX)
    items.append(Text(cx, y + 31, sub, SUB_PX, "#666666", anchor="middle"))
    ty = y + BOX_H + 14
    for message in b.messages[:2]:
        for line in wrap(message, 56, 4):
            items.append(Text(x + box_w + 12, ty - BOX_H, line, 11.0, STROKE[b.status]))
            ty += 14
    return items


def _xs(it: Item) -> list[float]:
    if isinstance(it, Rect):
        return [it.x, it.x + it.w]
    if isinstance(it, Text):
        w = text_width(it.text, it.size)
        left = {"start": it.x, "middle": it.x - w / 2, "end": it.x - w}[it.anchor]
        return [left, left + w]
    return [p[0] for p in it.points]


def _ys(it: Item) -> list[float]:
    if isinstance(it, Rect):
        return [it.y, it.y + it.h]
    if isinstance(it, Text):
        return [it.y - it.size, it.y + 3]
    return [p[1] for p in it.points]


def _shift(it: Item, dx: float) -> Item:
    if isinstance(it, Rect | Text):
        return replace(it, x=it.x + dx)
    if isinstance(it, Curve):
        return replace(it, points=tuple((x + dx, y) for x, y in it.points))
    p0, p1, p2 = ((x + dx, y) for x, y in it.points)
    return Arrow((p0, p1, p2), it.color)
