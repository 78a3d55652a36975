"""The history browser's reads (orion_nb/store/browse.py) on a real SQLite file.

Runs are recorded by real flows; the tests read them back the way the widget does: a page of
the filtered list, its length, task counts per run, the chart's hourly counts, what changed
since a state id, and the edges of a run tree.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import orion_nb
from orion_nb import flow, history, tags, task
from orion_nb.notebook.browse_filters import parse_filters
from orion_nb.store import browse as q
from orion_nb.store.browse import COLUMNS, RunFilter

EVIL = "<img src=x onerror=alert(1)> 100%_' \" \\"


@task
def step(x: int) -> list[int]:
    return [x]


@task
def boom(x: list[int]) -> None:
    raise ValueError("boom")


@flow(name="etl")
def etl(n: int = 2) -> None:
    for i in range(n):
        step(i)


@flow(name="report")
def report() -> None:
    boom(step(1))


@flow(name="child")
def child() -> list[int]:
    return step(7)


@flow(name="parent")
def parent() -> None:
    child()


def read(fn, **kwargs):
    return history._read(fn, **kwargs)


def col(rows, name):
    return [r[COLUMNS.index(name)] for r in rows]


def test_page_is_newest_first_and_count_matches_the_filters():
    etl()
    with pytest.raises(ValueError):
        report()
    etl.with_options(flow_run_name=EVIL)()
    every = RunFilter()
    rows = read(q.page, f=every, offset=0, limit=10)
    assert col(rows, "flow_name") == ["etl", "report", "etl"]
    assert col(rows, "name")[0] == EVIL
    assert read(q.count, f=every) == 3
    created = col(rows, "created")
    assert created == sorted(created, reverse=True)
    assert all(isinstance(t, float) for t in created)
    failed = RunFilter(state=("Failed",))
    assert col(read(q.page, f=failed, offset=0, limit=10), "flow_name") == ["report"]
    assert read(q.count, f=RunFilter(state=("FAILED",))) == 1
    assert read(q.count, f=RunFilter(flow=("etl",))) == 2
    # text search is a substring in run names, any characters, no pattern syntax
    assert col(read(q.page, f=RunFilter(text="100%_'"), offset=0, limit=10), "name") == [EVIL]
    assert read(q.count, f=RunFilter(text="%")) == 1
    assert read(q.count, f=RunFilter(text="ONERROR")) == 1  # case-insensitive
    # paging: offset and limit walk the same order
    assert read(q.page, f=every, offset=1, limit=1) == [rows[1]]


def test_tags_time_range_and_subflows():
    with tags("nightly", "team-a"):
        etl(1)
    etl(1)
    parent()
    assert read(q.count, f=RunFilter(tag=("nightly",))) == 1
    assert read(q.count, f=RunFilter(tag=("nightly", "team-a"))) == 1
    assert read(q.count, f=RunFilter(tag=("nightly", "other"))) == 0
    assert read(q.count, f=RunFilter(tag=("night",))) == 0  # a value, not a substring
    row = read(q.page, f=RunFilter(tag=("team-a",)), offset=0, limit=1)[0]
    assert set(row[COLUMNS.index("tags")]) == {"nightly", "team-a"}
    # subflow runs are listed only when asked for
    assert read(q.count, f=RunFilter()) == 3
    assert read(q.count, f=RunFilter(subflows=True)) == 4
    now = datetime.now(UTC)
    assert read(q.count, f=RunFilter(since=now - timedelta(minutes=5))) == 3
    assert read(q.count, f=RunFilter(until=now - timedelta(minutes=5))) == 0
    assert read(q.count, f=RunFilter(since=now + timedelta(minutes=5))) == 0


def test_task_counts_are_one_grouped_query_per_page():
    etl(3)
    with pytest.raises(ValueError):
        report()
    rows = read(q.page, f=RunFilter(), offset=0, limit=10)
    counts = read(q.task_counts, run_ids=col(rows, "id"))
    by_flow = dict(zip(col(rows, "flow_name"), col(rows, "id"), strict=True))
    assert counts[by_flow["etl"]] == {"Completed": 3}
    assert counts[by_flow["report"]] == {"Completed": 1, "Failed": 1}
    # a subflow is not a task run of its parent
    parent()
    pid = read(q.page, f=RunFilter(flow=("parent",)), offset=0, limit=1)[0][0]
    assert read(q.task_counts, run_ids=[pid]) == {}


def test_changes_reports_new_runs_and_state_changes_only_once():
    etl(1)
    newest, ids, more = read(q.changes, after=0)
    assert newest > 0 and len(ids) == 1 and not more
    assert read(q.changes, after=newest) == (newest, [], False)
    with pytest.raises(ValueError):
        report()
    newest2, ids2, _ = read(q.changes, after=newest)
    assert newest2 > newest
    (rid,) = ids2
    assert read(q.rows_for, f=RunFilter(), ids=ids2)[0][COLUMNS.index("flow_name")] == "report"
    # rows_for applies the filter: a run that no longer matches is absent
    assert read(q.rows_for, f=RunFilter(state=("Completed",)), ids=[rid]) == []


def test_chart_counts_runs_per_hour_by_state_type():
    etl(1)
    etl(1)
    with pytest.raises(ValueError):
        report()
    now = datetime.now(UTC)
    hours = read(q.chart, f=RunFilter(), start=now - timedelta(hours=2), end=now)
    totals: dict[str, int] = {}
    for hour, stype, n in hours:
        assert hour % 3_600_000 == 0
        totals[stype] = totals.get(stype, 0) + n
    assert totals == {"COMPLETED": 2, "FAILED": 1}
    assert read(q.chart, f=RunFilter(flow=("report",)), start=now - timedelta(hours=2), end=now)[0][
        1:
    ] == ("FAILED", 1)


def test_edges_of_a_run_tree_and_options():
    @flow(name="diamond")
    def diamond() -> None:
        a = step.submit(1)
        step.submit(a).result()

    diamond()
    parent()
    ids = col(read(q.page, f=RunFilter(subflows=True), offset=0, limit=10), "id")
    edges = read(q.edges, flow_run_ids=ids)
    assert [e[2] for e in edges] == ["x"]
    opts = read(q.options)
    assert opts["flows"] == ["child", "diamond", "parent"]


def test_filters_from_arguments_are_checked():
    f = parse_filters({"flow": "etl", "state": ["Failed", "CRASHED"], "since": timedelta(hours=1)})
    assert f.flow == ("etl",) and f.state == ("Failed", "CRASHED") and f.since is not None
    with pytest.raises(orion_nb.errors.ParameterError, match="unknown filters"):
        parse_filters({"flows": "etl"})
    with pytest.raises(orion_nb.errors.ParameterError, match="state"):
        parse_filters({"state": 3})
    with pytest.raises(orion_nb.errors.ParameterError, match="until"):
        parse_filters({"since": "2026-01-02", "until": "2026-01-01"})
    with pytest.raises(orion_nb.errors.ParameterError, match="since"):
        parse_filters({"since": "yesterday"})
    assert parse_filters({"text": "a\ud800b"}).text == "a\\ud800b"
