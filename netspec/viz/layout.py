"""Where a diagram's boxes go: a grid by topological generation, in plain Python.

Rows are topological generations (a box sits one row below its deepest input); a box takes its
first input's column when that cell is free, so a chain stays one straight column and side
branches move right. Ties are broken by source order, so a diagram reads top-down as the spec.
"""

from __future__ import annotations

import heapq

from netspec.ir import Network

Edge = tuple[str, str, str]  # (source box, target box, tensor)


def layout(net: Network, unit_of: dict[str, str]) -> tuple[dict[str, tuple[int, int]], list[Edge]]:
    """A grid placement of a diagram's boxes: `unit_of` maps each node to the box drawing it
    (itself, or a collapsed block holding it). Returns each box's (row, column) and the edges
    between boxes."""
    units = list(dict.fromkeys(unit_of[n.name] for n in net.nodes))
    edges: list[Edge] = []
    seen: set[Edge] = set()
    for node in net.nodes:
        dst = unit_of[node.name]
        for src in node.inputs:
            if src not in unit_of:
                continue  # an undefined tensor: reported by the analysis, not drawn
            edge = (unit_of[src], dst, src)
            if edge[0] != dst and edge not in seen:
                seen.add(edge)
                edges.append(edge)
    order = _topological(units, edges)
    if order is None:  # a cyclic spec: one box per row, source order
        return {u: (i, 0) for i, u in enumerate(units)}, edges
    row: dict[str, int] = {}
    first_in: dict[str, str] = {}
    for src, dst, _ in edges:
        first_in.setdefault(dst, src)
    preds: dict[str, list[str]] = {u: [] for u in units}
    for src, dst, _ in edges:
        preds[dst].append(src)
    for unit in order:  # the generation: one below the deepest input
        row[unit] = 1 + max((row[p] for p in preds[unit]), default=-1)
    taken: set[tuple[int, int]] = set()
    place: dict[str, tuple[int, int]] = {}
    for unit in order:
        r = row[unit]
        col = place[first_in[unit]][1] if unit in first_in else 0
        while (r, col) in taken:
            col += 1
        taken.add((r, col))
        place[unit] = (r, col)
    return place, edges


def _topological(units: list[str], edges: list[Edge]) -> list[str] | None:
    """Kahn's algorithm, the earliest box in source order first; None when there is a cycle."""
    index = {u: i for i, u in enumerate(units)}
    succ: dict[str, set[str]] = {u: set() for u in units}
    indegree = dict.fromkeys(units, 0)
    for src, dst, _ in edges:
        if dst not in succ[src]:
            succ[src].add(dst)
            indegree[dst] += 1
    ready = [(index[u], u) for u in units if indegree[u] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, unit = heapq.heappop(ready)
        order.append(unit)
        for nxt in succ[unit]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(ready, (index[nxt], nxt))
    return order if len(order) == len(units) else None
