"""The flow page's graph of who may call what, drawn as inline SVG on the server (pure: no
I/O, no script). Callers (identities that are the source of a link) on the left, what they
may call on the right; an arrow per link. Revoked identities (globally or in the flow) are
red and say so; links an operator removed are dashed grey and labelled "unlinked"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .html import e

__all__ = ["Edge", "Node", "flow_graph"]

_W, _H, _GAP, _LEFT, _RIGHT, _TOP = 250, 34, 14, 10, 440, 30


@dataclass(frozen=True)
class Node:
    aztp_id: str
    name: str
    #: "active", "revoked" (everywhere) or "revoked_in_flow"
    status: str


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    relationship: str
    #: False: an operator removed this link (enrollment will not re-create it)
    active: bool = True


def _label(node: Node) -> str:
    text = node.name if len(node.name) <= 28 else node.name[:27] + "…"
    if node.status == "revoked":
        return f"{text} (revoked)"
    if node.status == "revoked_in_flow":
        return f"{text} (revoked in flow)"
    return text


def flow_graph(nodes: Sequence[Node], edges: Sequence[Edge]) -> str:
    """The SVG (a string of markup, every text escaped)."""
    by_id = {n.aztp_id: n for n in nodes}
    edges = [x for x in edges if x.source in by_id and x.target in by_id]
    sources = {x.source for x in edges}
    left = [n for n in nodes if n.aztp_id in sources]
    right = [n for n in nodes if n.aztp_id not in sources]
    pos: dict[str, tuple[int, int]] = {}
    for column, x in ((left, _LEFT), (right, _RIGHT)):
        for i, node in enumerate(column):
            pos[node.aztp_id] = (x, _TOP + i * (_H + _GAP))
    rows = max(len(left), len(right), 1)
    height = _TOP + rows * (_H + _GAP)
    width = _RIGHT + _W + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="img" '
        f'aria-label="links between the flow\'s members" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#555"/></marker></defs>',
        f'<text x="{_LEFT}" y="18" class="col">callers</text>',
        f'<text x="{_RIGHT}" y="18" class="col">called</text>',
    ]
    for edge in edges:
        (x1, y1), (x2, y2) = pos[edge.source], pos[edge.target]
        same_side = x1 == x2
        sx, sy = x1 + _W, y1 + _H // 2
        tx, ty = (x2 + _W if same_side else x2), y2 + _H // 2
        revoked = any(by_id[i].status != "active" for i in (edge.source, edge.target))
        if not edge.active:
            cls, note = "edge removed", "unlinked"
        elif revoked:
            cls, note = "edge dead", "revoked"
        else:
            cls, note = "edge", edge.relationship
        if same_side:
            path = f"M {sx} {sy} C {sx + 60} {sy}, {tx + 60} {ty}, {tx} {ty}"
        else:
            path = f"M {sx} {sy} C {sx + 90} {sy}, {tx - 90} {ty}, {tx} {ty}"
        parts.append(
            f'<path d="{path}" class="{cls}" data-source="{e(edge.source)}" '
            f'data-target="{e(edge.target)}" marker-end="url(#arrow)"><title>'
            f"{e(edge.source)} → {e(edge.target)} ({e(note)})</title></path>"
        )
        mx, my = (sx + tx) // 2, (sy + ty) // 2 - 4
        parts.append(f'<text x="{mx}" y="{my}" class="edge-label {cls}">{e(note)}</text>')
    for node in nodes:
        x, y = pos[node.aztp_id]
        parts.append(
            f'<g class="node {e(node.status)}" data-aztp-id="{e(node.aztp_id)}">'
            f"<title>{e(node.aztp_id)}</title>"
            f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="6"/>'
            f'<text x="{x + 10}" y="{y + 22}">{e(_label(node))}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
