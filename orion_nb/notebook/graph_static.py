"""The static picture of a run's graph, for saved notebooks, exports and code hosts.

The widget lays the graph out with dagre in the browser; a saved notebook has no browser
code, so :func:`render_html` draws the same graph once, in Python, as inline SVG plus a plain
table (a code host strips ``<svg>``; the table says the same in words: each node, its runs by
state and what it received data from). It groups nodes as the widget does before layout
(runs of one task in one flow from :data:`COLLAPSE_AT` on become one node with counts), and
shows a subflow as one node standing for everything inside it.

The layering is the first step of every layered (Sugiyama) layout, the one dagre starts
from: a node's layer is the longest path to it from a node with no upstream, so every arrow
points down; within a layer, nodes follow the mean position of their upstream nodes (one
barycentre pass). There is no crossing minimisation beyond that: the static picture is a
summary, the widget is the tool. Text is escaped like every static view
(:mod:`orion_nb.notebook.static`), and at most :data:`MAX_NODES` nodes are drawn.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from orion_nb.notebook.palette import color_of, text_color_of
from orion_nb.notebook.static import _FONT, _LEFT, _MUTED, NONE, _badge, _e, _rows

__all__ = ["COLLAPSE_AT", "MAX_NODES", "layers", "nodes_and_edges", "render_html"]

COLLAPSE_AT = 10
MAX_NODES = 200
NODE_W = 150
NODE_H = 34
GAP_X = 18
GAP_Y = 40


class _Node:
    __slots__ = ("counts", "id", "kind", "label", "members", "state", "type")

    def __init__(self, node_id: str, label: str, kind: str) -> None:
        self.id = node_id
        self.label = label
        self.kind = kind
        self.members = 0
        self.counts: Counter[tuple[str, str]] = Counter()
        self.state = ""
        self.type = ""


def nodes_and_edges(
    snapshot: dict[str, Any],
) -> tuple[dict[str, _Node], dict[tuple[str, str], set[str]]]:
    """The grouped nodes of a RunView snapshot and the edges between them (with parameters)."""
    rows = _rows(snapshot)
    by_id = {r.id: r for r in rows}
    flows = {r.id for r in rows if r.kind == "flow"}

    def top_flow(r: Any) -> str | None:
        """The outermost subflow holding ``r`` (None for a run of the flow itself)."""
        found = None
        cur = r.parent if isinstance(r.parent, str) else None
        for _ in range(64):
            if cur is None or cur not in flows:
                break
            found = cur
            parent = by_id[cur].parent
            cur = parent if isinstance(parent, str) else None
        return found

    sizes: Counter[str] = Counter()
    key_of: dict[str, str] = {}
    for r in rows:
        holder = top_flow(r)
        if holder is not None:
            key_of[r.id] = holder  # inside a subflow: drawn as that subflow
            continue
        key = f"{r.kind}|{r.task}"
        key_of[r.id] = key
        sizes[key] += 1
    nodes: dict[str, _Node] = {}
    for r in rows:
        key = key_of[r.id]
        if key in flows:
            continue
        node_id = key if sizes[key] >= COLLAPSE_AT else r.id
        node = nodes.get(node_id)
        if node is None:
            label = r.task if node_id == key else (r.task if r.kind == "flow" else r.name)
            node = nodes[node_id] = _Node(node_id, label, r.kind)
        node.members += 1
        node.counts[(r.state, r.type)] += 1
        node.state, node.type = r.state, r.type
        if node_id != key:
            key_of[r.id] = node_id
    for r in rows:  # runs inside a subflow resolve to the subflow's node
        holder = key_of.get(r.id)
        if holder in flows:
            key_of[r.id] = key_of.get(holder, holder)
    edges: dict[tuple[str, str], set[str]] = {}
    for down, up, param in snapshot.get("edges") or []:
        a, b = key_of.get(str(up)), key_of.get(str(down))
        if a is None or b is None or a == b or a not in nodes or b not in nodes:
            continue
        edges.setdefault((a, b), set()).add(str(param))
    return nodes, edges


def layers(node_ids: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering; a cycle (which recorded edges cannot form) is broken by order."""
    preds: dict[str, list[str]] = {n: [] for n in node_ids}
    for a, b in edges:
        if a in preds and b in preds:
            preds[b].append(a)
    layer: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(n: str) -> int:
        stack = [(n, iter(preds[n]))]
        visiting.add(n)
        best = {n: 0}
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                visiting.discard(node)
                layer[node] = best[node]
                if stack:
                    parent = stack[-1][0]
                    best[parent] = max(best[parent], layer[node] + 1)
                continue
            if nxt in layer:
                best[node] = max(best[node], layer[nxt] + 1)
            elif nxt not in visiting:
                visiting.add(nxt)
                best[nxt] = 0
                stack.append((nxt, iter(preds[nxt])))
        return layer[n]

    for n in node_ids:
        if n not in layer:
            depth(n)
    return layer


