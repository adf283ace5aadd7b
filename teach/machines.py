"""State machines drawn from the engine's own transition tables (engine/states.py
`TRANSITIONS`), as inline SVG, with the aggregate's current state lit.

Why from the tables: the picture cannot drift from the code, since it is the code. States are
placed in columns by their longest path from the first state of the table (its initial state),
so every arrow points right.
"""

from __future__ import annotations

import enum
from html import escape

from engine.states import TRANSITIONS

NODE_W = 150
NODE_H = 30
COL_GAP = 50
ROW_GAP = 14
MARGIN = 6
#: How far below the boxes the lane of column-skipping arrows runs.
LANE_GAP = 22


def layers(machine: type[enum.Enum]) -> dict[enum.Enum, int]:
    """Each state's column: the longest path to it from the table's first state."""
    table = TRANSITIONS[machine]
    depth = {state: 0 for state in table}
    for _ in range(len(table)):  # relax: the tables are acyclic, so len(table) rounds suffice
        for source, targets in table.items():
            for target in targets:
                depth[target] = max(depth[target], depth[source] + 1)
    return depth


def svg(machine: type[enum.Enum], current: enum.Enum | None = None, label: str = "") -> str:
    """The machine as an SVG element; `current`'s box has the class `lit`."""
    table = TRANSITIONS[machine]
    depth = layers(machine)
    columns: dict[int, list[enum.Enum]] = {}
    for state in table:
        columns.setdefault(depth[state], []).append(state)
    where: dict[enum.Enum, tuple[int, int]] = {}
    for col, states in columns.items():
        for row, state in enumerate(states):
            where[state] = (
                MARGIN + col * (NODE_W + COL_GAP),
                MARGIN + row * (NODE_H + ROW_GAP),
            )
    width = MARGIN * 2 + len(columns) * NODE_W + (len(columns) - 1) * COL_GAP
    rows_h = MARGIN + max(len(s) for s in columns.values()) * (NODE_H + ROW_GAP) - ROW_GAP
    long_edges = any(depth[t] - depth[s] > 1 for s, ts in table.items() for t in ts)
    # An arrow that skips a column goes around the boxes, through a lane below them.
    lane_y = rows_h + LANE_GAP
    height = (lane_y + LANE_GAP if long_edges else rows_h) + MARGIN
    name = escape(label or machine.__name__)
    parts = [
        f'<svg class="machine" data-machine="{name}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{name} state machine" xmlns="http://www.w3.org/2000/svg">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/>'
        "</marker></defs>",
    ]
    for source, targets in table.items():
        sx, sy = where[source]
        for target in sorted(targets, key=lambda t: t.value):
            tx, ty = where[target]
            x1, y1, x2, y2 = sx + NODE_W, sy + NODE_H // 2, tx, ty + NODE_H // 2
            ends = f'data-from="{escape(str(source.value))}" data-to="{escape(str(target.value))}"'
            if depth[target] - depth[source] > 1:
                shape = (
                    f'<path class="edge" {ends} d="M {x1} {y1} C {x1 + COL_GAP} {lane_y}, '
                    f'{x2 - COL_GAP} {lane_y}, {x2} {y2}" fill="none"'
                )
            else:
                shape = f'<line class="edge" {ends} x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}"'
            parts.append(shape + ' marker-end="url(#arrow)"/>')
    for state, (x, y) in where.items():
        lit = " lit" if state is current else ""
        final = " final" if not table[state] else ""
        value = escape(str(state.value))
        parts.append(
            f'<g class="state{lit}{final}" data-state="{value}">'
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="{x + NODE_W // 2}" y="{y + NODE_H // 2 + 4}" '
            f'text-anchor="middle">{value}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
