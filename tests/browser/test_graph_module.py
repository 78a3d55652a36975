"""RunView's Graph tab (extensions/graph.js, laid out by the vendored dagre) in real Chromium.

Rows and edges are pushed through the fake model as the kernel's snapshot and diffs would
carry them; the tests read where nodes were placed (``data-y``: a node's centre, larger is
lower) and what they say.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_runview_module import COLUMNS, EVIL, NOW

pytestmark = pytest.mark.browser


def row(
    rid: str,
    task: str,
    *,
    state: str = "Completed",
    name: str | None = None,
    parent: str | None = None,
    kind: str = "task",
) -> list[Any]:
    stype = {"Completed": "COMPLETED", "Failed": "FAILED", "Running": "RUNNING"}.get(
        state, "PENDING"
    )
    return [
        rid,
        task,
        name or f"{task}-{rid}",
        stype,
        state,
        NOW,
        NOW + 5,
        [],
        parent,
        0,
        None,
        kind,
    ]


def show(page: Page, rows: list[list[Any]], edges: list[list[str]]) -> None:
    page.evaluate(
        "(s) => window.__setAll(s)",
        {
            "run": {
                "id": "r",
                "name": "run",
                "flow_name": "flow",
                "state_type": "RUNNING",
                "state_name": "Running",
                "start": NOW,
                "end": None,
            },
            "task_columns": COLUMNS,
            "tasks": rows,
            "edges": edges,
            "total": len(rows),
            "counts": {},
            "now": NOW + 10,
            "transitions": [],
            "logs": [],
        },
    )
    page.click("button[data-tab=graph]")


def nodes(page: Page) -> dict[str, dict[str, Any]]:
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('g.onb-gnode')].map(g =>
             [g.dataset.label, {y: Number(g.dataset.y), x: Number(g.dataset.x),
              runs: Number(g.dataset.runs || 1), state: g.dataset.state || '',
              counts: g.dataset.counts ? JSON.parse(g.dataset.counts) : null}]))"""
    )


DIAMOND = [
    row("a", "A", name="A"),
    row("b", "B", name="B"),
    row("c", "C", name="C"),
    row("d", "D", name="D", state="Failed"),
]
DIAMOND_EDGES = [["b", "a", "x"], ["c", "a", "x"], ["d", "b", "x"], ["d", "c", "y"]]


def test_a_diamond_is_layered_top_to_bottom(page: Page):
    show(page, DIAMOND, DIAMOND_EDGES)
    expect(page.locator("g.onb-gnode")).to_have_count(4)
    n = nodes(page)
    assert n["A"]["y"] < n["B"]["y"] == n["C"]["y"] < n["D"]["y"]
    assert n["B"]["x"] != n["C"]["x"]
    assert n["D"]["state"] == "Failed"
    assert page.locator("path.onb-gedge").count() == 4


def test_1000_mapped_runs_are_one_node_with_counts_that_expands(page: Page):
    mapped = [
        row(f"m{i}", "M", state="Failed" if i % 10 == 0 else "Completed") for i in range(1000)
    ]
    show(page, DIAMOND + mapped, DIAMOND_EDGES + [[f"m{i}", "d", "v"] for i in range(1000)])
    expect(page.locator("g.onb-gnode")).to_have_count(5)
    m = nodes(page)["M"]
    assert m["runs"] == 1000 and m["counts"] == {"Failed": 100, "Completed": 900}
    assert m["y"] > nodes(page)["D"]["y"]
    page.locator("g.onb-ggroup").click()
    expect(page.locator("g.onb-gnode")).to_have_count(1004, timeout=30_000)
    page.locator('g.onb-gnode[data-label="M-m1"]').click()  # any run of the group folds it
    expect(page.locator("g.onb-gnode")).to_have_count(5)


def test_10000_task_runs_lay_out_a_handful_of_nodes(page: Page):
    rows = [row(f"t{i}", f"task{i % 8}") for i in range(10_000)]
    edges = [[f"t{i}", f"t{i - 8}", "x"] for i in range(8, 10_000)]
    show(page, rows, edges)
    expect(page.locator("g.onb-gnode")).to_have_count(8, timeout=30_000)
    assert sum(v["runs"] for v in nodes(page).values()) == 10_000


def test_subflows_are_boxes_and_the_graph_follows_live_state(page: Page):
    rows = [
        row("a", "A", name="A", state="Running"),
        row("s", "sub", name="sub-run", kind="flow"),
        row("s1", "S1", name="S1", parent="s"),
        row("s2", "S2", name="S2", parent="s"),
    ]
    show(page, rows, [["s", "a", "x"], ["s2", "s1", "y"]])
    expect(page.locator("g.onb-gcluster")).to_have_count(1)
    n = nodes(page)
    assert n["S1"]["y"] < n["S2"]["y"] and n["A"]["y"] < n["sub"]["y"]
    box = page.locator("g.onb-gcluster rect").bounding_box()
    inner = page.locator('g.onb-gnode[data-label="S2"]').bounding_box()
    assert box and inner and box["y"] < inner["y"] < box["y"] + box["height"]
    # a diff: A completes, a new task appears downstream
    page.evaluate(
        """(rows) => window.__emit({kind: 'diff', seq: 1, base: 0, tasks: rows,
             edges: [['e', 'a', 'z']], transitions: [], logs: [], counts: {}, total: 5, now: 0})""",
        [row("a", "A", name="A", state="Completed"), row("e", "E", name="E", state="Running")],
    )
    expect(page.locator('g.onb-gnode[data-label="A"]')).to_have_attribute("data-state", "Completed")
    expect(page.locator('g.onb-gnode[data-label="E"]')).to_have_attribute("data-state", "Running")
    assert nodes(page)["E"]["y"] > nodes(page)["A"]["y"]


def test_names_in_the_graph_are_text(page: Page):
    show(page, [row("a", "A", name=EVIL), row("b", EVIL, name="B")], [["b", "a", EVIL]])
    expect(page.locator("g.onb-gnode")).to_have_count(2)
    assert page.locator(".onb-graph img").count() == 0
    titles = page.evaluate(
        "[...document.querySelectorAll('.onb-graph title')].map(t => t.textContent)"
    )
    assert any(EVIL in t for t in titles)
    page.wait_for_timeout(200)
    assert page.dialogs == []  # type: ignore[attr-defined]
