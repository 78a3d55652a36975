// orion_nb run graph: a flow run's task runs as nodes and the recorded edges between them
// (data passed, wait_for) as arrows, laid out in layers top to bottom by dagre (vendored,
// see vendor/README.md). Used by RunView's "Graph" tab; no build step.
//
// What it draws, from the RunView rows (task runs and subflow runs) and edges
// ([task_run_id, upstream_task_run_id, parameter], already pointing at subflow rows):
//   - a node per task run, coloured by state (the onb-st-* classes of runview.css);
//   - runs of one task in one flow collapse into a single node with a count per state once
//     there are COLLAPSE_AT of them (a map, a loop), which a click expands and collapses
//     again; so a flow of 10,000 task runs lays out a handful of nodes, not 10,000;
//   - a subflow as a box holding its own task runs (a compound node), with a header node
//     where the edges into and out of the subflow attach;
//   - edges between the visible nodes, merged (with a count) when several runs' edges join
//     the same two nodes.
// Beyond NODE_LIMIT visible nodes (many distinct tasks, or a group expanded), groups
// collapse from the smallest threshold up and, failing that, the graph is cut with a note:
// the page never lays out more than NODE_LIMIT nodes. Layout runs only when the structure
// changes (a node or edge appears, a group opens); a state change only recolours.
// Rules: user text goes in through textContent only; test hooks are data-* attributes
// (data-label, data-x, data-y: the node's centre in layout units).

import * as dagre from "./vendor/dagre-3.1.3.esm.js";

export const COLLAPSE_AT = 10; // runs of one task in one flow shown as one node
export const NODE_LIMIT = 1200; // nodes laid out at most (dagre: ~0.5 s for 1,000 here)
const SVGNS = "http://www.w3.org/2000/svg";
const NODE_H = 34;
const GROUP_H = 44;
const HEADER_H = 26;
const CHAR_W = 6.6;
const MAX_W = 220;
const MIN_W = 70;
let uidCounter = 0;

