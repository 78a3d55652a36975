"""The RunView front-end (extensions/runview.js) in real Chromium with a fake anywidget model.

Each test pushes snapshots shaped like the engine's (the trait contract in
``orion_nb/notebook/widget.py``) through ``model.set`` and asserts on what a user sees.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
DOCS_IMAGE = ROOT / "docs" / "img" / "runview.png"
NOW = 1_764_000_000_000.0  # epoch ms
COLUMNS = [
    "id",
    "task_name",
    "name",
    "state_type",
    "state_name",
    "start",
    "end",
    "attempts",
    "parent",
    "depth",
    "error",
    "kind",
]
EVIL = "<img src=x onerror=alert(1)>"
NOT_STARTED = ("PENDING", "SCHEDULED")
NO_VALUE = "\u2013"  # the en dash the widget shows where there is nothing (no previous state)


def task_row(
    i: int,
    *,
    task: str = "step",
    name: str | None = None,
    state: str = "Completed",
    stype: str = "COMPLETED",
    duration: float = 50.0,
    attempts: list[list[Any]] | None = None,
    parent: str | None = None,
    depth: int = 0,
    error: str | None = None,
    kind: str = "task",
) -> list[Any]:
    """A row in ``COLUMNS`` order; run ``i`` starts ``10 * i`` ms after ``NOW``."""
    start = None if stype in NOT_STARTED else NOW + i * 10
    end = None if stype in (*NOT_STARTED, "RUNNING") or start is None else start + duration
    if attempts is None:
        attempts = [] if start is None else [[start, end, stype]]
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


def snapshot(
    rows: list[list[Any]],
    *,
    state: str = "Running",
    stype: str = "RUNNING",
    start: float = NOW - 1000,
    end: float | None = None,
    now: float = NOW + 6000,
    transitions: list[dict[str, Any]] | None = None,
    logs: list[dict[str, Any]] | None = None,
    message: str | None = None,
    name: str = "swift-otter",
) -> dict[str, Any]:
    """A whole widget state, with counts and total computed from the task rows."""
    counts: dict[str, int] = {}
    for r in rows:
        if r[11] == "task":
            counts[r[4]] = counts.get(r[4], 0) + 1
    return {
        "run": {
            "id": "run-1",
            "name": name,
            "flow_name": "etl",
            "state_type": stype,
            "state_name": state,
            "start": start,
            "end": end,
            "message": message,
        },
        "task_columns": COLUMNS,
        "tasks": rows,
        "transitions": transitions or [],
        "logs": logs or [],
        "counts": counts,
        "now": now,
        "total": sum(counts.values()),
    }


def transition(run: str, frm: str | None, to: str, stype: str, rule=None, message=None, ts=NOW):
    return {
        "ts": ts,
        "run": run,
        "kind": "task",
        "from": frm,
        "to": to,
        "type": stype,
        "rule": rule,
        "message": message,
    }


def push(page: Page, snap: dict[str, Any]) -> None:
    """What the kernel does: set every trait (each ``set`` fires its change event)."""
    page.evaluate("(s) => window.__setAll(s)", snap)


def renders(page: Page) -> int:
    return int(page.locator("#root").get_attribute("data-renders") or "0")


# --- header ------------------------------------------------------------------------------------


def test_header_shows_run_state_then_completion(page: Page):
    push(page, snapshot([task_row(i) for i in range(3)]))
    state = page.locator(".onb-header .onb-run-state")
    expect(state).to_have_text("Running")
    expect(state).to_have_attribute("data-state", "Running")
    expect(state).to_have_class("onb-badge onb-run-state onb-st-running")
    expect(page.locator(".onb-flow-name")).to_have_text("etl")
    expect(page.locator(".onb-run-name")).to_have_text("swift-otter")
    expect(page.locator(".onb-total")).to_have_text("3 task runs")
    expect(page.locator("#root")).to_have_attribute("data-clock", "ticking")

    finished = snapshot([task_row(i) for i in range(3)], state="Completed", stype="COMPLETED")
    page.evaluate("(run) => window.__model.set('run', run)", {**finished["run"], "end": NOW + 5000})
    expect(state).to_have_text("Completed")
    expect(state).to_have_attribute("data-state", "Completed")
    expect(page.locator(".onb-elapsed")).to_have_text("6.0 s")  # end - start
    expect(page.locator("#root")).to_have_attribute("data-clock", "stopped")


def test_elapsed_clock_ticks_while_running(page: Page):
    snap = snapshot([task_row(0, state="Running", stype="RUNNING")])
    page.evaluate(
        """(s) => {
            const t = Date.now();
            s.run.start = t - 3000;
            s.now = t;
            window.__setAll(s);
        }""",
        snap,
    )
    elapsed = page.locator(".onb-elapsed")
    expect(elapsed).to_have_text("3.0 s")
    expect(elapsed).to_have_text("4.0 s", timeout=2500)  # ticks between kernel updates
    expect(elapsed).to_have_text("5.0 s", timeout=2500)


def test_long_runs_read_in_minutes(page: Page):
    rows = [task_row(0)]
    snap = snapshot(rows, state="Failed", stype="FAILED", start=NOW, end=NOW + 123_000)
    snap["run"]["message"] = "1 of 1 task runs failed"
    push(page, snap)
    expect(page.locator(".onb-elapsed")).to_have_text("2 min 3 s")
    expect(page.locator(".onb-message")).to_have_text("1 of 1 task runs failed")


# --- counts and the group table ---------------------------------------------------------------


def test_count_badges_and_group_rows_match_the_runs(page: Page):
    rows = (
        [task_row(i, task="extract") for i in range(4)]
        + [task_row(10 + i, task="load", state="Failed", stype="FAILED") for i in range(2)]
        + [task_row(20, task="load", state="Running", stype="RUNNING")]
        + [task_row(30, task="load", state="Cached")]
    )
    push(page, snapshot(rows))
    counts = page.locator(".onb-counts .onb-badge")
    expect(counts).to_have_text(["Running 1", "Completed 4", "Cached 1", "Failed 2"])
    expect(page.locator(".onb-counts [data-state='Failed']")).to_have_text("Failed 2")

    groups = page.locator("tr.onb-group")
    expect(groups).to_have_count(2)
    expect(groups.locator(".onb-group-label")).to_have_text(["extract", "load"])
    load = page.locator("tr.onb-group[data-task='load']")
    expect(load.locator(".onb-group-runs")).to_have_text("4")
    expect(load.locator(".onb-badge")).to_have_text(["Running 1", "Cached 1", "Failed 2"])
    expect(load.locator(".onb-progress-text")).to_have_text("3/4")  # finished of all
    expect(page.locator("tr.onb-group[data-task='extract'] .onb-progress-text")).to_have_text("4/4")
    # the progress bar is split by state, in proportion
    widths = load.locator(".onb-progress-seg").evaluate_all(
        "segs => segs.map(s => [s.className, s.style.width])"
    )
    assert widths == [
        ["onb-progress-seg onb-st-cached", "25%"],
        ["onb-progress-seg onb-st-failed", "50%"],
        ["onb-progress-seg onb-st-running", "25%"],
    ]


def test_a_failed_runs_error_shows_when_its_group_is_expanded(page: Page):
    error = 'ValueError: bad row 17\n  File "etl.py", line 12, in transform\n    raise ValueError'
    rows = [task_row(i, task="transform") for i in range(5)]
    rows.append(task_row(5, task="transform", state="Failed", stype="FAILED", error=error))
    push(page, snapshot(rows))
    expect(page.locator(".onb-error-text")).to_have_count(0)
    group = page.locator("tr.onb-group[data-task='transform']")
    group.click()
    expect(group).to_have_attribute("aria-expanded", "true")
    items = page.locator(".onb-vitem")
    expect(items).to_have_count(6)
    failed = page.locator(".onb-vitem[data-name='transform-5']")
    expect(failed.locator(".onb-badge")).to_have_text("Failed")
    text = failed.locator("pre.onb-error-text")
    expect(text).to_be_visible()
    expect(text).to_have_text(error)
    expect(page.locator(".onb-vitem[data-name='transform-0'] pre")).to_have_count(0)
    # a later update keeps the group open
    push(page, snapshot([*rows, task_row(6, task="transform")]))
    expect(items).to_have_count(7)
    group.click()
    expect(page.locator(".onb-vlist")).to_have_count(0)


def test_run_rows_show_duration_and_attempts(page: Page):
    a = NOW + 100
    retried = task_row(
        1,
        task="fetch",
        attempts=[
            [a, a + 200, "FAILED"],
            [a + 700, a + 900, "FAILED"],
            [a + 1400, a + 2600, "COMPLETED"],
        ],
    )
    retried[5], retried[6] = a, a + 2600
    push(page, snapshot([task_row(0, task="fetch", duration=350), retried]))
    page.locator("tr.onb-group[data-task='fetch']").click()
    first = page.locator(".onb-vitem[data-name='fetch-0'] .onb-vrow")
    expect(first.locator(".onb-vdur")).to_have_text("350 ms")
    expect(first.locator(".onb-vtries")).to_have_text("1")
    second = page.locator(".onb-vitem[data-name='fetch-1'] .onb-vrow")
    expect(second.locator(".onb-vdur")).to_have_text("2.6 s")
    expect(second.locator(".onb-vtries")).to_have_text("3")
    expect(second.locator(".onb-vstart")).to_have_text("+1.1 s")  # after the flow started


# --- timeline ----------------------------------------------------------------------------------


def test_timeline_has_one_bar_per_run_and_one_segment_per_attempt(page: Page):
    rows = [task_row(i) for i in range(49)]
    a = NOW + 700
    rows.append(
        task_row(
            99,
            name="flaky-0",
            attempts=[
                [a, a + 10, "FAILED"],
                [a + 20, a + 30, "FAILED"],
                [a + 40, a + 60, "COMPLETED"],
            ],
        )
    )
    push(page, snapshot(rows))
    expect(page.locator(".onb-timeline g.onb-run")).to_have_count(50)
    expect(page.locator(".onb-timeline")).to_have_attribute("data-runs", "50")
    bars = page.locator("g.onb-run[data-name='flaky-0'] rect.onb-bar")
    expect(bars).to_have_count(3)
    assert bars.evaluate_all("rs => rs.map(r => r.classList[1])") == [
        "onb-st-failed",
        "onb-st-failed",
        "onb-st-completed",
    ]
    # the attempts sit one after the other on the time axis
    xs = bars.evaluate_all("rs => rs.map(r => Number(r.getAttribute('x')))")
    assert xs == sorted(xs) and len(set(xs)) == 3
    expect(page.locator("g.onb-run[data-name='flaky-0'] > title")).to_contain_text("3 attempts")
    assert page.locator(".onb-timeline canvas").count() == 0


def test_timeline_rows_are_ordered_by_start(page: Page):
    rows = [task_row(i) for i in range(5)]
    rows[0][5] = NOW + 900  # started last
    rows[0][6] = NOW + 950
    rows[0][7] = [[NOW + 900, NOW + 950, "COMPLETED"]]
    push(page, snapshot(rows))
    expect(page.locator("g.onb-run")).to_have_count(5)  # drawn on the next animation frame
    names = page.locator("g.onb-run").evaluate_all("gs => gs.map(g => g.dataset.name)")
    assert names == ["step-1", "step-2", "step-3", "step-4", "step-0"]


def test_subflow_runs_are_nested_under_their_subflow(page: Page):
    rows = [
        task_row(0, task="extract"),
        task_row(1, task="publish", name="quiet-lynx", kind="flow"),
        task_row(2, task="load", parent="id-1", depth=1),
        task_row(3, task="load", parent="id-1", depth=1),
        task_row(4, task="extract"),  # starts after the subflow's tasks, still listed after them
    ]
    push(page, snapshot(rows))
    expect(page.locator("g.onb-subflow")).to_have_count(1)
    expect(page.locator("g.onb-run")).to_have_count(4)
    order = page.locator(".onb-svg g[data-name]").evaluate_all(
        "gs => gs.map(g => [g.dataset.name, Number(g.querySelector('text').getAttribute('x'))])"
    )
    assert [n for n, _ in order] == ["extract-0", "quiet-lynx", "load-2", "load-3", "extract-4"]
    indent = dict(order)
    assert indent["load-2"] > indent["quiet-lynx"] == indent["extract-0"]
    # the subflow folds and unfolds its runs
    page.locator("g.onb-subflow .onb-bar-label").click()
    expect(page.locator("g.onb-run")).to_have_count(2)
    page.locator("g.onb-subflow .onb-bar-label").click()
    expect(page.locator("g.onb-run")).to_have_count(4)
    # subflow runs are not task runs: not counted
    expect(page.locator(".onb-total")).to_have_text("4 task runs")


def test_ten_thousand_runs_stay_virtualised_and_use_a_canvas(page: Page):
    rows = [task_row(i) for i in range(10_000)]
    push(page, snapshot(rows))
    timeline = page.locator(".onb-timeline")
    expect(timeline).to_have_attribute("data-runs", "10000")
    expect(timeline.locator("canvas")).to_have_count(1)
    assert page.locator("g.onb-run").count() == 0
    page.locator("tr.onb-group[data-task='step']").click()
    vlist = page.locator(".onb-vlist")
    expect(vlist).to_be_visible()
    expect(page.locator(".onb-vitem[data-name='step-0']")).to_be_visible()
    assert page.locator(".onb-vitem").count() < 200
    assert page.locator(".onb-vitem[data-name='step-9999']").count() == 0
    vlist.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    last = page.locator(".onb-vitem[data-name='step-9999']")
    expect(last).to_be_visible()
    expect(last).to_be_in_viewport()
    assert page.locator(".onb-vitem").count() < 200
    assert page.locator(".onb-vitem[data-name='step-0']").count() == 0
    # the whole widget stays small: far fewer elements than runs
    assert page.evaluate("document.querySelectorAll('#root *').length") < 1000


# --- text is never markup ----------------------------------------------------------------------


def test_user_text_is_shown_literally_and_never_parsed_as_html(page: Page):
    rows = [
        task_row(0, name=EVIL, task=EVIL, state="Failed", stype="FAILED", error="<b>boom</b>"),
        task_row(1, task="ok", name="<svg onload=alert(3)>", kind="flow"),
    ]
    transitions = [
        transition(EVIL, "Running", "Failed", "FAILED", "<i>rule</i>", "<script>alert(4)</script>")
    ]
    logs = [
        {"ts": NOW, "level": "<u>INFO</u>", "run": EVIL, "message": "<img src=y onerror=alert(2)>"}
    ]
    snap = snapshot(
        rows, transitions=transitions, logs=logs, message=EVIL, state="Failed", stype="FAILED"
    )
    snap["run"]["name"] = EVIL
    snap["run"]["flow_name"] = "<h1>flow</h1>"
    snap["counts"] = {EVIL: 1}
    push(page, snap)

    expect(page.locator(".onb-run-name")).to_have_text(EVIL)
    expect(page.locator(".onb-flow-name")).to_have_text("<h1>flow</h1>")
    expect(page.locator(".onb-message")).to_have_text(EVIL)
    expect(page.locator(".onb-counts .onb-badge")).to_have_text(f"{EVIL} 1")
    expect(page.locator("tr.onb-group .onb-group-label").first).to_have_text(EVIL)
    expect(page.locator("g.onb-run .onb-bar-label")).to_have_text(EVIL)
    expect(page.locator("g.onb-subflow .onb-bar-label")).to_contain_text("<svg onload=alert(3)>")
    page.locator("tr.onb-group").first.click()
    expect(page.locator(".onb-vitem .onb-vname")).to_have_text(EVIL)
    expect(page.locator("pre.onb-error-text")).to_have_text("<b>boom</b>")
    page.locator("button[data-tab='transitions']").click()
    expect(page.locator(".onb-transition .onb-tname")).to_have_text(EVIL)
    expect(page.locator(".onb-decision")).to_have_text("<i>rule</i>: <script>alert(4)</script>")
    page.locator("button[data-tab='logs']").click()
    expect(page.locator(".onb-log .onb-logmsg")).to_have_text("<img src=y onerror=alert(2)>")
    expect(page.locator(".onb-log .onb-level")).to_have_text("<u>INFO</u>")
    expect(page.get_by_text(EVIL, exact=True).first).to_be_visible()

    injected = page.evaluate(
        """() => [...document.querySelectorAll('#root *')]
              .map(e => e.localName)
              .filter(n => ['img', 'b', 'i', 'u', 'h1', 'script'].includes(n))"""
    )
    assert injected == []
    # the only <svg> elements are the timeline's own two (axis and chart)
    page.locator("button[data-tab='overview']").click()
    assert page.locator("#root svg").count() == 2
    page.wait_for_timeout(200)
    assert page.dialogs == []  # type: ignore[attr-defined]


# --- transitions and logs ------------------------------------------------------------------------


def test_transition_log_shows_each_decision_with_rule_and_reason(page: Page):
    transitions = [
        transition("extract-3", None, "Pending", "PENDING", ts=NOW),
        transition("extract-3", "Pending", "Running", "RUNNING", ts=NOW + 10),
        transition(
            "extract-3",
            "Running",
            "AwaitingRetry",
            "SCHEDULED",
            "RetryFailedRuns",
            "attempt 1 of 3 failed (ConnectionError: reset); attempt 2 in 0.5 s",
            ts=NOW + 500,
        ),
    ]
    push(page, snapshot([task_row(0)], transitions=transitions))
    tab = page.locator("button[data-tab='transitions']")
    expect(tab.locator(".onb-tab-count")).to_have_text("3")
    tab.click()
    entries = page.locator(".onb-transition")
    expect(entries).to_have_count(3)
    newest = entries.last  # newest last
    expect(newest.locator(".onb-tname")).to_have_text("extract-3")
    expect(newest.locator(".onb-from")).to_have_text("Running")
    expect(newest.locator(".onb-badge")).to_have_text("AwaitingRetry")
    expect(newest.locator(".onb-badge")).to_have_class("onb-badge onb-st-awaitingretry")
    expect(newest.locator(".onb-rule")).to_have_text("RetryFailedRuns")
    expect(newest.locator(".onb-decision")).to_have_text(
        "RetryFailedRuns: attempt 1 of 3 failed (ConnectionError: reset); attempt 2 in 0.5 s"
    )
    expect(entries.first.locator(".onb-from")).to_have_text(NO_VALUE)

    # a reason that already names its rule does not repeat it
    again = [*transitions, transition("x", "Running", "Failed", "FAILED", "R", "R: why", NOW + 600)]
    page.evaluate("(t) => window.__model.set('transitions', t)", again)
    expect(entries).to_have_count(4)
    expect(entries.last.locator(".onb-decision")).to_have_text("R: why")


def test_transition_and_log_panels_are_capped_and_follow_the_newest(page: Page):
    many = [transition(f"t-{i}", "Pending", "Running", "RUNNING", ts=NOW + i) for i in range(650)]
    logs = [
        {"ts": NOW + i, "level": "INFO", "run": "etl", "message": f"line {i}"} for i in range(700)
    ]
    push(page, snapshot([task_row(0)], transitions=many, logs=logs))
    page.locator("button[data-tab='transitions']").click()
    expect(page.locator(".onb-transition")).to_have_count(500)
    expect(page.locator(".onb-transition").last).to_be_in_viewport()
    expect(page.locator(".onb-transition").first.locator(".onb-tname")).to_have_text("t-150")
    page.locator("button[data-tab='logs']").click()
    logs_panel = page.locator(".onb-panel-logs")
    expect(page.locator(".onb-log")).to_have_count(500)
    expect(page.locator(".onb-log").last.locator(".onb-logmsg")).to_have_text("line 699")
    expect(page.locator(".onb-log").last).to_be_in_viewport()
    # new records append (the oldest drop) and the panel stays on the newest
    more = [*logs[1:], {"ts": NOW + 700, "level": "WARNING", "run": "etl", "message": "line 700"}]
    page.evaluate("(l) => window.__model.set('logs', l)", more)
    expect(page.locator(".onb-log").last.locator(".onb-logmsg")).to_have_text("line 700")
    expect(page.locator(".onb-log").last).to_be_in_viewport()
    expect(page.locator(".onb-log").last).to_have_class("onb-log onb-log-warning")
    expect(page.locator(".onb-log")).to_have_count(500)
    # the widget stays compact: the panel scrolls inside it
    assert logs_panel.evaluate("p => p.scrollHeight > p.clientHeight")
    assert page.locator(".onb-runview").bounding_box()["height"] <= 420


# --- rendering discipline ------------------------------------------------------------------------


def test_a_burst_of_updates_is_drawn_in_few_frames(page: Page):
    push(page, snapshot([task_row(i) for i in range(200)]))
    page.evaluate("window.__frames(2)")
    before = renders(page)
    page.evaluate(
        """() => {
            for (let i = 0; i < 100; i++) {
                window.__model.set('total', i);
                window.__model.set('now', 1764000006000 + i);
            }
        }"""
    )
    page.evaluate("window.__frames(3)")
    expect(page.locator(".onb-total")).to_have_text("99 task runs")
    assert renders(page) - before <= 2


def test_removing_the_view_stops_its_clock_and_listeners(page: Page):
    push(page, snapshot([task_row(0, state="Running", stype="RUNNING")]))
    expect(page.locator("#root")).to_have_attribute("data-clock", "ticking")
    page.evaluate("window.__cleanup()")
    expect(page.locator("#root")).to_have_attribute("data-clock", "stopped")
    before = renders(page)
    text = page.locator(".onb-elapsed").inner_text()
    page.evaluate("window.__model.set('total', 5)")
    page.wait_for_timeout(1300)
    assert renders(page) == before
    assert page.locator(".onb-elapsed").inner_text() == text


# --- themes and the picture in the docs -------------------------------------------------------------


def test_dark_theme_uses_the_dark_palette(page: Page):
    push(page, realistic_run())
    segment = page.locator("tr.onb-group[data-task='extract'] .onb-progress-seg")
    bar = page.locator("g.onb-run[data-name='extract-0'] rect.onb-bar")
    expect(segment).to_have_css("background-color", "rgb(26, 127, 55)")
    expect(bar).to_have_css("fill", "rgb(26, 127, 55)")
    page.evaluate("document.body.dataset.jpThemeLight = 'false'")
    expect(segment).to_have_css("background-color", "rgb(63, 185, 80)")
    expect(bar).to_have_css("fill", "rgb(63, 185, 80)")
    background = page.locator(".onb-runview").evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(30, 30, 30)"  # follows --jp-layout-color1


def test_realistic_run_screenshot(page: Page):
    """About 50 task runs of three tasks, retries, a failure, a subflow: the docs picture."""
    snap = realistic_run()
    push(page, snap)
    expect(page.locator(".onb-header .onb-run-state")).to_have_text("Running")
    expect(page.locator("g.onb-run")).to_have_count(50)
    expect(page.locator("g.onb-subflow")).to_have_count(1)
    expect(page.locator(".onb-counts [data-state='Failed']")).to_have_text("Failed 1")
    page.locator("tr.onb-group[data-task='transform']").click()
    expect(page.locator("pre.onb-error-text")).to_be_visible()
    page.locator("tr.onb-group[data-task='transform']").click()
    expect(page.locator("pre.onb-error-text")).to_have_count(0)
    # the docs show the whole timeline; in a notebook the panel scrolls at 290 px
    page.add_style_tag(content=".onb-panel { max-height: none; }")
    page.mouse.move(0, 0)
    page.evaluate("window.__frames(2)")
    DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    page.locator(".onb-runview").screenshot(path=str(DOCS_IMAGE), animations="disabled")


# --- a realistic run -------------------------------------------------------------------------------


def realistic_run() -> dict[str, Any]:
    """A snapshot of ``etl`` near its end: 20 extract, 20 transform, a ``publish`` subflow with
    10 load runs; some extracts retried, one transform failed, one cached, loads still going."""
    rng = random.Random(7)
    t0 = NOW
    specs: list[dict[str, Any]] = []
    slots = [t0 + 40.0 * k for k in range(4)]  # four workers

    def schedule(task: str, i: int, ready: float, durations: list[float], **extra: Any):
        slot = min(range(4), key=lambda k: slots[k])
        start = max(slots[slot], ready)
        attempts = []
        for j, d in enumerate(durations):
            attempts.append([start, start + d])
            start += d + (400.0 if j < len(durations) - 1 else 0.0)
        slots[slot] = attempts[-1][1] + 15
        spec = {"task": task, "name": f"{task}-{i}", "attempts": attempts, **extra}
        specs.append(spec)
        return spec

    extracts = []
    for i in range(20):
        tries = 3 if i == 11 else 2 if i in (3, 16) else 1
        durations = [rng.uniform(250, 650) for _ in range(tries)]
        extracts.append(schedule("extract", i, t0, durations))
    transforms = []
    for i in range(20):
        ready = extracts[i]["attempts"][-1][1]
        if i == 7:
            transforms.append(schedule("transform", i, ready, [6.0], final="Cached"))
        elif i == 13:
            error = (
                "Traceback (most recent call last):\n"
                '  File "etl.ipynb", cell 4, line 18, in transform\n'
                "    price = float(row['price'])\n"
                "ValueError: could not convert string to float: 'n/a' (order 1743)"
            )
            transforms.append(schedule("transform", i, ready, [210.0], final="Failed", error=error))
        else:
            transforms.append(schedule("transform", i, ready, [rng.uniform(120, 380)]))
    sub_start = max(s["attempts"][-1][1] for s in transforms) + 30
    subflow_id = "flow-publish"
    slots[:] = [sub_start + 10 * k for k in range(4)]
    loads = []
    for i in range(10):
        tries = 2 if i == 2 else 1
        durations = [rng.uniform(300, 700) for _ in range(tries)]
        loads.append(schedule("load", i, sub_start, durations, parent=subflow_id, depth=1))
    now = loads[5]["attempts"][0][0] + 260  # mid-way through the loads

    rows: list[list[Any]] = []
    transitions: list[dict[str, Any]] = []
    errors = {
        "extract": "ConnectionError: page {i}: connection reset by peer",
        "load": "TimeoutError: warehouse did not answer within 0.5 s",
    }

    def t(ts: float, run: str, frm, to: str, stype: str, rule=None, msg=None, kind="task"):
        if ts <= now:
            transitions.append(
                {
                    "ts": ts,
                    "run": run,
                    "kind": kind,
                    "from": frm,
                    "to": to,
                    "type": stype,
                    "rule": rule,
                    "message": msg,
                }
            )

    t(t0 - 5, "swift-otter", None, "Pending", "PENDING", kind="flow")
    t(t0, "swift-otter", "Pending", "Running", "RUNNING", kind="flow")
    sub_row = [
        "flow-publish",
        "publish",
        "quiet-lynx",
        "RUNNING",
        "Running",
        sub_start,
        None,
        [[sub_start, None, "RUNNING"]],
        None,
        0,
        None,
        "flow",
    ]
    for k, spec in enumerate(specs):
        if spec is loads[0]:
            rows.append(sub_row)
            t(sub_start, "quiet-lynx", "Pending", "Running", "RUNNING", kind="flow")
        name = spec["name"]
        i = int(name.rsplit("-", 1)[1])
        final = spec.get("final", "Completed")
        n = len(spec["attempts"])
        attempts: list[list[Any]] = []
        state, stype, end, error = "Pending", "PENDING", None, None
        t(spec["attempts"][0][0] - 30, name, None, "Pending", "PENDING")
        if final == "Cached":
            s, e = spec["attempts"][0]
            if s <= now:
                state, stype, end = "Cached", "COMPLETED", e
                attempts = [[s, e, "COMPLETED"]]
                t(
                    s,
                    name,
                    "Pending",
                    "Cached",
                    "COMPLETED",
                    "CacheRetrieval",
                    "cache hit for key 3f9a1c7e02b4 from run 9c1d2e3f (never expires)",
                )
        for j, (s, e) in enumerate(spec["attempts"]):
            if final == "Cached" or s > now:
                break
            running = "Running" if j == 0 else "Retrying"
            t(s, name, "Pending" if j == 0 else "AwaitingRetry", running, "RUNNING")
            if e > now:
                attempts.append([s, None, "RUNNING"])
                state, stype = running, "RUNNING"
                break
            if j < n - 1:
                attempts.append([s, e, "FAILED"])
                state, stype = "AwaitingRetry", "SCHEDULED"
                why = errors[spec["task"]].format(i=i)
                t(
                    e,
                    name,
                    running,
                    "AwaitingRetry",
                    "SCHEDULED",
                    "RetryFailedRuns",
                    f"attempt {j + 1} of {n} failed ({why}); attempt {j + 2} in 0.4 s",
                )
            elif final == "Failed":
                attempts.append([s, e, "FAILED"])
                state, stype, end, error = "Failed", "FAILED", e, spec["error"]
                t(e, name, running, "Failed", "FAILED", None, spec["error"].splitlines()[-1])
            else:
                attempts.append([s, e, "COMPLETED"])
                state, stype, end = "Completed", "COMPLETED", e
                t(e, name, running, "Completed", "COMPLETED")
        start = attempts[0][0] if attempts else None
        rows.append(
            [
                f"run-{k}",
                spec["task"],
                name,
                stype,
                state,
                start,
                end,
                attempts,
                spec.get("parent"),
                spec.get("depth", 0),
                error,
                "task",
            ]
        )
    transitions.sort(key=lambda x: x["ts"])
    logs = [
        {
            "ts": t0 + 2,
            "level": "INFO",
            "run": "swift-otter",
            "message": "extracting 20 pages from the orders API",
        },
        {
            "ts": extracts[3]["attempts"][0][1],
            "level": "WARNING",
            "run": "extract-3",
            "message": "connection reset by peer; retrying",
        },
        {
            "ts": transforms[13]["attempts"][0][1],
            "level": "ERROR",
            "run": "transform-13",
            "message": "order 1743: price is 'n/a'",
        },
        {
            "ts": sub_start + 1,
            "level": "INFO",
            "run": "quiet-lynx",
            "message": "publishing 19 partitions to the warehouse",
        },
    ]
    logs = [entry for entry in logs if entry["ts"] <= now]
    logs.sort(key=lambda x: x["ts"])
    return snapshot(rows, transitions=transitions, logs=logs, start=t0, now=now)
