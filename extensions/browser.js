// orion_nb history browser (anywidget ES module, no build step).
//
// Reads the traits of orion_nb/notebook/browser.py (columns, head, filters, total,
// generation, chart, options, status, tz; times in epoch ms) and draws
//   - a filter bar: flow, states (toggles), time range, deployment, tag, text in run names,
//     subflows, and the chart's unit;
//   - a chart of runs per hour or day stacked by state type (a click on a bar narrows the
//     list to that hour or day; another click widens it again);
//   - the list, virtualised: a box as tall as all the rows, with only the rows in view (and
//     a few around them) in the DOM, fetched from the kernel by page ({kind: "page"}) as they
//     come into view; 100,000 runs cost the same DOM as 20;
//   - a run opened in place: its RunView (runview.js, rendered into this widget with a model
//     of its own fed by the kernel's {kind: "run"} messages), with a way back to the list.
// Rules: user text only through textContent (no innerHTML anywhere); every listener and timer
// is removed by the cleanup that render() returns; test hooks are data-* attributes.

import runview from "./runview.js";
import { clear, formatDuration, h, stateKey, svg } from "./runview.js";

const ROW_H = 30;
const VISIBLE_ROWS = 14;
const PAGE = 100;
const BUFFER = 8;
const MAX_PAGES = 40; // pages kept in the front-end's cache
const STATE_TYPES = ["COMPLETED", "FAILED", "RUNNING", "SCHEDULED", "PENDING", "CANCELLED", "CRASHED", "PAUSED"];
const TYPE_LABELS = {
  COMPLETED: "Completed", FAILED: "Failed", RUNNING: "Running", SCHEDULED: "Scheduled",
  PENDING: "Pending", CANCELLED: "Cancelled", CRASHED: "Crashed", PAUSED: "Paused",
};
const RANGES = [
  ["", "All time"], ["1", "Last hour"], ["24", "Last 24 hours"], ["168", "Last 7 days"], ["720", "Last 30 days"],
];
const HEADINGS = ["Flow", "Run", "State", "Start", "Duration", "Task runs", "Deployment", "Tags"];

const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const pad = (n) => String(n).padStart(2, "0");

