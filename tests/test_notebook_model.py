"""The view model behind the RunView widget, fed live and rebuilt from the database."""

from __future__ import annotations

import threading
import time

import pytest

import orion_nb
from orion_nb import flow, task
from orion_nb.notebook.model import TASK_COLUMNS, RunModel
from orion_nb.notebook.views import model_for

COL = {c: i for i, c in enumerate(TASK_COLUMNS)}


class Recorder:
    """A view that keeps every engine event (what the live widget receives)."""

    shows_logs = True

    def __init__(self, run):
        self.events = []
        self.lock = threading.Lock()

    def on_event(self, ev):
        with self.lock:
            self.events.append(ev)

    def close(self):
        """Nothing to release."""


@pytest.fixture
def live(monkeypatch):
    views = []

    def make_view(run, mode):
        v = Recorder(run)
        views.append(v)
        return v

    from orion_nb.notebook import display

    monkeypatch.setattr(display, "make_view", make_view)
    orion_nb.configure(display="widget")
    yield views
    orion_nb.configure(display="none")


@task(retries=1, retry_delay_seconds=0)
def flaky(i):
    flaky.calls = getattr(flaky, "calls", 0) + 1  # type: ignore[attr-defined]
    if flaky.calls == 1:  # type: ignore[attr-defined]
        raise ConnectionError("first try")
    return i


@task
def broken():
    raise ValueError("bad <b>row</b>")


@flow
def child(n: int):
    return [flaky(i) for i in range(n)]


@flow(name="parent")
def parent():
    orion_nb.get_run_logger().info("starting")
    child(2)
    broken(return_state=True)
    return 1


def snapshot_of(events):
    model = RunModel()
    for ev in events:
        model.apply(ev)
    return model.snapshot()


def test_live_events_become_rows_attempts_subflows_and_errors(live):
    flaky.calls = 0  # type: ignore[attr-defined]
    parent()
    snap = snapshot_of(live[0].events)
    assert snap["run"]["flow_name"] == "parent" and snap["run"]["state_name"] == "Completed"
    rows = {r[COL["name"]]: r for r in snap["tasks"]}
    sub = [r for r in snap["tasks"] if r[COL["kind"]] == "flow"]
    assert len(sub) == 1 and sub[0][COL["depth"]] == 0
    f0 = rows["flaky-0"]
    assert f0[COL["parent"]] == sub[0][COL["id"]] and f0[COL["depth"]] == 1
    assert [a[2] for a in f0[COL["attempts"]]] == ["FAILED", "COMPLETED"]  # the retry is visible
    b = rows["broken-0"]
    assert b[COL["state_name"]] == "Failed" and "ValueError: bad <b>row</b>" in b[COL["error"]]
    assert snap["counts"] == {"Completed": 2, "Failed": 1}
    assert snap["total"] == 3
    rules = {t["rule"] for t in snap["transitions"] if t["rule"]}
    assert "RetryFailedRuns" in rules
    assert any(lg["message"] == "starting" for lg in snap["logs"])


def test_rebuilt_from_the_database_matches_live(live):
    flaky.calls = 0  # type: ignore[attr-defined]
    parent()
    live_snap = snapshot_of(live[0].events)
    run_id = live_snap["run"]["id"]
    stored = model_for(run_id).snapshot()
    assert stored["run"]["state_name"] == "Completed"
    assert stored["counts"] == live_snap["counts"]

    def shape(s):
        return sorted(
            (
                r[COL["name"]],
                r[COL["kind"]],
                r[COL["depth"]],
                len(r[COL["attempts"]]),
                r[COL["state_name"]],
            )
            for r in s["tasks"]
        )

    assert shape(stored) == shape(live_snap)
    assert [t["to"] for t in stored["transitions"]] == [t["to"] for t in live_snap["transitions"]]
    # a run can be found by its name or an id prefix too
    name = live_snap["run"]["name"]
    assert model_for(name).snapshot()["run"]["id"] == run_id
    assert model_for(run_id[-8:]).snapshot()["run"]["id"] == run_id  # the short id tables show


def test_timeline_figure_has_one_bar_per_attempt_and_escapes_names():
    @task(name="<img src=x onerror=alert(1)>")
    def evil():
        time.sleep(0.01)

    @flow
    def f():
        flaky.calls = 0  # type: ignore[attr-defined]
        flaky(1)
        evil()

    f()
    run_id = orion_nb.flow_runs().iloc[0]["id"]
    fig = orion_nb.timeline(run_id)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 3  # flaky: 2 attempts, evil: 1
    labels = {t.y[0] for t in bars}
    assert any("&lt;img" in lbl for lbl in labels)
    assert not any("<img" in lbl for lbl in labels)


def test_unknown_run_is_a_clear_error():
    from orion_nb.errors import OrionNBError

    @flow
    def f():
        return 1

    f()
    with pytest.raises(OrionNBError, match="No flow run with id or name 'nope'"):
        model_for("nope")
