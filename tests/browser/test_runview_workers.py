"""The RunView timeline grouped by worker (issue 9), in real Chromium with a fake model.

Runs on process or Dask workers carry a ``worker`` column (and each attempt its worker as a
4th item); the timeline then offers "Group by worker": one lane per worker, its runs' bars
side by side, sub-lanes where a worker ran several at once.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_runview_module import COLUMNS, NOW, push, snapshot, task_row

pytestmark = pytest.mark.browser

WORKER_COLUMNS = [*COLUMNS, "worker"]
A = "tcp://10.0.0.1:40001"
B = "tcp://10.0.0.2:40002"


def on(worker: str | None, row: list[Any]) -> list[Any]:
    """``row`` with its worker, which each attempt also carries."""
    row[7] = [[*a, worker] if worker else a for a in row[7]]
    return [*row, worker]


def sequential(n: int, workers: list[str]) -> list[list[Any]]:
    """``n`` runs of 100 ms, dealt to ``workers`` in turn, each worker's back to back."""
    rows = []
    for i in range(n):
        w = workers[i % len(workers)]
        slot = i // len(workers)
        row = task_row(i, duration=100.0)
        start = NOW + slot * 100.0
        row[5], row[6] = start, start + 100.0
        row[7] = [[start, start + 100.0, "COMPLETED"]]
        rows.append(on(w, row))
    return rows


def with_workers(rows: list[list[Any]]) -> dict[str, Any]:
    snap = snapshot(rows)
    snap["task_columns"] = WORKER_COLUMNS
    return snap


def test_runs_without_workers_offer_no_grouping(page: Page):
    push(page, snapshot([task_row(i) for i in range(3)]))
    expect(page.locator(".onb-run")).to_have_count(3)
    expect(page.locator(".onb-lane-toggle")).to_be_hidden()


def test_group_by_worker_draws_one_lane_per_worker(page: Page):
    push(page, with_workers(sequential(6, [A, B])))
    toggle = page.locator(".onb-lane-toggle")
    expect(toggle).to_be_visible()
    expect(page.locator(".onb-run")).to_have_count(6)  # by run until asked
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    lanes = page.locator(".onb-lane")
    expect(lanes).to_have_count(2)
    expect(lanes.nth(0)).to_have_attribute("data-worker", A)
    expect(lanes.nth(1)).to_have_attribute("data-worker", B)
    expect(lanes.nth(0).locator(".onb-bar-label")).to_have_text(A)
    expect(lanes.nth(0).locator(".onb-bar")).to_have_count(3)
    expect(lanes.nth(1).locator(".onb-bar")).to_have_count(3)
    tip = lanes.nth(0).locator(".onb-bar").first.locator("title")
    expect(tip).to_have_text(f"step-0 (step), attempt 1 on {A}: 100 ms")
    toggle.click()
    expect(page.locator(".onb-lane")).to_have_count(0)
    expect(page.locator(".onb-run")).to_have_count(6)


def test_a_worker_running_several_at_once_gets_sub_lanes(page: Page):
    rows = []
    for i in range(3):  # three overlapping runs on A (three threads), one on B
        row = task_row(i, duration=300.0)
        row[5], row[6] = NOW, NOW + 300.0
        row[7] = [[NOW, NOW + 300.0, "COMPLETED"]]
        rows.append(on(A, row))
    rows.append(on(B, task_row(3, duration=50.0)))
    push(page, with_workers(rows))
    page.locator(".onb-lane-toggle").click()
    lanes = page.locator(".onb-lane")
    expect(lanes).to_have_count(4)
    expect(page.locator(f'.onb-lane[data-worker="{A}"]')).to_have_count(3)
    expect(page.locator(f'.onb-lane[data-worker="{A}"] .onb-bar-label')).to_have_count(1)


def test_each_attempt_is_drawn_on_the_worker_that_ran_it(page: Page):
    row = task_row(0, state="Completed", stype="COMPLETED")
    row[7] = [[NOW, NOW + 50.0, "FAILED", A], [NOW + 80.0, NOW + 120.0, "COMPLETED", B]]
    row[5], row[6] = NOW, NOW + 120.0
    push(page, with_workers([[*row, B]]))
    page.locator(".onb-lane-toggle").click()
    expect(page.locator(f'.onb-lane[data-worker="{A}"] .onb-bar')).to_have_count(1)
    expect(page.locator(f'.onb-lane[data-worker="{B}"] .onb-bar')).to_have_count(1)
    expect(page.locator(f'.onb-lane[data-worker="{A}"] .onb-bar')).to_have_class(
        "onb-bar onb-st-failed"
    )


def test_worker_names_are_text_never_markup(page: Page):
    evil = "<img src=x onerror=alert(1)>"
    push(page, with_workers(sequential(2, [evil, "kernel-ish"])))
    page.locator(".onb-lane-toggle").click()
    expect(page.locator(".onb-lane").first.locator(".onb-bar-label")).to_have_text(evil)
    expect(page.locator(".onb-timeline img")).to_have_count(0)
    assert page.dialogs == []  # type: ignore[attr-defined]