export function formatStamp(ms) {
  if (!isNum(ms)) return "–";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function option(value, label, selected) {
  const o = h("option", null, label);
  o.value = value;
  if (selected) o.selected = true;
  return o;
}

/** A model for the RunView of an opened run, fed by the kernel's messages (no comm of its own). */
function localModel() {
  const data = { run: {}, task_columns: [], tasks: [], transitions: [], logs: [], counts: {}, now: 0, total: 0, edges: [], tab: "overview" };
  const listeners = {};
  const model = {
    get: (k) => data[k],
    set: (k, v) => {
      data[k] = v;
      for (const fn of (listeners[`change:${k}`] || []).slice()) fn(model, v);
    },
    on: (ev, fn) => (listeners[ev] = listeners[ev] || []).push(fn),
    off: (ev, fn) => {
      listeners[ev] = (listeners[ev] || []).filter((f) => f !== fn);
    },
    send: () => {},
    save_changes: () => {},
  };
  return model;
}

function render({ model, el }) {
  const root = h("div", "onb-runview onb-browser");
  el.appendChild(root);
  const cleanups = [];
  const listen = (event, fn) => {
    model.on(event, fn);
    cleanups.push(() => model.off(event, fn));
  };

  // --- skeleton -------------------------------------------------------------------------------
  const head = h("div", "onb-bhead");
  const title = h("span", "onb-btitle", "Flow runs");
  const count = h("span", "onb-bcount");
  const live = h("span", "onb-blive");
  head.append(title, count, live);
  const error = h("div", "onb-berror");
  error.hidden = true;

  const bar = h("div", "onb-filters");
  const flowSel = h("select", "onb-f-flow");
  flowSel.title = "Flow";
  const states = h("div", "onb-f-states");
  const stateButtons = {};
  for (const t of STATE_TYPES) {
    const b = h("button", `onb-chip onb-st-${stateKey(null, t)}`, TYPE_LABELS[t]);
    b.type = "button";
    b.dataset.state = t;
    b.setAttribute("aria-pressed", "false");
    b.addEventListener("click", () => toggleState(t));
    stateButtons[t] = b;
    states.append(b);
  }
  const rangeSel = h("select", "onb-f-range");
  rangeSel.title = "Time range (when runs were created)";
  const depSel = h("select", "onb-f-deployment");
  depSel.title = "Deployment";
  const tagSel = h("select", "onb-f-tag");
  tagSel.title = "Tag";
  const text = h("input", "onb-f-text");
  text.type = "search";
  text.placeholder = "Search run names";
  const subLabel = h("label", "onb-f-sub");
  const sub = h("input");
  sub.type = "checkbox";
  subLabel.append(sub, document.createTextNode(" subflows"));
  const unitSel = h("select", "onb-f-unit");
  unitSel.title = "Chart bars";
  for (const [v, l] of [["auto", "auto"], ["hour", "per hour"], ["day", "per day"]]) unitSel.append(option(v, l));
  bar.append(flowSel, states, rangeSel, depSel, tagSel, text, subLabel, unitSel);

  const chartBox = h("div", "onb-chart");
  const listBox = h("div", "onb-blist");
  const header = h("div", "onb-brow onb-bheader");
  for (const t of HEADINGS) header.append(h("span", null, t));
  const viewport = h("div", "onb-bviewport");
  viewport.tabIndex = 0;
  const inner = h("div", "onb-binner");
  viewport.append(inner);
  const empty = h("div", "onb-empty", "No flow runs match.");
  listBox.append(header, viewport, empty);

  const detail = h("div", "onb-bdetail");
  detail.hidden = true;
  const back = h("button", "onb-back", "← All runs");
  back.type = "button";
  const detailNote = h("div", "onb-note");
  const runBox = h("div", "onb-brun");
  detail.append(back, detailNote, runBox);

  const listView = h("div", "onb-blistview");
  listView.append(bar, chartBox, listBox);
  root.append(head, error, listView, detail);

  // --- filters ----------------------------------------------------------------------------------
  function filters() {
    return { ...(model.get("filters") || {}) };
  }

  function setFilters(next) {
    model.set("filters", next);
    model.save_changes();
  }

  function toggleState(t) {
    const f = filters();
    const cur = new Set(f.state || []);
    if (cur.has(t)) cur.delete(t);
    else cur.add(t);
    f.state = [...cur];
    setFilters(f);
  }

  function fillSelect(sel, items, current, allLabel) {
    clear(sel);
    sel.append(option("", allLabel, !current));
    let found = !current;
    for (const [value, label] of items) {
      sel.append(option(value, label, value === current));
      if (value === current) found = true;
    }
    if (!found) sel.append(option(current, current, true));
  }

  function drawFilters() {
    const f = filters();
    const opts = model.get("options") || {};
    fillSelect(flowSel, (opts.flows || []).map((n) => [n, n]), (f.flow || [])[0] || "", "All flows");
    fillSelect(depSel, (opts.deployments || []).map(([id, name]) => [name, name]), (f.deployment || [])[0] || "", "All deployments");
    depSel.hidden = !(opts.deployments || []).length && !(f.deployment || []).length;
    fillSelect(tagSel, (opts.tags || []).map((t) => [t, t]), (f.tag || [])[0] || "", "All tags");
    tagSel.hidden = !(opts.tags || []).length && !(f.tag || []).length;
    const on = new Set(f.state || []);
    for (const [t, b] of Object.entries(stateButtons)) {
      const pressed = on.has(t) || on.has(TYPE_LABELS[t]);
      b.setAttribute("aria-pressed", String(pressed));
      b.classList.toggle("onb-on", pressed);
    }
    clear(rangeSel);
    let custom = "";
    if (isNum(f.since) || isNum(f.until)) {
      custom = `${isNum(f.since) ? formatStamp(f.since) : "…"} – ${isNum(f.until) ? formatStamp(f.until) : "now"}`;
    }
    for (const [v, l] of RANGES) rangeSel.append(option(v, l, !custom && v === ""));
    if (custom) rangeSel.append(option("custom", custom, true));
    if (document.activeElement !== text) text.value = f.text || "";
    sub.checked = !!f.subflows;
    unitSel.value = f.unit || "auto";
  }

  flowSel.addEventListener("change", () => setFilters({ ...filters(), flow: flowSel.value ? [flowSel.value] : [] }));
  depSel.addEventListener("change", () => setFilters({ ...filters(), deployment: depSel.value ? [depSel.value] : [] }));
  tagSel.addEventListener("change", () => setFilters({ ...filters(), tag: tagSel.value ? [tagSel.value] : [] }));
  rangeSel.addEventListener("change", () => {
    if (rangeSel.value === "custom") return;
    const hours = Number(rangeSel.value);
    setFilters({ ...filters(), since: hours ? Date.now() - hours * 3600000 : null, until: null });
  });
  sub.addEventListener("change", () => setFilters({ ...filters(), subflows: sub.checked }));
  unitSel.addEventListener("change", () => setFilters({ ...filters(), unit: unitSel.value }));
  let typing = null;
  text.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => setFilters({ ...filters(), text: text.value }), 250);
  });
  cleanups.push(() => clearTimeout(typing));

  // --- chart ------------------------------------------------------------------------------------
  function drawChart() {
    clear(chartBox);
    const c = model.get("chart") || {};
    const bars = Array.isArray(c.bars) ? c.bars : [];
    chartBox.dataset.bars = String(bars.length);
    if (!bars.length) return;
    const width = Math.max(420, chartBox.clientWidth || root.clientWidth - 26 || 860);
    const height = 96;
    const top = 14;
    const bottom = 18;
    const max = Math.max(1, ...bars.map(([, counts]) => Object.values(counts).reduce((a, b) => a + b, 0)));
    const slot = (width - 40) / bars.length;
    const bw = Math.min(36, Math.max(1, slot * 0.8));
    const s = svg("svg", { class: "onb-chart-svg", width, height });
    const f = filters();
    const unitMs = c.unit === "hour" ? 3600000 : 86400000;
    s.append(svg("text", { class: "onb-axis-label", x: 2, y: 10 }, `${max.toLocaleString("en-US")} runs per ${c.unit}`));
    bars.forEach(([t, counts], i) => {
      const x = 36 + i * slot;
      let y = height - bottom;
      const g = svg("g", { class: "onb-cbar" });
      g.dataset.t = String(t);
      const parts = [];
      for (const type of STATE_TYPES) {
        const n = counts[type] || 0;
        if (!n) continue;
        const hgt = ((height - top - bottom) * n) / max;
        y -= hgt;
        g.append(svg("rect", { class: `onb-cseg onb-st-${stateKey(null, type)}`, x, y, width: bw, height: Math.max(hgt, 1) }));
        parts.push(`${n} ${TYPE_LABELS[type]}`);
      }
      const selected = f.since === t && f.until === t + unitMs;
      g.append(svg("rect", { class: `onb-chit${selected ? " onb-selected" : ""}`, x: x - (slot - bw) / 2, y: top, width: slot, height: height - top - bottom }));
      const label = c.unit === "hour" ? formatStamp(t).slice(0, 16) : formatStamp(t).slice(0, 10);
      g.append(svg("title", {}, `${label}: ${parts.length ? parts.join(", ") : "no runs"}`));
      g.addEventListener("click", () => {
        const cur = filters();
        if (cur.since === t && cur.until === t + unitMs) setFilters({ ...cur, since: null, until: null });
        else setFilters({ ...cur, since: t, until: t + unitMs });
      });
      s.append(g);
    });
    const fmt = (t) => (c.unit === "hour" ? formatStamp(t).slice(5, 16) : formatStamp(t).slice(0, 10));
    s.append(svg("text", { class: "onb-axis-label", x: 36, y: height - 4 }, fmt(bars[0][0])));
    s.append(svg("text", { class: "onb-axis-label", x: width - 4, y: height - 4, "text-anchor": "end" }, fmt(bars[bars.length - 1][0])));
    chartBox.append(s);
  }

  // --- the virtualised list -------------------------------------------------------------------
  let pages = new Map(); // page index -> rows (arrays in `columns` order)
  const asked = new Set();
  let ix = {};
  const rowEls = new Map(); // row index -> element

  function indexColumns() {
    ix = {};
    (model.get("columns") || []).forEach((c, i) => (ix[c] = i));
  }

  function loadHead() {
    pages = new Map();
    asked.clear();
    const rows = model.get("head") || [];
    for (let p = 0; p * PAGE < rows.length; p++) pages.set(p, rows.slice(p * PAGE, (p + 1) * PAGE));
  }

  function rowAt(i) {
    const p = pages.get(Math.floor(i / PAGE));
    return p ? p[i % PAGE] : undefined;
  }

  function ask(p) {
    if (pages.has(p) || asked.has(p)) return;
    asked.add(p);
    model.send({ kind: "page", gen: model.get("generation"), start: p * PAGE, count: PAGE });
  }

  function evict(first) {
    if (pages.size <= MAX_PAGES) return;
    const keep = Math.floor(first / PAGE);
    const far = [...pages.keys()].sort((a, b) => Math.abs(b - keep) - Math.abs(a - keep));
    while (pages.size > MAX_PAGES && far.length) pages.delete(far.shift());
  }

  function taskCell(counts) {
    const cell = h("span", "onb-btasks");
    if (!counts || typeof counts !== "object") return cell;
    const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
    const total = entries.reduce((n, [, c]) => n + c, 0);
    if (!total) {
      cell.textContent = "–";
      return cell;
    }
    const barEl = h("span", "onb-btaskbar");
    for (const [name, n] of entries) {
      const seg = h("span", `onb-st-${stateKey(name, null)}`);
      seg.style.width = `${(100 * n) / total}%`;
      barEl.append(seg);
    }
    const bad = entries.filter(([name]) => !["Completed", "Cached"].includes(name));
    const words = `${total.toLocaleString("en-US")}${bad.length ? ` · ${bad.map(([n, c]) => `${c} ${n}`).join(", ")}` : ""}`;
    cell.append(barEl, h("span", "onb-btasktext", words));
    cell.title = entries.map(([n, c]) => `${n}: ${c}`).join("\n");
    return cell;
  }

  function buildRow(r, i) {
    const row = h("div", "onb-brow onb-bitem");
    row.style.top = `${i * ROW_H}px`;
    row.tabIndex = 0;
    row.dataset.index = String(i);
    if (!r) {
      row.classList.add("onb-loading");
      row.append(h("span", "onb-muted", "…"));
      return row;
    }
    const get = (c) => r[ix[c]];
    row.dataset.id = get("id") || "";
    row.dataset.name = get("name") || "";
    row.dataset.state = get("state_name") || "";
    row.dataset.flow = get("flow_name") || "";
    const flow = h("span", "onb-bflow", get("flow_name"));
    flow.title = get("flow_name") || "";
    const name = h("span", "onb-bname", get("name"));
    name.title = get("name") || "";
    const stateCell = h("span");
    const badge = h("span", `onb-badge onb-st-${stateKey(get("state_name"), get("state_type"))}`, get("state_name") || "Pending");
    stateCell.append(badge);
    const message = get("message");
    if (message && get("state_type") !== "COMPLETED") stateCell.title = String(message);
    const start = get("start");
    const expected = get("expected_start");
    const when = h("span", "onb-bwhen", isNum(start) ? formatStamp(start) : isNum(expected) ? `due ${formatStamp(expected)}` : formatStamp(get("created")));
    const end = get("end");
    const dur = isNum(start) ? (isNum(end) ? end : Date.now()) - start : null;
    const duration = h("span", "onb-bdur", isNum(dur) ? formatDuration(dur) : "–");
    if (isNum(start) && !isNum(end)) duration.dataset.live = String(start);
    const dep = h("span", "onb-bdep", get("deployment") || (get("deployment_id") ? String(get("deployment_id")).slice(0, 8) : "–"));
    dep.title = get("deployment_id") || "";
    const tags = h("span", "onb-btags");
    for (const t of get("tags") || []) tags.append(h("span", "onb-tag", t));
    row.append(flow, name, stateCell, when, duration, taskCell(get("tasks")), dep, tags);
    row.addEventListener("click", () => openRun(get("id"), get("name")));
    row.addEventListener("keydown", (e) => {
      if (e.key === "Enter") openRun(get("id"), get("name"));
    });
    return row;
  }

  function paint(force) {
    const total = model.get("total") || 0;
    empty.hidden = total > 0;
    viewport.hidden = total === 0;
    inner.style.height = `${total * ROW_H}px`;
    viewport.style.height = `${Math.min(total, VISIBLE_ROWS) * ROW_H + 2}px`;
    const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_H) - BUFFER);
    const last = Math.min(total, Math.ceil((viewport.scrollTop + viewport.clientHeight) / ROW_H) + BUFFER);
    for (let p = Math.floor(first / PAGE); p * PAGE < last; p++) ask(p);
    for (const [i, node] of rowEls) {
      if (i < first || i >= last || force) {
        node.remove();
        rowEls.delete(i);
      }
    }
    for (let i = first; i < last; i++) {
      const r = rowAt(i);
      const have = rowEls.get(i);
      if (have && !(have.classList.contains("onb-loading") && r)) continue;
      const node = buildRow(r, i);
      if (have) have.replaceWith(node);
      else inner.append(node);
      rowEls.set(i, node);
    }
    evict(first);
    el.dataset.rows = String(rowEls.size);
    count.textContent = `${total.toLocaleString("en-US")} run${total === 1 ? "" : "s"}`;
  }

  let frame = null;
  function schedule(force) {
    if (force) forceNext = true;
    if (frame === null) {
      frame = requestAnimationFrame(() => {
        frame = null;
        const f = forceNext;
        forceNext = false;
        paint(f);
      });
    }
  }
  let forceNext = false;
  viewport.addEventListener("scroll", () => schedule(false));

  // durations of running runs tick
  const ticker = setInterval(() => {
    for (const node of inner.querySelectorAll(".onb-bdur[data-live]")) {
      node.textContent = formatDuration(Date.now() - Number(node.dataset.live));
    }
  }, 1000);
  cleanups.push(() => clearInterval(ticker));

  // --- an opened run --------------------------------------------------------------------------
  let opened = null; // {id, model, cleanup, uninit}
  function openRun(id, name) {
    if (!id) return;
    closeRun(false);
    listView.hidden = true;
    detail.hidden = false;
    detailNote.textContent = `Loading ${name || id}…`;
    detailNote.hidden = false;
    root.dataset.opened = id;
    opened = { id, model: null, cleanup: null, uninit: null, seq: 0 };
    model.send({ kind: "open", id });
  }

  function showRun(msg) {
    if (!opened || msg.id !== opened.id || !msg.snapshot) return;
    if (!opened.model) {
      opened.model = localModel();
      for (const [k, v] of Object.entries(msg.snapshot)) opened.model.set(k, v);
      opened.uninit = runview.initialize ? runview.initialize({ model: opened.model }) : null;
      opened.cleanup = runview.render({ model: opened.model, el: runBox });
    } else {
      for (const [k, v] of Object.entries(msg.snapshot)) opened.model.set(k, v);
    }
    detailNote.hidden = true;
  }

  function closeRun(send = true) {
    if (opened) {
      if (typeof opened.cleanup === "function") opened.cleanup();
      if (typeof opened.uninit === "function") opened.uninit();
      clear(runBox);
      if (send) model.send({ kind: "close-run" });
    }
    opened = null;
    delete root.dataset.opened;
    detail.hidden = true;
    listView.hidden = false;
  }
  back.addEventListener("click", () => {
    closeRun();
    schedule(true);
  });
  const onKey = (e) => {
    if (e.key === "Escape" && opened) {
      closeRun();
      schedule(true);
    }
  };
  root.addEventListener("keydown", onKey);

  // --- messages and traits --------------------------------------------------------------------
  listen("msg:custom", (msg) => {
    if (!msg || typeof msg !== "object") return;
    if (msg.kind === "page" && msg.gen === model.get("generation") && Array.isArray(msg.rows)) {
      const p = Math.floor(msg.start / PAGE);
      pages.set(p, msg.rows);
      asked.delete(p);
      schedule(false);
    } else if (msg.kind === "rows" && msg.gen === model.get("generation")) {
      const byId = new Map(msg.rows.map((r) => [r[ix.id], r]));
      for (const rows of pages.values()) {
        rows.forEach((r, i) => {
          const fresh = byId.get(r[ix.id]);
          if (fresh) rows[i] = fresh;
        });
      }
      schedule(true);
    } else if (msg.kind === "refresh" && msg.gen === model.get("generation")) {
      const keepScroll = viewport.scrollTop > 0 && msg.added > 0;
      loadHead();
      if (keepScroll) viewport.scrollTop += msg.added * ROW_H;
      schedule(true);
    } else if (msg.kind === "run") {
      showRun(msg);
    } else if (msg.kind === "run-error" && opened && msg.id === opened.id) {
      detailNote.textContent = String(msg.message || "");
    }
  });
  listen("change:generation", () => {
    loadHead();
    viewport.scrollTop = 0;
    schedule(true);
  });
  listen("change:head", () => {
    loadHead();
    schedule(true);
  });
  listen("change:total", () => schedule(true));
  listen("change:columns", () => {
    indexColumns();
    schedule(true);
  });
  listen("change:filters", () => {
    drawFilters();
    drawChart();
  });
  listen("change:options", drawFilters);
  listen("change:chart", drawChart);
  const drawStatus = () => {
    const s = model.get("status") || {};
    live.textContent = s.live ? "● live" : "";
    live.title = isNum(s.updated) ? `updated ${formatStamp(s.updated)}` : "";
    error.textContent = s.error ? String(s.error) : "";
    error.hidden = !s.error;
  };
  listen("change:status", drawStatus);

  indexColumns();
  loadHead();
  drawFilters();
  drawChart();
  drawStatus();
  paint(true);
  try {
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (tz && model.get("tz") !== tz) {
      model.set("tz", tz);
      model.save_changes();
    }
  } catch (e) {
    // no Intl time zone: the chart's days stay UTC days
  }
  model.send({ kind: "view", open: true });

  return () => {
    closeRun(false);
    if (frame !== null) cancelAnimationFrame(frame);
    for (const fn of cleanups) fn();
    root.removeEventListener("keydown", onKey);
    model.send({ kind: "view", open: false });
  };
}

export default { render };
