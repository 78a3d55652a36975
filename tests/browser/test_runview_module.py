"""The RunView front-end in a real browser with a small fake anywidget model (fast layer)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

import orion_nb
from orion_nb import flow, task
from orion_nb.notebook.model import TASK_COLUMNS
from orion_nb.notebook.views import model_for

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
NOW = 1_764_000_000_000.0


def row(
    i,
    name=None,
    task="step",
    state="Completed",
    stype="COMPLETED",
    attempts=None,
    parent=None,
    depth=0,
    error=None,
    kind="task",
):
    start = NOW + i * 10
    end = None if stype == "RUNNING" else start + 50
    attempts = attempts if attempts is not None else [[start, end, stype]]
    return [
        f"id-{i}",
        task,
        name or f"{task}-{i}",
        stype,
        state,
        start,
        end,
        attempts,
        parent,
        depth,
        error,
        kind,
    ]


def snapshot(rows, state="Running", stype="RUNNING", counts=None, transitions=None, logs=None):
    if counts is None:
        counts = {}
        for r in rows:
            if r[-1] == "task":
                counts[r[4]] = counts.get(r[4], 0) + 1
    return {
        "run": {
            "id": "run-1",
            "name": "swift-otter",
            "flow_name": "etl",
            "state_type": stype,
            "state_name": state,
            "start": NOW - 1000,
            "end": None if stype == "RUNNING" else NOW + 5000,
            "message": None,
        },
        "task_columns": TASK_COLUMNS,
        "tasks": rows,
        "transitions": transitions or [],
        "logs": logs or [],
        "counts": counts,
        "now": NOW + 6000,
        "total": sum(1 for r in rows if r[-1] == "task"),
    }


def set_all(page, snap):
    page.evaluate("(s) => window.__setAll(s)", snap)


def test_header_state_badge_and_elapsed(page):
    set_all(page, snapshot([row(i) for i in range(3)]))
    badge = page.locator(".onb-header .onb-badge")
    expect(badge).to_have_text("Running")
    expect(badge).to_have_attribute("data-state", "Running")
    expect(page.locator(".onb-flow-name")).to_have_text("etl")
    expect(page.locator(".onb-run-name")).to_have_text("swift-otter")
    snap = snapshot([row(i) for i in range(3)], state="Completed", stype="COMPLETED")
    set_all(page, snap)
    expect(badge).to_have_text("Completed")
    expect(page.locator(".onb-elapsed")).to_have_text("6.0 s")
    expect(page.locator(".onb-total")).to_have_text("3 task runs")


def test_running_clock_ticks(page):
    snap = snapshot([row(0, state="Running", stype="RUNNING")])
    snap["run"]["start"] = time.time() * 1000 - 3000
    snap["now"] = time.time() * 1000
    set_all(page, snap)
    first = page.locator(".onb-elapsed").inner_text()
    page.wait_for_timeout(2100)
    assert page.locator(".onb-elapsed").inner_text() != first


def test_counts_and_groups(page):
    rows = [row(i, task="extract") for i in range(4)] + [
        row(10 + i, task="load", state="Failed", stype="FAILED", error="ValueError: x")
        for i in range(2)
    ]
    set_all(page, snapshot(rows))
    expect(page.locator(".onb-counts [data-state='Completed']")).to_have_text("Completed 4")
    expect(page.locator(".onb-counts [data-state='Failed']")).to_have_text("Failed 2")
    groups = page.locator("tr.onb-group")
    expect(groups).to_have_count(2)
    expect(page.locator("tr.onb-group[data-task='load'] .onb-num")).to_have_text("2")


def test_one_bar_per_task_run_and_one_rect_per_attempt(page):
    rows = [row(i) for i in range(49)]
    a = NOW + 700
    rows.append(
        row(
            99,
            name="flaky-0",
            attempts=[
                [a, a + 10, "FAILED"],
                [a + 20, a + 30, "FAILED"],
                [a + 40, a + 60, "COMPLETED"],
            ],
        )
    )
    set_all(page, snapshot(rows))
    expect(page.locator("g.onb-run")).to_have_count(50)
    expect(page.locator("g.onb-run[data-name='flaky-0'] rect.onb-bar")).to_have_count(3)


def test_subflows_are_nested(page):
    rows = [
        row(0, task="child", name="child-0", kind="flow"),
        row(1, parent="id-0", depth=1),
        row(2),
    ]
    set_all(page, snapshot(rows))
    expect(page.locator("g.onb-subflow")).to_have_count(1)
    expect(page.locator("g.onb-run")).to_have_count(2)
    names = page.locator(".onb-svg g[data-name]").evaluate_all("gs => gs.map(g => g.dataset.name)")
    assert names.index("child-0") + 1 == names.index("step-1")  # the subflow's task sits under it


def test_ten_thousand_runs_stay_virtualised(page):
    rows = [row(i) for i in range(10_000)]
    set_all(page, snapshot(rows))
    expect(page.locator(".onb-timeline")).to_have_attribute("data-runs", "10000")
    expect(page.locator(".onb-timeline canvas")).to_have_count(1)
    assert page.locator("g.onb-run").count() == 0
    page.locator("tr.onb-group").first.click()
    vlist = page.locator(".onb-vlist")
    expect(vlist).to_be_visible()
    assert page.locator(".onb-vrow").count() < 200
    vlist.evaluate(
        "el => { el.scrollTop = el.scrollHeight; el.dispatchEvent(new Event('scroll')); }"
    )
    expect(page.locator(".onb-vrow[data-name='step-9999']")).to_be_visible()
    assert page.locator(".onb-vrow").count() < 200


def test_user_text_is_never_html(page):
    evil = "<img src=x onerror=alert(1)>"
    rows = [row(0, name=evil, task=evil, state="Failed", stype="FAILED", error="<b>boom</b>")]
    transitions = [
        {
            "ts": NOW,
            "run": evil,
            "kind": "task",
            "from": "Running",
            "to": "Failed",
            "type": "FAILED",
            "rule": None,
            "message": "<script>x()</script>",
        }
    ]
    logs = [{"ts": NOW, "level": "INFO", "run": evil, "message": "<img src=y onerror=alert(2)>"}]
    snap = snapshot(rows, transitions=transitions, logs=logs)
    snap["run"]["name"] = evil
    set_all(page, snap)
    expect(page.locator(".onb-run-name")).to_have_text(evil)
    expect(page.locator("tr.onb-group .onb-group-name")).to_have_text("▸" + evil)
    page.locator(".onb-error summary").click()
    expect(page.locator(".onb-error-text")).to_have_text("<b>boom</b>")
    page.locator("button[data-tab='logs']").click()
    expect(page.locator(".onb-logmsg")).to_have_text("<img src=y onerror=alert(2)>")
    page.locator("button[data-tab='transitions']").click()
    expect(page.locator(".onb-reason")).to_have_text("<script>x()</script>")
    assert page.locator("#root img, #root b, #root script").count() == 0
    page.wait_for_timeout(200)
    assert page.dialogs == []


def test_transition_log_shows_rule_and_reason(page):
    transitions = [
        {
            "ts": NOW,
            "run": "flaky-0",
            "kind": "task",
            "from": "Running",
            "to": "AwaitingRetry",
            "type": "SCHEDULED",
            "rule": "RetryFailedRuns",
            "message": "RetryFailedRuns: attempt 1 of 3 failed (ValueError: x); attempt 2 in 0.5 s",
        },
    ]
    set_all(page, snapshot([row(0)], transitions=transitions))
    page.locator("button[data-tab='transitions']").click()
    expect(page.locator(".onb-transition .onb-rule")).to_have_text("RetryFailedRuns")
    expect(page.locator(".onb-transition .onb-reason")).to_contain_text("attempt 2 in 0.5 s")
    expect(page.locator(".onb-transition .onb-badge")).to_have_attribute(
        "data-state", "AwaitingRetry"
    )


def test_bursts_of_updates_are_coalesced(page):
    page.evaluate(
        """() => { for (let i = 0; i < 100; i++) { window.__model.set('total', i); window.__model.set('now', i); } }"""
    )
    page.wait_for_timeout(300)
    renders = int(page.locator("#root").get_attribute("data-renders"))
    assert renders < 10, renders


def test_removing_the_view_stops_its_timer(page):
    page.evaluate("window.__cleanup()")
    before = int(page.locator("#root").get_attribute("data-renders"))
    page.evaluate("window.__model.set('total', 5)")
    page.wait_for_timeout(200)
    assert int(page.locator("#root").get_attribute("data-renders")) == before


def test_realistic_run_screenshot(page):
    """A real flow's recorded history, rebuilt and rendered: the picture in the docs."""

    @task(retries=2, retry_delay_seconds=0.01)
    def fetch(i):
        time.sleep(0.002 * (i % 5))
        fetch.tries[i] = fetch.tries.get(i, 0) + 1  # type: ignore[attr-defined]
        if i % 7 == 3 and fetch.tries[i] < 2:  # type: ignore[attr-defined]
            raise ConnectionError(f"page {i}: connection reset")
        return i

    fetch.tries = {}  # type: ignore[attr-defined]

    @task
    def parse(x):
        time.sleep(0.003)
        if x == 17:
            raise ValueError("row 17: missing column 'price'")
        return x

    @flow(name="report")
    def report(items):
        orion_nb.get_run_logger().info("building report for %d items", len(items))
        return sum(items)

    @flow(name="etl")
    def etl():
        pages = fetch.map(range(24))
        parsed = [parse(p.result(), return_state=True) for p in pages]
        return report([s.result() for s in parsed if s.is_completed()])

    etl()
    snap = model_for("etl").snapshot()
    set_all(page, snap)
    expect(page.locator(".onb-header .onb-badge")).to_have_text("Completed")
    expect(page.locator("g.onb-run")).to_have_count(48)
    page.add_style_tag(content=".onb-panels { max-height: none !important; }")
    # the picture in docs/index.md is a copy of this artifact
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".onb-runview").screenshot(path=str(ARTIFACTS / "runview.png"))
