// orion_nb RunView: live state of a flow run (anywidget ES module, no build step).
//
// Traits (see orion_nb/notebook/widget.py): run, task_columns, tasks, transitions, logs,
// counts, now, total. Every piece of user text goes through textContent (never innerHTML).
// Changes are coalesced with requestAnimationFrame so a burst of updates redraws once;
// long lists are virtualised; timelines above SVG_LIMIT runs are drawn on a canvas.

const SVG_LIMIT = 2000;
const ROW_H = 22; // px, virtual list rows
const BAR_H = 12; // px, timeline bars
const BAR_GAP = 4;
const LABEL_W = 170;
const TERMINAL = new Set(["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]);
const NAME_COLORS = {
  Completed: "#2e9e5b", Cached: "#8fd1a8", Running: "#2f7fd8", Retrying: "#2f7fd8",
  Pending: "#a0a7b4", Scheduled: "#a0a7b4", Late: "#d99a1e", AwaitingRetry: "#e0a526",
  Failed: "#d64545", TimedOut: "#b8324f", Crashed: "#8e2c8e", Cancelled: "#6b6f78", Paused: "#9a8c2e",
};
const TYPE_COLORS = {
  COMPLETED: "#2e9e5b", RUNNING: "#2f7fd8", FAILED: "#d64545", CRASHED: "#8e2c8e",
  CANCELLED: "#6b6f78", SCHEDULED: "#a0a7b4", PENDING: "#a0a7b4", PAUSED: "#9a8c2e",
};
const STATE_ORDER = ["Running", "Retrying", "Pending", "Scheduled", "AwaitingRetry", "Late", "Paused",
  "Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled"];

const SVGNS = "http://www.w3.org/2000/svg";

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function s(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !isFinite(ms)) return "–";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const sec = ms / 1000;
  if (sec < 60) return `${sec.toFixed(1)} s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return `${m} min ${Math.round(sec - m * 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function colorFor(stateName, stateType) {
  return NAME_COLORS[stateName] || TYPE_COLORS[stateType] || "#888";
}

function badge(stateName, stateType, text) {
  const b = h("span", "onb-badge", text === undefined ? stateName : text);
  b.dataset.state = stateName || "";
  b.style.setProperty("--onb-state", colorFor(stateName, stateType));
  return b;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function rowsOf(model) {
  const cols = model.get("task_columns") || [];
  const ix = {};
  cols.forEach((c, i) => (ix[c] = i));
  return (model.get("tasks") || []).map((r) => ({
    id: r[ix.id], task: r[ix.task_name], name: r[ix.name], type: r[ix.state_type],
    state: r[ix.state_name], start: r[ix.start], end: r[ix.end], attempts: r[ix.attempts] || [],
    parent: r[ix.parent], depth: r[ix.depth] || 0, error: r[ix.error], kind: r[ix.kind] || "task",
  }));
}

let instances = 0;

function render({ model, el }) {
  const instance = ++instances;
  const root = h("div", "onb-runview");
  el.appendChild(root);
  el.dataset.renders = "0";

  // --- state --------------------------------------------------------------------------------
  const expanded = new Set();
  const vlists = new Map(); // task name -> {box, inner, runs, scroll}
  let frame = null;
  let renders = 0;

  // --- skeleton ---------------------------------------------------------------------------
  const header = h("div", "onb-header");
  const title = h("span", "onb-title");
  const flowName = h("span", "onb-flow-name");
  const runName = h("span", "onb-run-name");
  title.append(flowName, h("span", "onb-sep", " / "), runName);
  const stateSlot = h("span", "onb-state-slot");
  const elapsed = h("span", "onb-elapsed");
  const total = h("span", "onb-total");
  header.append(title, stateSlot, elapsed, total);
  const message = h("div", "onb-message");
  const counts = h("div", "onb-counts");

  const tabs = h("div", "onb-tabs");
  const panels = h("div", "onb-panels");
  const panel = {};
  const tabButtons = {};
  for (const [key, label] of [["overview", "Tasks & timeline"], ["transitions", "Transitions"], ["logs", "Logs"]]) {
    const b = h("button", "onb-tab", label);
    b.type = "button";
    b.dataset.tab = key;
    b.addEventListener("click", () => select(key));
    tabs.appendChild(b);
    tabButtons[key] = b;
    const p = h("div", `onb-panel onb-panel-${key}`);
    panels.appendChild(p);
    panel[key] = p;
  }
  let current = "overview";
  function select(key) {
    current = key;
    for (const k of Object.keys(panel)) {
      panel[k].hidden = k !== key;
      tabButtons[k].classList.toggle("onb-active", k === key);
    }
    schedule();
  }

  const groupsTable = h("table", "onb-groups");
  const groupsWrap = h("div", "onb-groups-wrap");
  groupsWrap.appendChild(groupsTable);
  const timelineWrap = h("div", "onb-timeline");
  const errorsWrap = h("div", "onb-errors");
  panel.overview.append(groupsWrap, h("div", "onb-section-title", "Timeline"), timelineWrap, errorsWrap);
  const transitionsList = h("div", "onb-list onb-transitions");
  panel.transitions.appendChild(transitionsList);
  const logsList = h("div", "onb-list onb-logs");
  panel.logs.appendChild(logsList);

  root.append(header, message, counts, tabs, panels);
  select("overview");


  function schedule() {
    if (frame !== null) return;
    frame = requestAnimationFrame(() => {
      frame = null;
      draw();
    });
  }

  function runElapsed() {
    const run = model.get("run") || {};
    if (!run.start) return null;
    const end = run.end || (TERMINAL.has(run.state_type) ? model.get("now") : Math.max(Date.now(), model.get("now") || 0));
    return end - run.start;
  }

  function drawHeader() {
    const run = model.get("run") || {};
    flowName.textContent = run.flow_name || "";
    runName.textContent = run.name || "";
    clear(stateSlot);
    stateSlot.appendChild(badge(run.state_name || "Pending", run.state_type || "PENDING"));
    elapsed.textContent = fmtDuration(runElapsed());
    const n = model.get("total") || 0;
    total.textContent = `${n} task run${n === 1 ? "" : "s"}`;
    const msg = run.message && !(run.state_type === "COMPLETED") ? run.message : "";
    message.textContent = msg;
    message.hidden = !msg;
    clear(counts);
    const c = model.get("counts") || {};
    const names = Object.keys(c).sort((a, b) => (STATE_ORDER.indexOf(a) - STATE_ORDER.indexOf(b)));
    for (const name of names) {
      const cb = badge(name, null, `${name} ${c[name]}`);
      cb.classList.add("onb-count");
      counts.appendChild(cb);
    }
  }

  function drawGroups(rows) {
    const groups = new Map();
    for (const r of rows) {
      if (r.kind !== "task") continue;
      let g = groups.get(r.task);
      if (!g) groups.set(r.task, (g = { name: r.task, runs: [], counts: {} }));
      g.runs.push(r);
      g.counts[r.state] = (g.counts[r.state] || 0) + 1;
    }
    clear(groupsTable);
    const head = h("tr");
    for (const t of ["task", "runs", "states", "progress"]) head.appendChild(h("th", null, t));
    groupsTable.appendChild(head);
    for (const g of groups.values()) {
      const tr = h("tr", "onb-group");
      tr.dataset.task = g.name;
      const nameCell = h("td", "onb-group-name");
      const caret = h("span", "onb-caret", expanded.has(g.name) ? "▾" : "▸");
      nameCell.append(caret, h("span", null, g.name));
      tr.appendChild(nameCell);
      tr.appendChild(h("td", "onb-num", g.runs.length));
      const states = h("td", "onb-group-states");
      for (const name of Object.keys(g.counts).sort((a, b) => STATE_ORDER.indexOf(a) - STATE_ORDER.indexOf(b))) {
        states.appendChild(badge(name, null, `${name} ${g.counts[name]}`));
      }
      tr.appendChild(states);
      const prog = h("td", "onb-progress-cell");
      const bar = h("div", "onb-progress");
      for (const name of STATE_ORDER) {
        const n = g.counts[name];
        if (!n) continue;
        const seg = h("div", "onb-progress-seg");
        seg.style.width = `${(100 * n) / g.runs.length}%`;
        seg.style.background = colorFor(name, null);
        bar.appendChild(seg);
      }
      prog.appendChild(bar);
      tr.appendChild(prog);
      tr.addEventListener("click", () => {
        if (expanded.has(g.name)) expanded.delete(g.name);
        else expanded.add(g.name);
        schedule();
      });
      groupsTable.appendChild(tr);
      if (expanded.has(g.name)) {
        const detail = h("tr", "onb-group-detail");
        const td = h("td");
        td.colSpan = 4;
        td.appendChild(virtualList(g.name, g.runs));
        detail.appendChild(td);
        groupsTable.appendChild(detail);
        // re-attaching a scrolled box resets its scroll position: restore it
        const v = vlists.get(g.name);
        if (v.scroll) {
          v.box.scrollTop = v.scroll;
          paintList(v);
        }
      }
    }
    for (const key of [...vlists.keys()]) if (!expanded.has(key)) vlists.delete(key);
  }

  function virtualList(key, runs) {
    let v = vlists.get(key);
    if (!v) {
      const box = h("div", "onb-vlist");
      const inner = h("div", "onb-vlist-inner");
      box.appendChild(inner);
      v = { box, inner, runs };
      box.addEventListener("scroll", () => {
        v.scroll = box.scrollTop;
        paintList(v);
      });
      vlists.set(key, v);
    }
    v.runs = runs;
    v.box.style.height = `${Math.min(runs.length, 10) * ROW_H + 2}px`;
    v.inner.style.height = `${runs.length * ROW_H}px`;
    paintList(v);
    return v.box;
  }

  function paintList(v) {
    const top = v.box.scrollTop;
    const height = v.box.clientHeight || 10 * ROW_H;
    const first = Math.max(0, Math.floor(top / ROW_H) - 5);
    const last = Math.min(v.runs.length, Math.ceil((top + height) / ROW_H) + 5);
    clear(v.inner);
    for (let i = first; i < last; i++) {
      const r = v.runs[i];
      const row = h("div", "onb-vrow");
      row.style.top = `${i * ROW_H}px`;
      row.dataset.name = r.name;
      row.appendChild(h("span", "onb-vname", r.name));
      row.appendChild(badge(r.state, r.type));
      const dur = r.start ? (r.end || model.get("now")) - r.start : null;
      row.appendChild(h("span", "onb-vdur", fmtDuration(dur)));
      const tries = r.attempts.length;
      row.appendChild(h("span", "onb-vtries", tries > 1 ? `${tries} attempts` : ""));
      if (r.error) row.title = r.error;
      v.inner.appendChild(row);
    }
  }

  function ordered(rows) {
    // subflows first by their place in time, their task runs right below them
    const byParent = new Map();
    for (const r of rows) {
      const p = r.parent || "";
      if (!byParent.has(p)) byParent.set(p, []);
      byParent.get(p).push(r);
    }
    for (const list of byParent.values()) list.sort((a, b) => (a.start ?? Infinity) - (b.start ?? Infinity));
    const out = [];
    const visit = (p) => {
      for (const r of byParent.get(p) || []) {
        out.push(r);
        if (r.kind === "flow") visit(r.id);
      }
    };
    visit("");
    if (out.length < rows.length) {
      const seen = new Set(out.map((r) => r.id));
      for (const r of rows) if (!seen.has(r.id)) out.push(r);
    }
    return out;
  }

  function drawTimeline(rows) {
    const list = ordered(rows);
    timelineWrap.dataset.runs = String(list.filter((r) => r.kind === "task").length);
    clear(timelineWrap);
    if (!list.length) {
      timelineWrap.appendChild(h("div", "onb-empty", "No task runs yet."));
      return;
    }
    const now = Math.max(model.get("now") || 0, 0);
    let t0 = Infinity;
    let t1 = -Infinity;
    for (const r of list) {
      if (r.start !== null && r.start !== undefined) t0 = Math.min(t0, r.start);
      t1 = Math.max(t1, r.end || now);
    }
    const run = model.get("run") || {};
    if (run.start) t0 = Math.min(t0, run.start);
    if (!isFinite(t0)) t0 = now;
    if (!(t1 > t0)) t1 = t0 + 1;
    const width = Math.max(320, (timelineWrap.clientWidth || root.clientWidth || 800) - 4);
    const plotW = width - LABEL_W - 8;
    const x = (t) => LABEL_W + ((t - t0) / (t1 - t0)) * plotW;
    const rowH = BAR_H + BAR_GAP;
    if (list.length > SVG_LIMIT) {
      const canvas = document.createElement("canvas");
      const ch = Math.min(list.length * 2, 4000);
      canvas.width = width;
      canvas.height = ch;
      canvas.className = "onb-canvas";
      const ctx = canvas.getContext("2d");
      const per = ch / list.length;
      list.forEach((r, i) => {
        const segs = r.attempts.length ? r.attempts : r.start ? [[r.start, r.end, r.type]] : [];
        segs.forEach((a, j) => {
          const last = j === segs.length - 1;
          ctx.fillStyle = last ? colorFor(r.state, r.type) : colorFor(null, a[2]);
          const xa = x(a[0]);
          ctx.fillRect(xa, i * per, Math.max(1, x(a[1] || now) - xa), Math.max(1, per));
        });
      });
      timelineWrap.appendChild(canvas);
      timelineWrap.appendChild(h("div", "onb-note", `${list.length} runs drawn as a density view; expand a task in the table for details.`));
      return;
    }
    const svg = s("svg", { width, height: list.length * rowH + 24, class: "onb-svg" });
    // long names are clipped at the label column instead of running into the bars
    const clipId = `onb-clip-${instance}`;
    const defs = s("defs");
    const clip = s("clipPath", { id: clipId });
    clip.appendChild(s("rect", { x: 0, y: -2, width: LABEL_W - 8, height: list.length * rowH + 4 }));
    defs.appendChild(clip);
    svg.appendChild(defs);
    // time axis
    const axis = s("g", { class: "onb-axis" });
    for (let k = 0; k <= 4; k++) {
      const t = t0 + ((t1 - t0) * k) / 4;
      const tx = x(t);
      axis.appendChild(s("line", { x1: tx, x2: tx, y1: 0, y2: list.length * rowH, class: "onb-grid" }));
      const label = s("text", { x: tx, y: list.length * rowH + 16, class: "onb-axis-label", "text-anchor": k === 0 ? "start" : k === 4 ? "end" : "middle" });
      label.textContent = fmtDuration(t - t0);
      axis.appendChild(label);
    }
    svg.appendChild(axis);
    list.forEach((r, i) => {
      const g = s("g", { class: r.kind === "flow" ? "onb-subflow" : "onb-run", transform: `translate(0, ${i * rowH})` });
      g.dataset.name = r.name;
      g.dataset.state = r.state;
      const label = s("text", { x: 4 + r.depth * 12, y: BAR_H - 2, class: "onb-bar-label", "clip-path": `url(#${clipId})` });
      label.textContent = r.kind === "flow" ? `▾ ${r.task} (${r.name})` : r.name;
      g.appendChild(label);
      const segs = r.attempts.length ? r.attempts : r.start ? [[r.start, r.end, r.type]] : [];
      segs.forEach((a, j) => {
        const last = j === segs.length - 1;
        const xa = x(a[0]);
        const w = Math.max(2, x(a[1] || now) - xa);
        const rect = s("rect", { x: xa, y: 0, width: w, height: BAR_H, rx: 2, class: "onb-bar" });
        rect.style.fill = last ? colorFor(r.state, r.type) : colorFor(null, a[2]);
        rect.dataset.attempt = String(j + 1);
        const tip = s("title");
        tip.textContent = `${r.name} — attempt ${j + 1}: ${last ? r.state : a[2]} (${fmtDuration((a[1] || now) - a[0])})`;
        rect.appendChild(tip);
        g.appendChild(rect);
      });
      const tip = s("title");
      tip.textContent = `${r.name}: ${r.state}`;
      label.appendChild(tip);
      svg.appendChild(g);
    });
    timelineWrap.appendChild(svg);
  }

  function drawErrors(rows) {
    clear(errorsWrap);
    const failed = rows.filter((r) => r.error && r.type !== "COMPLETED");
    if (!failed.length) return;
    errorsWrap.appendChild(h("div", "onb-section-title", `Errors (${failed.length})`));
    for (const r of failed.slice(0, 20)) {
      const d = h("details", "onb-error");
      const sum = h("summary");
      sum.append(h("span", "onb-error-name", r.name), badge(r.state, r.type));
      d.appendChild(sum);
      d.appendChild(h("pre", "onb-error-text", r.error));
      errorsWrap.appendChild(d);
    }
    if (failed.length > 20) errorsWrap.appendChild(h("div", "onb-note", `… and ${failed.length - 20} more`));
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  function drawTransitions() {
    const list = model.get("transitions") || [];
    clear(transitionsList);
    for (const t of list) {
      const row = h("div", "onb-transition");
      row.appendChild(h("span", "onb-time", fmtTime(t.ts)));
      row.appendChild(h("span", "onb-tname", t.run));
      const arrow = h("span", "onb-arrow");
      arrow.append(h("span", null, t.from || "·"), h("span", null, " → "), badge(t.to, t.type));
      row.appendChild(arrow);
      if (t.rule) row.appendChild(h("span", "onb-rule", t.rule));
      if (t.message) row.appendChild(h("span", "onb-reason", t.message));
      transitionsList.appendChild(row);
    }
    if (!list.length) transitionsList.appendChild(h("div", "onb-empty", "No transitions yet."));
  }

  function drawLogs() {
    const list = model.get("logs") || [];
    clear(logsList);
    for (const l of list) {
      const row = h("div", `onb-log onb-log-${String(l.level || "").toLowerCase()}`);
      row.appendChild(h("span", "onb-time", fmtTime(l.ts)));
      row.appendChild(h("span", "onb-level", l.level));
      row.appendChild(h("span", "onb-tname", l.run));
      row.appendChild(h("span", "onb-logmsg", l.message));
      logsList.appendChild(row);
    }
    if (!list.length) logsList.appendChild(h("div", "onb-empty", "No log records."));
    tabButtons.logs.textContent = list.length ? `Logs (${list.length})` : "Logs";
  }

  function draw() {
    renders += 1;
    el.dataset.renders = String(renders);
    drawHeader();
    const rows = rowsOf(model);
    drawGroups(rows);
    drawTimeline(rows);
    drawErrors(rows);
    drawTransitions();
    drawLogs();
    const run = model.get("run") || {};
    root.dataset.state = run.state_name || "";
  }

  const names = ["run", "tasks", "task_columns", "transitions", "logs", "counts", "now", "total"];
  for (const n of names) model.on(`change:${n}`, schedule);
  draw();

  // the elapsed clock ticks while the run is not finished
  const ticker = setInterval(() => {
    const run = model.get("run") || {};
    if (!TERMINAL.has(run.state_type)) elapsed.textContent = fmtDuration(runElapsed());
  }, 1000);

  return () => {
    clearInterval(ticker);
    if (frame !== null) cancelAnimationFrame(frame);
    for (const n of names) model.off(`change:${n}`, schedule);
  };
}

export default { render };
