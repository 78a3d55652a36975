"""The history browser's front-end (extensions/browser.js) in real Chromium with a fake model.

The page (``/browser.html`` from the conftest) renders the module with the browser's traits;
each test installs a fake kernel in the page before the module loads: it answers page
requests from a generated history of up to 100,000 runs and re-filters it when the module
saves new filters, as the Python side does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from orion_nb.notebook.browser import COLUMNS
from tests.browser.conftest import widget_page

pytestmark = pytest.mark.browser

EVIL = "<img src=x onerror=alert(1)>"

# a fake kernel: run i is created i minutes before NOW; every 7th run failed; the filters the
# module saves (state types, text) select from the same generated history
KERNEL = """
const NOW = 1764000000000;
const COLS = __COLUMNS__;
const TOTAL = __TOTAL__;
const EVIL = __EVIL__;
function run(i) {
  const t = NOW - i * 60000;
  const failed = i % 7 === 3;
  return [`id-${i}`, i % 2 ? "etl" : "report", i === 5 ? EVIL : `run-${i}`,
    failed ? "FAILED" : "COMPLETED", failed ? "Failed" : "Completed", t, t, t + 1500, null,
    null, null, ["nightly"], null, failed ? "boom" : null, {Completed: 3}];
}
let matching = null; // indexes of the runs the filters select (null: all of them)
function pick(f) {
  const states = (f.state || []);
  if (!states.length && !f.text) return null;
  const out = [];
  for (let i = 0; i < TOTAL; i++) {
    const r = run(i);
    if (states.length && !states.includes(r[3])) continue;
    if (f.text && !r[2].includes(f.text)) continue;
    out.push(i);
  }
  return out;
}
const rowsAt = (start, count) => {
  const n = matching ? matching.length : TOTAL;
  const out = [];
  for (let k = start; k < Math.min(n, start + count); k++) out.push(run(matching ? matching[k] : k));
  return out;
};
window.__initial = {columns: COLS, total: TOTAL, head: rowsAt(0, 200), generation: 1,
  chart: {unit: "hour", start: NOW - 86400000, end: NOW,
          bars: [[NOW - 7200000, {COMPLETED: 5, FAILED: 1}], [NOW - 3600000, {COMPLETED: 2}]]},
  options: {flows: ["etl", "report"], deployments: [], tags: ["nightly"]},
  filters: {flow: [], state: [], deployment: [], tag: [], text: "", subflows: false, unit: "auto"},
  status: {live: true}};
window.__kernel = (msg) => {
  if (msg.kind === "page") {
    window.__emit({kind: "page", gen: msg.gen, start: msg.start, rows: rowsAt(msg.start, msg.count)});
  } else if (msg.kind === "open") {
    window.__emit({kind: "run", id: msg.id, seq: 1, snapshot: {
      run: {id: msg.id, name: "run-3", flow_name: "etl", state_type: "FAILED", state_name: "Failed",
            start: NOW, end: NOW + 1500, message: "ValueError: boom"},
      task_columns: ["id", "task_name", "name", "state_type", "state_name", "start", "end",
                     "attempts", "parent", "depth", "error", "kind"],
      tasks: [["t1", "load", "load-0", "FAILED", "Failed", NOW, NOW + 10, [], null, 0, "ValueError: boom", "task"]],
      transitions: [], logs: [], counts: {Failed: 1}, now: NOW + 1500, total: 1, edges: []}});
  }
};
window.__onSave = () => {
  const f = window.__model.get("filters");
  matching = pick(f);
  window.__model.set("total", matching ? matching.length : TOTAL);
  window.__model.set("head", rowsAt(0, 200));
  window.__model.set("generation", window.__model.get("generation") + 1);
};
"""


@pytest.fixture
def history_page(
    browser: Any, widget_server: str, request: pytest.FixtureRequest
) -> Iterator[Page]:
    script = (
        KERNEL.replace("__COLUMNS__", json.dumps(COLUMNS))
        .replace("__TOTAL__", str(100_000))
        .replace("__EVIL__", json.dumps(EVIL))
    )
    with widget_page(
        browser, widget_server, request.node.name, "browser.html", script, (1100, 900)
    ) as pg:
        yield pg


def rows_in_dom(pg: Page) -> int:
    return int(pg.evaluate("document.getElementById('root').dataset.rows"))


def test_100000_runs_keep_the_dom_bounded_while_scrolling(history_page: Page):
    pg = history_page
    expect(pg.locator(".onb-bcount")).to_have_text("100,000 runs")
    first = rows_in_dom(pg)
    assert 0 < first < 40
    viewport = pg.locator(".onb-bviewport")
    assert viewport.evaluate("v => v.scrollHeight") == 100_000 * 30
    for target in (50_000, 99_990, 12_345):
        viewport.evaluate(f"v => v.scrollTop = {target} * 30")
        expect(pg.locator(f'.onb-bitem[data-name="run-{target}"]')).to_be_visible()
        assert rows_in_dom(pg) < 40
    # pages were asked for as they came into view, not the whole history
    pages = pg.evaluate("window.__sent.filter(m => m.kind === 'page').length")
    assert 0 < pages < 10


def test_filters_change_the_rows(history_page: Page):
    pg = history_page
    pg.click('.onb-chip[data-state="FAILED"]')
    expect(pg.locator(".onb-bcount")).to_have_text(f"{100_000 // 7 + 1:,} runs")
    states = pg.locator(".onb-bitem").evaluate_all("rows => rows.map(r => r.dataset.state)")
    assert states and set(states) == {"Failed"}
    assert pg.evaluate("window.__model.get('filters').state") == ["FAILED"]
    expect(pg.locator('.onb-chip[data-state="FAILED"]')).to_have_attribute("aria-pressed", "true")
    pg.fill(".onb-f-text", "run-10")
    expect(pg.locator(".onb-bitem").first).to_have_attribute("data-name", "run-10")
    assert pg.evaluate("window.__model.get('filters').text") == "run-10"


def test_user_text_is_text_and_no_dialog_opens(history_page: Page):
    pg = history_page
    row = pg.locator('.onb-bitem[data-id="id-5"]')
    expect(row.locator(".onb-bname")).to_have_text(EVIL)
    assert pg.locator(".onb-browser img").count() == 0
    pg.wait_for_timeout(200)
    assert pg.dialogs == []  # type: ignore[attr-defined]


def test_opening_a_run_shows_its_runview_and_back_returns_to_the_list(history_page: Page):
    pg = history_page
    pg.locator('.onb-bitem[data-id="id-3"]').click()
    detail = pg.locator(".onb-bdetail")
    expect(detail.locator(".onb-run-state")).to_have_text("Failed")
    expect(detail.locator(".onb-message")).to_have_text("ValueError: boom")
    expect(pg.locator(".onb-blistview")).to_be_hidden()
    pg.click(".onb-back")
    expect(pg.locator(".onb-blistview")).to_be_visible()
    assert pg.evaluate("window.__sent.filter(m => m.kind === 'close-run').length") == 1


def test_a_chart_bar_narrows_the_list_to_its_hour(history_page: Page):
    pg = history_page
    bars = pg.locator("g.onb-cbar")
    expect(bars).to_have_count(2)
    bars.first.locator("rect.onb-chit").click()
    f = pg.evaluate("window.__model.get('filters')")
    assert f["until"] - f["since"] == 3_600_000
    bars = pg.locator("g.onb-cbar")
    bars.first.locator("rect.onb-chit").click()
    f = pg.evaluate("window.__model.get('filters')")
    assert f["since"] is None and f["until"] is None