function el(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function shorten(text, width) {
  const max = Math.max(4, Math.floor((width - 16) / CHAR_W));
  const s = String(text ?? "");
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

const plural = (n, w) => `${n.toLocaleString("en-US")} ${w}${n === 1 ? "" : "s"}`;

/**
 * The visible graph (before layout): nodes, clusters and merged edges.
 * ``rows``: objects {id, task, name, state, type, parent, kind}; ``edges``: [down, up, param].
 * ``expanded``: group keys the user opened. Pure: no DOM, exported for tests.
 */
export function buildGraph(rows, edges, expanded = new Set(), limit = NODE_LIMIT) {
  const byId = new Map(rows.map((r) => [r.id, r]));
  const flows = new Set(rows.filter((r) => r.kind === "flow").map((r) => r.id));
  const containerOf = (r) => (r.parent !== null && r.parent !== undefined && flows.has(r.parent) ? r.parent : "");
  const groups = new Map();
  for (const r of rows) {
    const key = `${containerOf(r)}|${r.kind}|${r.task}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { key, container: containerOf(r), kind: r.kind, task: r.task, runs: [] }));
    g.runs.push(r);
  }
  let threshold = COLLAPSE_AT;
  let plan;
  for (;;) {
    plan = planNodes(groups, expanded, threshold, byId, containerOf);
    if (plan.count <= limit || threshold <= 2) break;
    threshold = Math.max(2, Math.floor(threshold / 2));
  }
  const { nodeOf, nodes, clusters } = plan;
  let cut = 0;
  if (nodes.size > limit) {
    const keep = new Set([...nodes.keys()].slice(0, limit));
    for (const id of [...nodes.keys()]) {
      if (!keep.has(id)) {
        nodes.delete(id);
        cut += 1;
      }
    }
  }
  // every row resolves to the visible node that stands for it (itself, its group, the
  // subflow that holds it, or the collapsed group of that subflow)
  const visible = (id) => {
    let cur = id;
    for (let guard = 0; cur && guard < 64; guard++) {
      const n = nodeOf.get(cur);
      if (n && nodes.has(n)) return n;
      const r = byId.get(cur);
      cur = r ? containerOf(r) : "";
    }
    return null;
  };
  const merged = new Map();
  for (const [down, up, param] of edges) {
    const a = visible(up);
    const b = visible(down);
    if (!a || !b || a === b) continue;
    const key = `${a}>${b}`;
    let e = merged.get(key);
    if (!e) merged.set(key, (e = { from: a, to: b, count: 0, params: new Set() }));
    e.count += 1;
    if (param) e.params.add(String(param));
  }
  return { nodes, clusters, edges: [...merged.values()], threshold, cut };
}

function planNodes(groups, expanded, threshold, byId, containerOf) {
  const nodeOf = new Map();
  const nodes = new Map();
  const clusters = new Map();
  const hidden = new Set(); // subflow ids inside a collapsed group: their rows are not drawn
  const isHidden = (r) => {
    let c = containerOf(r);
    for (let guard = 0; c && guard < 64; guard++) {
      if (hidden.has(c)) return true;
      const p = byId.get(c);
      c = p ? containerOf(p) : "";
    }
    return false;
  };
  // groups of subflows first, so their children know whether they are hidden
  const ordered = [...groups.values()].sort((a, b) => (a.kind === b.kind ? 0 : a.kind === "flow" ? -1 : 1));
  for (const g of ordered) {
    const collapse = g.runs.length >= threshold && !expanded.has(g.key);
    if (collapse) {
      const id = `group:${g.key}`;
      for (const r of g.runs) {
        nodeOf.set(r.id, id);
        if (r.kind === "flow") hidden.add(r.id);
      }
      const counts = {};
      const types = {};
      for (const r of g.runs) {
        counts[r.state] = (counts[r.state] || 0) + 1;
        types[r.state] = r.type;
      }
      nodes.set(id, { id, group: g.key, task: g.task, kind: g.kind, label: g.task, container: g.container, runs: g.runs.length, counts, types, rows: g.runs });
    } else {
      for (const r of g.runs) {
        nodeOf.set(r.id, r.id);
        if (r.kind === "flow") {
          clusters.set(r.id, { id: r.id, label: r.name, task: r.task, state: r.state, type: r.type, container: g.container, group: g.runs.length >= threshold ? g.key : null });
          nodes.set(r.id, { id: r.id, header: true, task: r.task, label: r.task, name: r.name, state: r.state, type: r.type, container: r.id, kind: "flow", error: r.error, group: g.runs.length >= threshold ? g.key : null });
        } else {
          nodes.set(r.id, { id: r.id, task: r.task, label: r.name, name: r.name, state: r.state, type: r.type, container: g.container, kind: "task", error: r.error, group: g.runs.length >= threshold ? g.key : null });
        }
      }
    }
  }
  for (const [id, n] of [...nodes]) {
    const probe = n.rows ? n.rows[0] : byId.get(n.header ? n.id : id);
    if (probe && isHidden(probe)) nodes.delete(id);
  }
  for (const [id] of [...clusters]) {
    const r = byId.get(id);
    if (r && isHidden(r)) clusters.delete(id);
  }
  return { nodeOf, nodes, clusters, count: nodes.size };
}

function sizeOf(n) {
  const text = n.runs ? `${n.label} ×${n.runs}` : n.header ? `${n.task} · ${n.name}` : n.label;
  const w = Math.min(MAX_W, Math.max(MIN_W, String(text).length * CHAR_W + 24));
  return { width: n.runs ? Math.max(w, 150) : w, height: n.runs ? GROUP_H : n.header ? HEADER_H : NODE_H };
}

/** Positions for a built graph (dagre, top to bottom); pure apart from dagre. */
export function layout(graph) {
  const g = new dagre.graphlib.Graph({ compound: true, multigraph: false });
  g.setGraph({ rankdir: "TB", nodesep: 18, ranksep: 34, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const c of graph.clusters.values()) g.setNode(`cluster:${c.id}`, { label: c.label, paddingTop: 8 });
  for (const n of graph.nodes.values()) g.setNode(n.id, sizeOf(n));
  for (const c of graph.clusters.values()) {
    if (c.container && graph.clusters.has(c.container)) g.setParent(`cluster:${c.id}`, `cluster:${c.container}`);
  }
  for (const n of graph.nodes.values()) {
    const box = n.header ? n.id : n.container;
    if (box && graph.clusters.has(box)) g.setParent(n.id, `cluster:${box}`);
  }
  for (const e of graph.edges) g.setEdge(e.from, e.to);
  // a subflow's header sits above its runs: an undrawn edge to each run nothing inside leads to
  const fed = new Set(graph.edges.map((e) => e.to));
  for (const n of graph.nodes.values()) {
    if (n.header || !graph.clusters.has(n.container) || fed.has(n.id)) continue;
    if (!g.hasEdge(n.container, n.id)) g.setEdge(n.container, n.id, { minlen: 1, weight: 2 });
  }
  dagre.layout(g);
  const pos = new Map();
  for (const id of g.nodes()) pos.set(id, g.node(id));
  const paths = graph.edges.map((e) => ({ ...e, points: (g.edge(e.from, e.to) || {}).points || [] }));
  const size = g.graph();
  return { pos, paths, width: Math.ceil(size.width || 0), height: Math.ceil(size.height || 0) };
}

function signature(graph) {
  const parts = [];
  for (const n of graph.nodes.values()) parts.push(`${n.id}:${n.container}:${n.runs || 0}`);
  for (const e of graph.edges) parts.push(`${e.from}>${e.to}`);
  for (const c of graph.clusters.values()) parts.push(`c${c.id}:${c.container}`);
  return parts.join("|");
}

/**
 * A graph view inside ``container``. ``update(rows, edges)`` redraws when something changed;
 * ``stateKey(name, type)`` is RunView's state-to-colour-class mapping.
 */
export function createGraphView(container, { stateKey, onSelect } = {}) {
  const uid = `onb-g${++uidCounter}`;
  const expanded = new Set();
  const wrap = document.createElement("div");
  wrap.className = "onb-graph";
  const note = document.createElement("div");
  note.className = "onb-note onb-graph-note";
  note.hidden = true;
  const empty = document.createElement("div");
  empty.className = "onb-empty";
  empty.textContent = "No task runs yet.";
  const scroller = document.createElement("div");
  scroller.className = "onb-graph-scroll";
  wrap.append(note, empty, scroller);
  container.append(wrap);
  let last = { rows: [], edges: [] };
  let sig = null;
  let drawn = null; // {graph, lay, nodeEls}

  function colour(name, type) {
    return `onb-st-${stateKey ? stateKey(name, type) : "unknown"}`;
  }

  function toggle(key) {
    if (expanded.has(key)) expanded.delete(key);
    else expanded.add(key);
    sig = null;
    update(last.rows, last.edges);
  }

  function nodeTitle(n) {
    if (n.runs) {
      const parts = Object.entries(n.counts).map(([s, c]) => `${s} ${c}`);
      return `${n.task}: ${plural(n.runs, "run")} (${parts.join(", ")})\nclick to show each run`;
    }
    const lines = [`${n.name} (${n.task})`, n.state || ""];
    if (n.error) lines.push(String(n.error).split("\n").filter(Boolean).pop() || "");
    if (n.group) lines.push("click to collapse the runs of this task");
    return lines.join("\n");
  }

  function drawNode(n, p) {
    const g = el("g", { class: `onb-gnode${n.runs ? " onb-ggroup" : ""}${n.header ? " onb-gheader" : ""}` });
    const x = p.x - p.width / 2;
    const y = p.y - p.height / 2;
    g.setAttribute("transform", `translate(${x},${y})`);
    g.dataset.id = n.id;
    g.dataset.label = n.runs ? n.task : n.label;
    g.dataset.x = String(Math.round(p.x));
    g.dataset.y = String(Math.round(p.y));
    if (n.runs) {
      g.dataset.runs = String(n.runs);
      g.append(el("rect", { class: "onb-gbox", width: p.width, height: p.height, rx: 6 }));
      g.append(el("text", { class: "onb-glabel", x: 8, y: 15 }, shorten(`${n.task} ×${n.runs.toLocaleString("en-US")}`, p.width)));
      // a stacked bar of the states, then the counts as text
      const bar = el("g", { transform: `translate(8,22)` });
      let bx = 0;
      const bw = p.width - 16;
      const names = Object.keys(n.counts);
      for (const s of names) {
        const w = (bw * n.counts[s]) / n.runs;
        bar.append(el("rect", { class: `onb-gseg ${colour(s, n.types[s])}`, x: bx, y: 0, width: Math.max(w, 1), height: 6 }));
        bx += w;
      }
      g.append(bar);
      const counts = names.map((s) => `${s} ${n.counts[s].toLocaleString("en-US")}`).join(" · ");
      g.append(el("text", { class: "onb-gcounts", x: 8, y: 39 }, shorten(counts, p.width)));
      g.dataset.counts = JSON.stringify(n.counts);
      g.addEventListener("click", () => toggle(n.group));
      g.style.cursor = "pointer";
    } else {
      g.dataset.state = n.state || "";
      g.append(el("rect", { class: `onb-gfill ${colour(n.state, n.type)}`, width: p.width, height: p.height, rx: n.header ? 4 : 6 }));
      g.append(el("text", { class: "onb-glabel onb-on", x: p.width / 2, y: p.height / 2, "text-anchor": "middle", "dominant-baseline": "central" }, shorten(n.header ? `${n.task} · ${n.name}` : n.label, p.width)));
      if (n.group) {
        g.addEventListener("click", () => toggle(n.group));
        g.style.cursor = "pointer";
      } else if (onSelect) {
        g.addEventListener("click", () => onSelect(n));
      }
    }
    g.append(el("title", {}, nodeTitle(n)));
    g.dataset.stamp = n.runs ? JSON.stringify(n.counts) : `${n.state}|${n.error || ""}`;
    return g;
  }

  function draw(graph) {
    const lay = layout(graph);
    const svg = el("svg", { class: "onb-graph-svg", width: lay.width, height: lay.height, viewBox: `0 0 ${lay.width} ${lay.height}` });
    const defs = el("defs");
    const marker = el("marker", { id: `${uid}-arrow`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(el("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "onb-garrow" }));
    defs.append(marker);
    svg.append(defs);
    for (const c of graph.clusters.values()) {
      const p = lay.pos.get(`cluster:${c.id}`);
      if (!p) continue;
      const box = el("g", { class: "onb-gcluster" });
      box.dataset.id = c.id;
      box.dataset.label = c.task;
      box.append(el("rect", { class: `onb-gcluster-box ${colour(c.state, c.type)}`, x: p.x - p.width / 2, y: p.y - p.height / 2, width: p.width, height: p.height, rx: 8 }));
      svg.append(box);
    }
    const edgeLayer = el("g", { class: "onb-gedges" });
    for (const e of lay.paths) {
      if (!e.points.length) continue;
      const d = e.points.map((pt, i) => `${i ? "L" : "M"}${pt.x.toFixed(1)},${pt.y.toFixed(1)}`).join(" ");
      const path = el("path", { class: "onb-gedge", d, "marker-end": `url(#${uid}-arrow)` });
      path.dataset.from = e.from;
      path.dataset.to = e.to;
      const params = [...e.params].join(", ");
      path.append(el("title", {}, `${params || "wait_for"}${e.count > 1 ? ` (${plural(e.count, "edge")})` : ""}`));
      if (e.count > 1) path.setAttribute("stroke-width", String(Math.min(4, 1 + Math.log10(e.count))));
      edgeLayer.append(path);
    }
    svg.append(edgeLayer);
    const nodeEls = new Map();
    for (const n of graph.nodes.values()) {
      const p = lay.pos.get(n.id);
      if (!p) continue;
      const g = drawNode(n, p);
      nodeEls.set(n.id, g);
      svg.append(g);
    }
    while (scroller.firstChild) scroller.removeChild(scroller.firstChild);
    scroller.append(svg);
    wrap.dataset.nodes = String(graph.nodes.size);
    wrap.dataset.edges = String(graph.edges.length);
    return { graph, lay, nodeEls };
  }

  function recolour(graph) {
    // same structure: only states (and group counts) may have changed
    for (const n of graph.nodes.values()) {
      const g = drawn.nodeEls.get(n.id);
      const p = drawn.lay.pos.get(n.id);
      if (!g || !p) continue;
      const stamp = n.runs ? JSON.stringify(n.counts) : `${n.state}|${n.error || ""}`;
      if (g.dataset.stamp === stamp) continue;
      const fresh = drawNode(n, p);
      g.replaceWith(fresh);
      drawn.nodeEls.set(n.id, fresh);
    }
    for (const c of graph.clusters.values()) {
      const box = scroller.querySelector(`g.onb-gcluster[data-id="${CSS.escape(c.id)}"] rect`);
      if (box) box.setAttribute("class", `onb-gcluster-box ${colour(c.state, c.type)}`);
    }
  }

  function update(rows, edges) {
    last = { rows, edges };
    empty.hidden = rows.length > 0;
    scroller.hidden = rows.length === 0;
    if (!rows.length) {
      sig = null;
      return;
    }
    const graph = buildGraph(rows, edges, expanded);
    const notes = [];
    if (graph.threshold < COLLAPSE_AT) notes.push(`Runs of a task are grouped from ${graph.threshold} runs on, to keep the graph readable.`);
    if (graph.cut) notes.push(`${plural(graph.cut, "node")} more are not drawn (the graph shows ${NODE_LIMIT} at most).`);
    note.textContent = notes.join(" ");
    note.hidden = !notes.length;
    const s = signature(graph);
    if (s !== sig || !drawn) {
      sig = s;
      drawn = draw(graph);
    } else {
      drawn.graph = graph;
      recolour(graph);
    }
  }

  return { update, expanded, element: wrap };
}
