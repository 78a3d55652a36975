// orion_nb RunView: the live state of a flow run (anywidget ES module, no build step).
//
// Reads the traits of orion_nb/notebook/widget.py (run, task_columns, tasks, transitions,
// logs, counts, now, total; times in epoch milliseconds) and draws
//   - a header: flow and run name, state badge, elapsed clock, task-run total, a badge per state;
//   - an overview: task runs grouped by task name (counts, progress bar), each group expanding
//     into a virtualised list of its runs, and a timeline (SVG up to SVG_LIMIT runs, one bar
//     segment per attempt, subflows with their tasks nested; a canvas density view above);
//   - the transition log (each decision with its rule and reason) and the logs.
//
// Rules this file keeps:
//   - user text (names, messages, logs, errors) only ever goes in through textContent or an
//     SVG <title>'s textContent; there is no innerHTML and no markup built from strings, so a
//     task named "<img src=x onerror=...>" is only text;
//   - a change event only marks parts of the view dirty; one requestAnimationFrame redraws what
//     changed and is visible, so a burst of updates costs one frame (el.dataset.renders counts
//     frames, for tests);
//   - the clock ticks once a second only while the run is unfinished, and render() returns a
//     cleanup that stops it, the observers and every model listener when the view goes away;
//   - a live run's updates arrive as custom messages, not trait syncs: initialize() (once per
//     model, before anywidget hands the model any message) applies each "diff" (rows replaced
//     by id or appended, transitions and logs appended) or "snapshot" to the model's own traits
//     with model.set, so views redraw from change events exactly as for a synced trait. A model
//     that sees a diff it cannot apply (it missed one) asks the kernel for a snapshot;
//   - the Graph tab (graph.js, laid out by dagre) draws the same rows with the recorded edges
//     ([task_run_id, upstream_task_run_id, parameter], appended by diffs like transitions);
//     it is laid out only while visible, and again only when its structure changed.

import { createGraphView } from "./graph.js";