def render_html(snapshot: dict[str, Any]) -> str:
    """The graph of a RunView snapshot as SVG and a table (see the module docstring)."""
    nodes, edges = nodes_and_edges(snapshot)
    run = snapshot.get("run") or {}
    title = f"Graph of flow run {run.get('flow_name', '')}/{run.get('name', '')}"
    out = [f'<div class="orion-nb-graph" style="{_FONT};max-width:980px;margin:2px 0">']
    out.append(f'<p style="margin:0 0 6px"><b>{_e(title, 300)}</b></p>')
    if not nodes:
        out.append(f'<p style="{_MUTED}">No task runs.</p></div>')
        return "\n".join(out)
    ids = list(nodes)[:MAX_NODES]
    kept = set(ids)
    pairs = [(a, b) for a, b in edges if a in kept and b in kept]
    layer = layers(ids, pairs)
    rows_of: dict[int, list[str]] = {}
    for n in ids:
        rows_of.setdefault(layer[n], []).append(n)
    pos: dict[str, tuple[float, float]] = {}
    preds: dict[str, list[str]] = {n: [] for n in ids}
    for a, b in pairs:
        preds[b].append(a)
    width = 0.0
    for depth in sorted(rows_of):
        members = rows_of[depth]
        members.sort(
            key=lambda n: (
                sum(pos[p][0] for p in preds[n] if p in pos)
                / max(1, len([p for p in preds[n] if p in pos]))
                if any(p in pos for p in preds[n])
                else float("inf")
            )
        )
        for i, n in enumerate(members):
            pos[n] = (
                GAP_X + i * (NODE_W + GAP_X) + NODE_W / 2,
                GAP_Y / 2 + depth * (NODE_H + GAP_Y) + NODE_H / 2,
            )
        width = max(width, GAP_X + len(members) * (NODE_W + GAP_X))
    height = GAP_Y / 2 + (max(rows_of) + 1) * (NODE_H + GAP_Y)
    svg = [
        f'<svg width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        'role="img" style="display:block;max-width:100%;height:auto">'
    ]
    for a, b in pairs:
        (x1, y1), (x2, y2) = pos[a], pos[b]
        svg.append(
            f'<line x1="{x1:.0f}" y1="{y1 + NODE_H / 2:.0f}" x2="{x2:.0f}" y2="{y2 - NODE_H / 2:.0f}" '
            'stroke="#8c959f" stroke-width="1.25"/>'
            f'<circle cx="{x2:.0f}" cy="{y2 - NODE_H / 2:.0f}" r="2.5" fill="#8c959f"/>'
        )
    for n in ids:
        node = nodes[n]
        x, y = pos[n]
        grouped = node.members > 1
        fill = "#f6f8fa" if grouped else color_of(node.state, node.type)
        ink = "#1f2328" if grouped else text_color_of(fill)
        label = f"{node.label} \u00d7{node.members:,}" if grouped else node.label
        if node.kind == "flow" and not grouped:
            label = f"{node.label} (subflow)"
        svg.append(
            f'<rect x="{x - NODE_W / 2:.0f}" y="{y - NODE_H / 2:.0f}" width="{NODE_W}" height="{NODE_H}" '
            f'rx="6" fill="{fill}" stroke="#d0d7de"/>'
            f'<text x="{x:.0f}" y="{y + 4:.0f}" text-anchor="middle" font-size="11" fill="{ink}">'
            f"{_e(label, 24)}</text>"
        )
    svg.append("</svg>")
    out.append("".join(svg))
    out.append(
        '<table><thead><tr><th align="left"'
        + _LEFT
        + '>Node</th><th align="right">Runs</th><th align="left"'
        + _LEFT
        + '>States</th><th align="left"'
        + _LEFT
        + ">Upstream (parameters)</th></tr></thead><tbody>"
    )
    upstream: dict[str, list[str]] = {}
    for (a, b), params in edges.items():
        if a in kept and b in kept:
            upstream.setdefault(b, []).append(f"{nodes[a].label} ({', '.join(sorted(params))})")
    for n in ids:
        node = nodes[n]
        badges = " ".join(_badge(s, t, f"{s} {c:,}") for (s, t), c in node.counts.most_common())
        out.append(
            f"<tr><td{_LEFT}>{_e(node.label, 200)}{' (subflow)' if node.kind == 'flow' else ''}</td>"
            f'<td align="right">{node.members:,}</td><td{_LEFT}>{badges}</td>'
            f"<td{_LEFT}>{_e('; '.join(upstream.get(n, [])) or NONE, 1000)}</td></tr>"
        )
    out.append("</tbody></table>")
    if len(nodes) > MAX_NODES:
        out.append(f'<p style="{_MUTED}">{len(nodes) - MAX_NODES:,} more nodes are not drawn.</p>')
    out.append("</div>")
    return "\n".join(out)