const SVG_LIMIT = 2000; // timeline runs drawn as SVG; above, a canvas
const CAP = 500; // transitions / log records kept on screen
const TERMINAL = new Set(["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]);
const COLUMNS = [
  "id", "task_name", "name", "state_type", "state_name", "start", "end", "attempts", "parent",
  "depth", "error", "kind", "worker",
];
// badges read active first, then finished; progress bars fill finished first
const STATE_ORDER = [
  "Running", "Retrying", "Pending", "Scheduled", "Late", "AwaitingRetry", "Paused",
  "Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled",
];
const PROGRESS_ORDER = [
  "Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled",
  "Running", "Retrying", "AwaitingRetry", "Paused", "Late", "Pending", "Scheduled",
];
const NAME_KEYS = Object.fromEntries(STATE_ORDER.map((n) => [n, n.toLowerCase()]));
const TYPE_KEYS = {
  SCHEDULED: "scheduled", PENDING: "pending", RUNNING: "running", COMPLETED: "completed",
  FAILED: "failed", CRASHED: "crashed", CANCELLED: "cancelled", PAUSED: "paused",
};
const PALETTE_KEYS = [...new Set([...Object.values(NAME_KEYS), ...Object.values(TYPE_KEYS), "unknown"])];

// geometry (px)
const VROW_H = 26; // a run in an expanded group
const ERR_LINE_H = 15; // a line of error text under a failed run
const ERR_MAX_LINES = 8;
const VLIST_MAX_H = 200;
const VBUFFER = 6; // rows rendered above and below the visible ones
const TL_ROW_H = 18;
const TL_BAR_H = 12;
const TL_INDENT = 14;
const AXIS_H = 22;
const NICE_STEPS = [
  1, 2, 5, 10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000,
  120000, 300000, 600000, 900000, 1800000, 3600000, 7200000, 10800000, 21600000, 43200000,
  86400000,
];

const SVGNS = "http://www.w3.org/2000/svg";
let instances = 0;

// --- helpers ---------------------------------------------------------------------------------

export function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

export function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

export function stateKey(name, type) {
  return NAME_KEYS[name] || TYPE_KEYS[type] || "unknown";
}

function rank(order, name) {
  const i = order.indexOf(name);
  return i < 0 ? order.length : i;
}

function sortStates(names, order) {
  return names.sort((a, b) => rank(order, a) - rank(order, b) || (a < b ? -1 : a > b ? 1 : 0));
}

function badge(name, type, text) {
  const b = h("span", `onb-badge onb-st-${stateKey(name, type)}`, text === undefined ? name : text);
  b.dataset.state = name || "";
  return b;
}

function setBadge(b, name, type) {
  b.className = `onb-badge onb-run-state onb-st-${stateKey(name, type)}`;
  b.dataset.state = name || "";
  b.textContent = name || "";
}

const isNum = (v) => typeof v === "number" && Number.isFinite(v);

/** "350 ms", "1.2 s", "2 min 3 s", "1 h 4 min"; "–" when unknown. */
export function formatDuration(ms) {
  if (!isNum(ms)) return "–";
  ms = Math.max(0, ms);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 59950) return `${(ms / 1000).toFixed(1)} s`;
  const secs = Math.round(ms / 1000);
  const m = Math.floor(secs / 60);
  if (m < 60) return `${m} min ${secs % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function formatClock(ts) {
  if (!isNum(ts)) return "";
  const d = new Date(ts);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function formatTick(v, step) {
  if (v === 0) return "0";
  if (v < 1000 && step < 1000) return `${Math.round(v)} ms`;
  if (v < 60000 || step < 1000) {
    const decimals = step >= 1000 ? 0 : step >= 100 ? 1 : 2;
    return `${(v / 1000).toFixed(decimals)} s`;
  }
  if (v < 3600000) {
    const m = Math.floor(v / 60000);
    const s = Math.round((v % 60000) / 1000);
    return s ? `${m}:${String(s).padStart(2, "0")} min` : `${m} min`;
  }
  const hh = Math.floor(v / 3600000);
  const mm = Math.round((v % 3600000) / 60000);
  return mm ? `${hh} h ${mm} min` : `${hh} h`;
}

function niceStep(span, target) {
  const raw = span / target;
  for (const s of NICE_STEPS) if (s >= raw) return s;
  return Math.ceil(raw / 86400000) * 86400000;
}

function plural(n, word) {
  return `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`;
}

function rowsOf(model) {
  const cols = model.get("task_columns");
  const names = Array.isArray(cols) && cols.length ? cols : COLUMNS;
  const ix = {};
  names.forEach((c, i) => (ix[c] = i));
  const tasks = model.get("tasks") || [];
  const out = new Array(tasks.length);
  for (let i = 0; i < tasks.length; i++) {
    const r = tasks[i];
    out[i] = {
      index: i,
      id: r[ix.id],
      task: r[ix.task_name] ?? "",
      name: r[ix.name] ?? "",
      type: r[ix.state_type],
      state: r[ix.state_name],
      start: r[ix.start],
      end: r[ix.end],
      attempts: Array.isArray(r[ix.attempts]) ? r[ix.attempts] : [],
      parent: r[ix.parent] ?? null,
      depth: r[ix.depth] || 0,
      error: r[ix.error] ?? null,
      kind: r[ix.kind] === "flow" ? "flow" : "task",
      worker: ix.worker === undefined ? null : r[ix.worker] ?? null,
    };
  }
  return out;
}

function failedWithError(r) {
  return !!r.error && r.type !== "COMPLETED";
}

/** The bar segments of a run: one per attempt ([start, end|null, stateKey]). */
function segmentsOf(r) {
  const finished = TERMINAL.has(r.type);
  if (!r.attempts.length) {
    return isNum(r.start) ? [[r.start, r.end ?? null, stateKey(r.state, r.type)]] : [];
  }
  return r.attempts.map((a, j) => {
    const last = j === r.attempts.length - 1;
    const open = a[1] === null || a[1] === undefined;
    // the last attempt of a finished (or still running) run carries the run's own state name,
    // so Cached, TimedOut and Crashed keep their colours; earlier attempts show how they ended
    const key = last && (finished || open) ? stateKey(r.state, r.type) : stateKey(null, a[2]);
    return [a[0], open ? null : a[1], key];
  });
}

// --- live updates: diffs and snapshots --------------------------------------------------------

const TRAITS = ["run", "task_columns", "tasks", "transitions", "logs", "counts", "now", "total", "edges"];

function appendCapped(list, more) {
  const next = (Array.isArray(list) ? list : []).concat(more);
  return next.length > CAP ? next.slice(-CAP) : next;
}

/** The tasks trait with ``rows`` merged in: a row replaces the one with its id, or is appended. */
function mergeRows(model, rows, sync) {
  const current = model.get("tasks") || [];
  const cols = model.get("task_columns");
  const idAt = Math.max(0, (Array.isArray(cols) && cols.length ? cols : COLUMNS).indexOf("id"));
  if (sync.indexed !== current) {
    sync.index = new Map();
    current.forEach((r, i) => sync.index.set(r[idAt], i));
  }
  const next = current.slice();
  for (const r of rows) {
    if (!Array.isArray(r)) continue;
    const i = sync.index.get(r[idAt]);
    if (i === undefined) {
      sync.index.set(r[idAt], next.length);
      next.push(r);
    } else next[i] = r;
  }
  sync.indexed = next;
  return next;
}

/**
 * Applies one message from the kernel to the model's traits; returns what it did
 * ("snapshot", "diff", "attach" when it asked for a snapshot, or "ignored").
 * ``sync`` ({seq}) is the model's position in the kernel's numbered stream of updates.
 */
export function applyMessage(model, msg, sync) {
  if (!msg || typeof msg !== "object") return "ignored";
  if (msg.kind === "snapshot") {
    for (const key of TRAITS) if (key in msg) model.set(key, msg[key]);
    sync.seq = msg.seq;
    sync.asked = false;
    sync.indexed = null;
    return "snapshot";
  }
  if (msg.kind !== "diff") return "ignored";
  if (msg.base !== sync.seq) {
    if (sync.asked) return "ignored";
    sync.asked = true;
    model.send({ kind: "attach", seq: sync.seq });
    return "attach";
  }
  sync.seq = msg.seq;
  if (msg.run && typeof msg.run === "object") model.set("run", msg.run);
  if (Array.isArray(msg.tasks) && msg.tasks.length) model.set("tasks", mergeRows(model, msg.tasks, sync));
  if (Array.isArray(msg.transitions) && msg.transitions.length) {
    model.set("transitions", appendCapped(model.get("transitions"), msg.transitions));
  }
  if (Array.isArray(msg.logs) && msg.logs.length) model.set("logs", appendCapped(model.get("logs"), msg.logs));
  if (Array.isArray(msg.edges) && msg.edges.length) model.set("edges", (model.get("edges") || []).concat(msg.edges));
  if (msg.counts && typeof msg.counts === "object") model.set("counts", msg.counts);
  if (isNum(msg.total)) model.set("total", msg.total);
  if (isNum(msg.now)) model.set("now", msg.now);
  return "diff";
}

function initialize({ model }) {
  const sync = { seq: 0, asked: false, index: null, indexed: null };
  const onMessage = (msg) => applyMessage(model, msg, sync);
  model.on("msg:custom", onMessage);
  return () => model.off("msg:custom", onMessage);
}

// --- the view --------------------------------------------------------------------------------

function render({ model, el }) {
  const uid = `onb-${++instances}`;
  const root = h("div", "onb-runview");
  el.appendChild(root);

  let renders = 0;
  el.dataset.renders = "0";
  let frame = null;
  const dirty = new Set(["header", "overview", "transitions", "logs", "graph"]);
  let rowsCache = null;
  let kernelNow = model.get("now") || 0;
  let kernelNowAt = performance.now();
  let clock = null;
  let current = "overview";
  const expanded = new Set(); // group keys
  const collapsedFlows = new Set(); // subflow run ids folded in the timeline

  // --- skeleton -------------------------------------------------------------------------------
  const header = h("div", "onb-header");
  const title = h("div", "onb-title");
  const flowName = h("span", "onb-flow-name");
  const sep = h("span", "onb-sep", "›");
  sep.setAttribute("aria-hidden", "true");
  const runName = h("span", "onb-run-name");
  title.append(flowName, sep, runName);
  const stateBadge = h("span", "onb-badge onb-run-state");
  const meta = h("div", "onb-meta");
  const elapsed = h("span", "onb-elapsed");
  elapsed.title = "Elapsed";
  const total = h("span", "onb-total");
  meta.append(elapsed, h("span", "onb-dot", "·"), total);
  header.append(title, stateBadge, meta);
  const message = h("div", "onb-message");
  const counts = h("div", "onb-counts");

  const tabs = h("div", "onb-tabs");
  tabs.setAttribute("role", "tablist");
  const panels = {};
  const tabButtons = {};
  const tabCounts = {};
  for (const [key, label] of [["overview", "Overview"], ["graph", "Graph"], ["transitions", "Transitions"], ["logs", "Logs"]]) {
    const b = h("button", "onb-tab");
    b.type = "button";
    b.dataset.tab = key;
    b.setAttribute("role", "tab");
    b.id = `${uid}-tab-${key}`;
    b.append(h("span", null, label));
    tabCounts[key] = h("span", "onb-tab-count");
    b.append(tabCounts[key]);
    b.addEventListener("click", () => select(key));
    tabs.append(b);
    tabButtons[key] = b;
    const p = h("div", `onb-panel onb-panel-${key}`);
    p.setAttribute("role", "tabpanel");
    p.setAttribute("aria-labelledby", b.id);
    panels[key] = p;
  }
  const body = h("div", "onb-body");
  body.append(panels.overview, panels.graph, panels.transitions, panels.logs);

  // overview: the group table, then the timeline
  const groupsTable = h("table", "onb-groups");
  const colgroup = h("colgroup");
  for (const cls of ["onb-col-name", "onb-col-runs", "onb-col-progress", "onb-col-states", "onb-col-mean"]) {
    colgroup.append(h("col", cls));
  }
  const thead = h("thead");
  const headRow = h("tr");
  for (const [text, cls] of [["Task", ""], ["Runs", "onb-num"], ["Progress", ""], ["States", ""], ["Mean", "onb-num"]]) {
    headRow.append(h("th", cls, text));
  }
  thead.append(headRow);
  const tbody = h("tbody");
  groupsTable.append(colgroup, thead, tbody);
  const groupsEmpty = h("div", "onb-empty", "No task runs yet.");
  const timelineTitle = h("div", "onb-section-title", "Timeline");
  // issue 9: runs on process or Dask workers can be drawn as one lane per worker
  let byWorker = false;
  const laneToggle = h("button", "onb-lane-toggle", "Group by worker");
  laneToggle.type = "button";
  laneToggle.hidden = true;
  laneToggle.setAttribute("aria-pressed", "false");
  laneToggle.addEventListener("click", () => {
    byWorker = !byWorker;
    laneToggle.setAttribute("aria-pressed", String(byWorker));
    dirty.add("overview");
    schedule();
  });
  timelineTitle.append(laneToggle);
  const timeline = h("div", "onb-timeline");
  timeline.dataset.runs = "0";
  panels.overview.append(groupsTable, groupsEmpty, timelineTitle, timeline);

  const transitionsList = h("div", "onb-list onb-transitions");
  const transitionsEmpty = h("div", "onb-empty", "No state transitions yet.");
  panels.transitions.append(transitionsList, transitionsEmpty);
  const logsList = h("div", "onb-list onb-logs");
  const logsEmpty = h("div", "onb-empty", "No log records yet.");
  panels.logs.append(logsList, logsEmpty);

  root.append(header, message, counts, tabs, body);

  function select(key) {
    current = key;
    for (const k of Object.keys(panels)) {
      panels[k].hidden = k !== key;
      tabButtons[k].classList.toggle("onb-active", k === key);
      tabButtons[k].setAttribute("aria-selected", String(k === key));
    }
    schedule();
  }
  const graphView = createGraphView(panels.graph, { stateKey });
  const firstTab = model.get("tab");
  select(firstTab && panels[firstTab] ? firstTab : "overview");

  // --- scheduling -----------------------------------------------------------------------------
  function schedule() {
    if (frame === null) frame = requestAnimationFrame(draw);
  }

  const PARTS = {
    run: ["header", "overview"],
    now: ["header", "overview"],
    counts: ["header"],
    total: ["header"],
    tasks: ["overview", "rows", "graph"],
    task_columns: ["overview", "rows", "graph"],
    edges: ["graph"],
    transitions: ["transitions"],
    logs: ["logs"],
  };
  const listeners = Object.entries(PARTS).map(([name, parts]) => {
    const fn = () => {
      if (name === "now") {
        kernelNow = model.get("now") || 0;
        kernelNowAt = performance.now();
      }
      for (const p of parts) dirty.add(p);
      schedule();
    };
    model.on(`change:${name}`, fn);
    return [`change:${name}`, fn];
  });

  function rows() {
    if (rowsCache === null || dirty.has("rows")) {
      rowsCache = rowsOf(model);
      dirty.delete("rows");
    }
    return rowsCache;
  }

  function snapshotNow() {
    return kernelNow || Date.now();
  }

  function draw() {
    frame = null;
    renders += 1;
    el.dataset.renders = String(renders);
    if (dirty.has("header")) {
      dirty.delete("header");
      drawHeader();
    }
    const nT = (model.get("transitions") || []).length;
    const nL = (model.get("logs") || []).length;
    tabCounts.transitions.textContent = nT ? String(Math.min(nT, CAP)) : "";
    tabCounts.logs.textContent = nL ? String(Math.min(nL, CAP)) : "";
    tabCounts.overview.textContent = "";
    if (current === "overview" && dirty.has("overview")) {
      dirty.delete("overview");
      drawGroups();
      drawTimeline();
    } else if (current === "transitions" && dirty.has("transitions")) {
      dirty.delete("transitions");
      stick(panels.transitions, () => transitionsFeed(model.get("transitions") || []));
    } else if (current === "logs" && dirty.has("logs")) {
      dirty.delete("logs");
      stick(panels.logs, () => logsFeed(model.get("logs") || []));
    } else if (current === "graph" && dirty.has("graph")) {
      dirty.delete("graph");
      graphView.update(rows(), model.get("edges") || []);
    }
    tabCounts.graph.textContent = "";
  }

  // --- header ---------------------------------------------------------------------------------
  function runElapsed() {
    const run = model.get("run") || {};
    if (!isNum(run.start)) return null;
    if (isNum(run.end)) return run.end - run.start;
    const live = !TERMINAL.has(run.state_type);
    const now = snapshotNow() + (live ? performance.now() - kernelNowAt : 0);
    return now - run.start;
  }

  function syncClock() {
    const run = model.get("run") || {};
    const live = isNum(run.start) && !isNum(run.end) && !TERMINAL.has(run.state_type);
    if (live && clock === null) {
      clock = setInterval(() => (elapsed.textContent = formatDuration(runElapsed())), 1000);
    } else if (!live && clock !== null) {
      clearInterval(clock);
      clock = null;
    }
    el.dataset.clock = clock === null ? "stopped" : "ticking";
  }

  function drawHeader() {
    const run = model.get("run") || {};
    flowName.textContent = run.flow_name || "";
    runName.textContent = run.name || "";
    sep.hidden = !(run.flow_name && run.name);
    setBadge(stateBadge, run.state_name || "Pending", run.state_type || "PENDING");
    elapsed.textContent = formatDuration(runElapsed());
    const n = model.get("total") || 0;
    total.textContent = plural(n, "task run");
    const msg = run.message && run.state_type !== "COMPLETED" ? String(run.message) : "";
    message.textContent = msg;
    message.hidden = !msg;
    message.className = `onb-message onb-st-${stateKey(run.state_name, run.state_type)}`;
    clear(counts);
    const c = model.get("counts") || {};
    for (const name of sortStates(Object.keys(c), STATE_ORDER)) {
      if (!c[name]) continue;
      const b = badge(name, null, `${name} ${c[name]}`);
      b.classList.add("onb-count");
      counts.append(b);
    }
    counts.hidden = !counts.firstChild;
    root.dataset.state = run.state_name || "";
    syncClock();
  }

  // --- groups and their virtualised run lists ---------------------------------------------------
  const groupEls = new Map(); // group key -> {tr, cells, detail, vlist}

  function groupKey(r) {
    return `${r.kind}:${r.task}`;
  }

  let reveal = null; // a group the user just opened: bring its runs into view once drawn

  function toggleGroup(key) {
    if (expanded.has(key)) expanded.delete(key);
    else {
      expanded.add(key);
      reveal = key;
    }
    dirty.add("overview");
    schedule();
  }

  function createGroupEl(key, g) {
    const tr = h("tr", "onb-group");
    tr.tabIndex = 0;
    tr.dataset.task = g.task;
    tr.dataset.kind = g.kind;
    const nameCell = h("td", "onb-group-name");
    const caret = h("span", "onb-caret");
    caret.setAttribute("aria-hidden", "true");
    const label = h("span", "onb-group-label", g.task);
    label.title = g.task;
    nameCell.append(caret, label);
    if (g.kind === "flow") nameCell.append(h("span", "onb-kind", "subflow"));
    const runs = h("td", "onb-num onb-group-runs");
    const progCell = h("td", "onb-progress-cell");
    const progBox = h("div", "onb-progress-box");
    const bar = h("div", "onb-progress");
    const progText = h("span", "onb-progress-text");
    progBox.append(bar, progText);
    progCell.append(progBox);
    const statesCell = h("td", "onb-group-states");
    const states = h("div", "onb-state-list");
    statesCell.append(states);
    const mean = h("td", "onb-num onb-group-mean");
    tr.append(nameCell, runs, progCell, statesCell, mean);
    tr.addEventListener("click", () => toggleGroup(key));
    tr.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        toggleGroup(key);
      }
    });
    return { tr, caret, runs, bar, progText, states, mean, detail: null, vlist: null };
  }

  function updateGroupEl(ge, g, key) {
    const open = expanded.has(key);
    ge.tr.setAttribute("aria-expanded", String(open));
    ge.tr.classList.toggle("onb-open", open);
    ge.caret.textContent = open ? "▾" : "▸";
    ge.runs.textContent = g.runs.length.toLocaleString("en-US");
    clear(ge.bar);
    for (const name of sortStates(Object.keys(g.counts), PROGRESS_ORDER)) {
      const seg = h("div", `onb-progress-seg onb-st-${stateKey(name, g.types[name])}`);
      seg.style.width = `${(100 * g.counts[name]) / g.runs.length}%`;
      seg.title = `${name}: ${g.counts[name]}`;
      ge.bar.append(seg);
    }
    ge.progText.textContent = `${g.done.toLocaleString("en-US")}/${g.runs.length.toLocaleString("en-US")}`;
    clear(ge.states);
    for (const name of sortStates(Object.keys(g.counts), STATE_ORDER)) {
      ge.states.append(badge(name, g.types[name], `${name} ${g.counts[name]}`));
    }
    ge.mean.textContent = g.finished ? formatDuration(g.durations / g.finished) : "–";
  }

  function drawGroups() {
    const all = rows();
    groupsEmpty.hidden = all.length > 0;
    groupsTable.hidden = all.length === 0;
    const groups = new Map();
    for (const r of all) {
      const key = groupKey(r);
      let g = groups.get(key);
      if (!g) {
        g = { task: r.task, kind: r.kind, runs: [], counts: {}, types: {}, done: 0, finished: 0, durations: 0 };
        groups.set(key, g);
      }
      g.runs.push(r);
      g.counts[r.state] = (g.counts[r.state] || 0) + 1;
      g.types[r.state] = r.type;
      if (TERMINAL.has(r.type)) {
        g.done += 1;
        if (isNum(r.start) && isNum(r.end)) {
          g.finished += 1;
          g.durations += r.end - r.start;
        }
      }
    }
    for (const [key, ge] of groupEls) {
      if (!groups.has(key)) {
        ge.tr.remove();
        if (ge.detail) ge.detail.remove();
        groupEls.delete(key);
      }
    }
    const want = [];
    for (const [key, g] of groups) {
      let ge = groupEls.get(key);
      if (!ge) {
        ge = createGroupEl(key, g);
        groupEls.set(key, ge);
      }
      updateGroupEl(ge, g, key);
      want.push(ge.tr);
      if (expanded.has(key)) {
        if (!ge.detail) {
          ge.vlist = makeVList();
          ge.detail = h("tr", "onb-group-detail");
          const td = h("td");
          td.colSpan = 5;
          td.append(ge.vlist.wrap);
          ge.detail.append(td);
        }
        setVListRuns(ge.vlist, g.runs);
        want.push(ge.detail);
      } else if (ge.detail) {
        ge.detail.remove();
        ge.detail = null;
        ge.vlist = null;
      }
    }
    // move nodes only when the order changed: moving a scrolled list would reset its scroll
    let cursor = tbody.firstChild;
    for (const node of want) {
      if (node === cursor) cursor = cursor.nextSibling;
      else tbody.insertBefore(node, cursor);
    }
    while (cursor) {
      const next = cursor.nextSibling;
      cursor.remove();
      cursor = next;
    }
    const opened = reveal !== null && groupEls.get(reveal);
    reveal = null;
    if (opened && opened.detail) opened.detail.scrollIntoView({ block: "nearest" });
  }

  function errorLines(text) {
    let n = 1;
    for (let i = 0; i < text.length && n < ERR_MAX_LINES; i++) if (text.charCodeAt(i) === 10) n++;
    return Math.min(n, ERR_MAX_LINES);
  }

  function itemHeight(r) {
    return failedWithError(r) ? VROW_H + errorLines(String(r.error)) * ERR_LINE_H + 14 : VROW_H;
  }

  function makeVList() {
    const wrap = h("div", "onb-vwrap");
    const head = h("div", "onb-vrow onb-vhead");
    for (const text of ["Run", "State", "Started", "Duration", "Attempts"]) head.append(h("span", null, text));
    const box = h("div", "onb-vlist");
    box.tabIndex = 0;
    const inner = h("div", "onb-vlist-inner");
    box.append(inner);
    wrap.append(head, box);
    const v = { wrap, box, inner, runs: [], offsets: new Float64Array(1), height: 0, first: -1, last: -1 };
    box.addEventListener("scroll", () => paintVList(v, false));
    return v;
  }

  function setVListRuns(v, runs) {
    v.runs = runs;
    const offsets = new Float64Array(runs.length + 1);
    for (let i = 0; i < runs.length; i++) offsets[i + 1] = offsets[i] + itemHeight(runs[i]);
    v.offsets = offsets;
    const full = offsets[runs.length];
    v.inner.style.height = `${full}px`;
    v.height = Math.min(full, VLIST_MAX_H);
    v.box.style.height = `${v.height + 2}px`; // + the 1px borders
    paintVList(v, true);
  }

  /** First index i with offsets[i] > value. */
  function upperBound(offsets, value) {
    let lo = 0;
    let hi = offsets.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (offsets[mid] > value) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  function paintVList(v, force) {
    const n = v.runs.length;
    const top = v.box.scrollTop;
    const first = Math.max(0, upperBound(v.offsets, top) - 1 - VBUFFER);
    const last = Math.min(n, upperBound(v.offsets, top + v.height) + VBUFFER);
    if (!force && first === v.first && last === v.last) return;
    v.first = first;
    v.last = last;
    const run = model.get("run") || {};
    const now = snapshotNow();
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) {
      const r = v.runs[i];
      const item = h("div", "onb-vitem");
      item.style.top = `${v.offsets[i]}px`;
      item.style.height = `${v.offsets[i + 1] - v.offsets[i]}px`;
      item.dataset.name = r.name;
      if (i % 2) item.classList.add("onb-odd");
      const line = h("div", "onb-vrow");
      const name = h("span", "onb-vname", r.name);
      name.title = r.name;
      line.append(name, badge(r.state, r.type));
      const offset = isNum(r.start) && isNum(run.start) ? r.start - run.start : null;
      line.append(h("span", "onb-vstart", offset === null ? "–" : `+${formatDuration(offset)}`));
      const dur = isNum(r.start) ? (isNum(r.end) ? r.end : now) - r.start : null;
      line.append(h("span", "onb-vdur", formatDuration(dur)));
      const tries = r.attempts.length;
      line.append(h("span", `onb-vtries${tries > 1 ? " onb-retried" : ""}`, tries ? String(tries) : "–"));
      item.append(line);
      if (failedWithError(r)) {
        item.classList.add("onb-vitem-error");
        const pre = h("pre", "onb-error-text", r.error);
        pre.style.height = `${errorLines(String(r.error)) * ERR_LINE_H + 8}px`;
        item.append(pre);
      }
      frag.append(item);
    }
    clear(v.inner);
    v.inner.append(frag);
  }

  // --- timeline -------------------------------------------------------------------------------
  /** Runs in drawing order: by start, each subflow followed by its own runs. */
  function ordered(all) {
    const ids = new Set();
    for (const r of all) if (r.kind === "flow") ids.add(r.id);
    const kids = new Map();
    for (const r of all) {
      const p = r.parent !== null && ids.has(r.parent) ? r.parent : "";
      let list = kids.get(p);
      if (!list) kids.set(p, (list = []));
      list.push(r);
    }
    const startOf = (r) => (isNum(r.start) ? r.start : Infinity);
    for (const list of kids.values()) {
      list.sort((a, b) => {
        const sa = startOf(a);
        const sb = startOf(b);
        return sa === sb ? a.index - b.index : sa < sb ? -1 : 1;
      });
    }
    const out = [];
    const seen = new Set();
    const visit = (p, depth) => {
      for (const r of kids.get(p) || []) {
        if (seen.has(r.id)) continue; // a malformed parent cycle must not hang the view
        seen.add(r.id);
        out.push({ r, depth: Math.max(depth, r.depth) });
        if (r.kind === "flow" && !collapsedFlows.has(r.id)) visit(r.id, depth + 1);
      }
    };
    visit("", 0);
    return out;
  }

  let measure = null;

  /** ``text`` shortened with an ellipsis to fit ``width`` px in the timeline's label font. */
  function fit(text, width) {
    if (!measure) {
      measure = document.createElement("canvas").getContext("2d");
      if (!measure) return text;
      const family = getComputedStyle(root).getPropertyValue("--onb-mono").trim() || "monospace";
      measure.font = `11px ${family}`;
    }
    if (measure.measureText(text).width <= width) return text;
    let lo = 0;
    let hi = text.length;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (measure.measureText(`${text.slice(0, mid)}…`).width <= width) lo = mid;
      else hi = mid - 1;
    }
    return `${text.slice(0, lo)}…`;
  }

  function palette() {
    const style = getComputedStyle(root);
    const colors = {};
    for (const key of PALETTE_KEYS) colors[key] = style.getPropertyValue(`--onb-${key}`).trim() || "#8c959f";
    colors.grid = style.getPropertyValue("--onb-grid").trim() || "#e5e7eb";
    colors.muted = style.getPropertyValue("--onb-fg2").trim() || "#6b7280";
    return colors;
  }

  function drawTimeline() {
    const all = rows();
    const nTasks = all.reduce((n, r) => n + (r.kind === "task" ? 1 : 0), 0);
    timeline.dataset.runs = String(nTasks);
    clear(timeline);
    timelineTitle.hidden = all.length === 0;
    if (!all.length) return;
    const run = model.get("run") || {};
    const now = snapshotNow();
    const list = ordered(all);

    let t0 = isNum(run.start) ? run.start : Infinity;
    let t1 = isNum(run.end) ? run.end : -Infinity;
    for (const r of all) {
      for (const [a, b] of segmentsOf(r)) {
        t0 = Math.min(t0, a);
        t1 = Math.max(t1, isNum(b) ? b : now);
      }
    }
    if (!TERMINAL.has(run.state_type) && isNum(run.start)) t1 = Math.max(t1, now);
    if (!Number.isFinite(t0)) t0 = now;
    if (!(t1 > t0)) t1 = t0 + 1000;

    const width = Math.max(420, panels.overview.clientWidth || root.clientWidth || 860);
    const labelW = Math.round(Math.min(230, Math.max(120, width * 0.24)));
    const x0 = labelW + 10;
    const plotW = width - x0 - 14;
    const x = (t) => x0 + ((t - t0) / (t1 - t0)) * plotW;
    x.t0 = t0;
    const step = niceStep(t1 - t0, Math.max(3, Math.floor(plotW / 90)));
    const ticks = [];
    for (let v = 0; v <= t1 - t0 + 1e-9; v += step) ticks.push(v);

    // the axis stays visible while the runs scroll under it
    const axis = svg("svg", { class: "onb-tl-axis", width, height: AXIS_H });
    axis.append(svg("line", { class: "onb-axis-line", x1: x0, x2: x0 + plotW, y1: AXIS_H - 0.5, y2: AXIS_H - 0.5 }));
    for (const v of ticks) {
      const tx = x(t0 + v);
      const anchor = tx - x0 < 20 ? "start" : x0 + plotW - tx < 20 ? "end" : "middle";
      axis.append(svg("text", { class: "onb-axis-label", x: tx, y: AXIS_H - 7, "text-anchor": anchor }, formatTick(v, step)));
      axis.append(svg("line", { class: "onb-axis-tick", x1: tx, x2: tx, y1: AXIS_H - 4, y2: AXIS_H }));
    }
    const axisLabel = svg("text", { class: "onb-axis-label onb-axis-caption", x: 6, y: AXIS_H - 7 }, `${plural(nTasks, "task run")}`);
    axis.append(axisLabel);
    timeline.append(axis);

    const hasWorkers = all.some((r) => r.worker !== null);
    laneToggle.hidden = !hasWorkers;
    if (byWorker && hasWorkers) {
      drawLanes(lanesOf(all), { width, x, ticks, now, labelW });
      return;
    }
    if (all.length > SVG_LIMIT) {
      drawCanvas(list, { width, x, ticks, t0, now, nTasks });
      return;
    }

    const height = list.length * TL_ROW_H + 6;
    const chart = svg("svg", { class: "onb-svg", width, height });
    const clipId = `${uid}-clip`;
    const defs = svg("defs");
    const clip = svg("clipPath", { id: clipId });
    clip.append(svg("rect", { x: 0, y: 0, width: labelW, height }));
    defs.append(clip);
    chart.append(defs);
    const grid = svg("g", { class: "onb-grid" });
    for (const v of ticks) {
      const tx = x(t0 + v);
      grid.append(svg("line", { x1: tx, x2: tx, y1: 0, y2: height }));
    }
    chart.append(grid);
    const running = !TERMINAL.has(run.state_type) && isNum(run.start);
    if (running) {
      chart.append(svg("line", { class: "onb-now", x1: x(now), x2: x(now), y1: 0, y2: height }));
    }

    const barY = (TL_ROW_H - TL_BAR_H) / 2;
    list.forEach(({ r, depth }, i) => {
      const flow = r.kind === "flow";
      const g = svg("g", { class: flow ? "onb-subflow" : "onb-run", transform: `translate(0,${i * TL_ROW_H + 3})` });
      g.dataset.name = r.name;
      g.dataset.state = r.state || "";
      g.append(svg("rect", { class: "onb-track", x: 0, y: 0, width, height: TL_ROW_H }));
      const label = svg("text", {
        class: "onb-bar-label",
        x: 6 + depth * TL_INDENT,
        y: TL_ROW_H / 2,
        "dominant-baseline": "central",
        "clip-path": `url(#${clipId})`,
      });
      if (flow) {
        const folded = collapsedFlows.has(r.id);
        label.append(svg("tspan", { class: "onb-fold" }, folded ? "▸ " : "▾ "));
        g.addEventListener("click", () => {
          if (collapsedFlows.has(r.id)) collapsedFlows.delete(r.id);
          else collapsedFlows.add(r.id);
          dirty.add("overview");
          schedule();
        });
      }
      if (flow && r.task && r.task !== r.name) {
        // a subflow reads as "flow name · run name"
        label.append(document.createTextNode(r.task));
        label.append(svg("tspan", { class: "onb-flow-run" }, ` · ${r.name}`));
      } else {
        label.append(document.createTextNode(fit(r.name, labelW - 10 - depth * TL_INDENT)));
      }
      g.append(label);
      const segs = segmentsOf(r);
      const lines = [`${r.name} (${r.task})`, `${r.state || ""}`];
      if (isNum(r.start)) lines[1] += ` · ${formatDuration((isNum(r.end) ? r.end : now) - r.start)}`;
      if (segs.length > 1) lines.push(`${segs.length} attempts`);
      if (failedWithError(r)) lines.push(String(r.error).split("\n")[0]);
      g.append(svg("title", {}, lines.join("\n")));
      if (flow) {
        if (segs.length) {
          const a = segs[0][0];
          const b = segs[segs.length - 1][1];
          const xa = x(a);
          g.append(svg("rect", {
            class: `onb-span onb-st-${stateKey(r.state, r.type)}`,
            x: xa, y: barY, width: Math.max(2, x(isNum(b) ? b : now) - xa), height: TL_BAR_H, rx: 3,
          }));
        }
      } else {
        segs.forEach(([a, b, key], j) => {
          const xa = x(a);
          const xb = x(isNum(b) ? b : now);
          if (j > 0) {
            // the wait before a retry
            const prev = segs[j - 1][1];
            if (isNum(prev) && x(prev) < xa) {
              g.append(svg("line", { class: "onb-wait", x1: x(prev), x2: xa, y1: TL_ROW_H / 2 - 3, y2: TL_ROW_H / 2 - 3 }));
            }
          }
          const rect = svg("rect", { class: `onb-bar onb-st-${key}`, x: xa, y: barY, width: Math.max(2, xb - xa), height: TL_BAR_H, rx: 2 });
          rect.dataset.attempt = String(j + 1);
          const dur = formatDuration((isNum(b) ? b : now) - a);
          const what = isNum(b) ? (key === "failed" && j < segs.length - 1 ? "failed" : key) : "running";
          rect.append(svg("title", {}, `${r.name} — attempt ${j + 1} of ${segs.length}: ${what}, ${dur}`));
          g.append(rect);
        });
        if (r.state === "AwaitingRetry" && segs.length) {
          const prev = segs[segs.length - 1][1];
          if (isNum(prev) && x(prev) < x(now)) {
            g.append(svg("line", { class: "onb-wait", x1: x(prev), x2: x(now), y1: TL_ROW_H / 2 - 3, y2: TL_ROW_H / 2 - 3 }));
          }
        }
      }
      chart.append(g);
    });
    timeline.append(chart);
  }

  // --- worker lanes (issue 9) -------------------------------------------------------------------
  /** One lane per worker ("kernel" for runs in the kernel); a worker's overlapping attempts
   *  (several threads) stack in sub-lanes, so the lanes show how the cluster was used. */
  function lanesOf(all) {
    const byName = new Map();
    for (const r of all) {
      if (r.kind !== "task") continue;
      segmentsOf(r).forEach(([a, b, key], j) => {
        const w = (r.attempts[j] && r.attempts[j][3]) || r.worker || "kernel";
        if (!byName.has(w)) byName.set(w, []);
        byName.get(w).push({ a, b, key, r, j });
      });
    }
    const lanes = [];
    for (const w of [...byName.keys()].sort()) {
      const ends = [];
      const sub = [];
      for (const s of byName.get(w).sort((p, q) => p.a - q.a)) {
        let k = ends.findIndex((e) => e <= s.a);
        if (k < 0) {
          k = ends.length;
          sub.push([]);
        }
        ends[k] = isNum(s.b) ? s.b : Infinity;
        sub[k].push(s);
      }
      sub.forEach((segs, k) => lanes.push({ worker: w, first: k === 0, segs }));
    }
    return lanes;
  }

  function drawLanes(lanes, { width, x, ticks, now, labelW }) {
    const height = lanes.length * TL_ROW_H + 6;
    const chart = svg("svg", { class: "onb-svg onb-lanes", width, height });
    const grid = svg("g", { class: "onb-grid" });
    for (const v of ticks) {
      const tx = x(x.t0 + v);
      grid.append(svg("line", { x1: tx, x2: tx, y1: 0, y2: height }));
    }
    chart.append(grid);
    const barY = (TL_ROW_H - TL_BAR_H) / 2;
    lanes.forEach((lane, i) => {
      const g = svg("g", { class: "onb-lane", transform: `translate(0,${i * TL_ROW_H + 3})` });
      g.dataset.worker = lane.worker;
      g.append(svg("rect", { class: "onb-track", x: 0, y: 0, width, height: TL_ROW_H }));
      if (lane.first) {
        const label = { class: "onb-bar-label", x: 6, y: TL_ROW_H / 2, "dominant-baseline": "central" };
        g.append(svg("text", label, fit(lane.worker, labelW - 10)));
      }
      for (const s of lane.segs) {
        const xa = x(s.a);
        const end = isNum(s.b) ? s.b : now;
        const rect = svg("rect", { class: `onb-bar onb-st-${s.key}`, x: xa, y: barY, width: Math.max(2, x(end) - xa), height: TL_BAR_H, rx: 2 });
        rect.dataset.run = s.r.name;
        const what = `${s.r.name} (${s.r.task}), attempt ${s.j + 1} on ${lane.worker}`;
        rect.append(svg("title", {}, `${what}: ${formatDuration(end - s.a)}`));
        g.append(rect);
      }
      chart.append(g);
    });
    timeline.append(chart);
  }

  function drawCanvas(list, geo) {
    const { width, x, ticks, t0, now, nTasks } = geo;
    const colors = palette();
    const cssH = Math.max(160, Math.min(300, Math.ceil(list.length / 30)));
    const dpr = window.devicePixelRatio || 1;
    const canvas = h("canvas", "onb-canvas");
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(cssH * dpr);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${cssH}px`;
    const ctx = canvas.getContext("2d");
    if (ctx) {
      ctx.scale(dpr, dpr);
      ctx.strokeStyle = colors.grid;
      ctx.lineWidth = 1;
      for (const v of ticks) {
        const tx = Math.round(x(t0 + v)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(tx, 0);
        ctx.lineTo(tx, cssH);
        ctx.stroke();
      }
      const per = cssH / list.length;
      const hgt = Math.max(per, 0.75);
      list.forEach(({ r }, i) => {
        const y = i * per;
        for (const [a, b, key] of segmentsOf(r)) {
          const xa = x(a);
          ctx.fillStyle = colors[key] || colors.unknown;
          ctx.fillRect(xa, y, Math.max(1, x(isNum(b) ? b : now) - xa), hgt);
        }
      });
      ctx.fillStyle = colors.muted;
      ctx.font = "11px sans-serif";
      ctx.textBaseline = "top";
      ctx.fillText("first started", 6, 2);
      ctx.textBaseline = "bottom";
      ctx.fillText(`last (#${list.length.toLocaleString("en-US")})`, 6, cssH - 2);
    }
    // the tooltip names the run under the pointer (text only)
    canvas.addEventListener("mousemove", (e) => {
      const i = Math.min(list.length - 1, Math.max(0, Math.floor((e.offsetY / cssH) * list.length)));
      const r = list[i].r;
      const dur = isNum(r.start) ? formatDuration((isNum(r.end) ? r.end : now) - r.start) : "not started";
      canvas.title = `${r.name} (${r.task}): ${r.state} · ${dur}`;
    });
    timeline.append(canvas);
    timeline.append(
      h("div", "onb-note", `${plural(nTasks, "task run")} drawn as a density view, one line per run by start time. Expand a task above to see its runs.`),
    );
  }

  // --- transitions and logs ---------------------------------------------------------------------
  /** Keeps a capped, newest-last list in sync, appending only what is new when it can. */
  function feed(container, empty, keyOf, build) {
    let keys = [];
    let nodes = [];
    return (list) => {
      if (list.length > CAP) list = list.slice(-CAP);
      const next = list.map(keyOf);
      let drop = -1;
      if (keys.length && next.length) {
        drop = keys.indexOf(next[0]);
        if (drop >= 0) {
          const overlap = keys.length - drop;
          if (overlap > next.length) drop = -1;
          else for (let i = 0; i < overlap; i++) if (keys[drop + i] !== next[i]) { drop = -1; break; }
        }
      }
      if (drop < 0) {
        clear(container);
        nodes = list.map(build);
        container.append(...nodes);
      } else {
        const overlap = keys.length - drop;
        for (let i = 0; i < drop; i++) nodes[i].remove();
        const added = list.slice(overlap).map(build);
        container.append(...added);
        nodes = nodes.slice(drop).concat(added);
      }
      keys = next;
      empty.hidden = list.length > 0;
    };
  }

  /** Runs an update and keeps the panel scrolled to the newest entry if it was there. */
  function stick(panel, update) {
    const atBottom = panel.scrollHeight - panel.scrollTop - panel.clientHeight < 24 || !panel.dataset.seen;
    update();
    panel.dataset.seen = "1";
    if (atBottom) panel.scrollTop = panel.scrollHeight;
  }

  const transitionsFeed = feed(
    transitionsList,
    transitionsEmpty,
    (t) => `${t.ts}|${t.run}|${t.from}|${t.to}|${t.rule}|${t.message}`,
    (t) => {
      const row = h("div", `onb-transition onb-kind-${t.kind === "flow" ? "flow" : "task"}`);
      row.append(h("span", "onb-time", formatClock(t.ts)));
      const name = h("span", "onb-tname", t.run);
      name.title = t.run || "";
      row.append(name);
      const change = h("span", "onb-change");
      change.append(h("span", "onb-from", t.from || "–"), h("span", "onb-arrow", "→"), badge(t.to, t.type));
      row.append(change);
      const decision = h("span", "onb-decision");
      let reason = t.message ? String(t.message) : "";
      if (t.rule) {
        // the reason may already start with the rule's name: don't say it twice
        if (reason.startsWith(`${t.rule}:`)) reason = reason.slice(t.rule.length + 1).trimStart();
        decision.append(h("span", "onb-rule", t.rule));
        if (reason) decision.append(document.createTextNode(": "));
      }
      if (reason) decision.append(h("span", "onb-reason", reason));
      row.append(decision);
      return row;
    },
  );

  const logsFeed = feed(
    logsList,
    logsEmpty,
    (l) => `${l.ts}|${l.level}|${l.run}|${l.message}`,
    (l) => {
      const level = String(l.level || "");
      const row = h("div", `onb-log onb-log-${level.toLowerCase().replace(/[^a-z]/g, "")}`);
      row.append(h("span", "onb-time", formatClock(l.ts)), h("span", "onb-level", level));
      const name = h("span", "onb-tname", l.run);
      name.title = l.run || "";
      row.append(name, h("span", "onb-logmsg", l.message));
      return row;
    },
  );

  // --- size and teardown --------------------------------------------------------------------------
  let lastWidth = 0;
  const resize = typeof ResizeObserver === "function"
    ? new ResizeObserver(() => {
        const w = root.clientWidth;
        if (w && Math.abs(w - lastWidth) > 1) {
          lastWidth = w;
          dirty.add("overview");
          schedule();
        }
      })
    : null;
  if (resize) resize.observe(root);

  draw();

  return () => {
    if (clock !== null) clearInterval(clock);
    clock = null;
    el.dataset.clock = "stopped";
    if (frame !== null) cancelAnimationFrame(frame);
    frame = null;
    if (resize) resize.disconnect();
    for (const [event, fn] of listeners) model.off(event, fn);
  };
}

export default { initialize, render };
