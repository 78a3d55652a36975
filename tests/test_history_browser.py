"""The history browser's kernel side (orion_nb/notebook/browser.py) over a real SQLite history.

The widget is driven the way its front-end drives it: ``filters`` set as a trait, custom
messages for pages and runs; what it sends back is recorded by a subclass whose ``send``
keeps the messages (no comm is open outside a kernel).
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import orion_nb
from orion_nb import flow, task
from orion_nb.errors import ParameterError
from orion_nb.notebook.browser import COLUMNS, HEAD, HistoryBrowser

EVIL = "<img src=x onerror=alert(1)>"


class Recording(HistoryBrowser):
    def __init__(self, **filters: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        super().__init__(**filters)

    def send(self, content: Any, buffers: Any = None) -> None:
        self.sent.append(content)

    def ask(self, **content: Any) -> dict[str, Any]:
        self._on_custom(self, content, [])
        return self.sent[-1]


@task
def step(x: int) -> int:
    return x


@flow(name="etl")
def etl(n: int = 1) -> None:
    for i in range(n):
        step(i)


@flow(name="fails")
def fails() -> None:
    raise RuntimeError("it broke")


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def names(rows: list[list[Any]]) -> list[str]:
    return [r[COLUMNS.index("name")] for r in rows]


def test_opens_on_the_filtered_list_with_counts_chart_and_options():
    etl(2)
    with pytest.raises(RuntimeError):
        fails()
    b = Recording()
    assert b.total == 2
    assert [r[COLUMNS.index("flow_name")] for r in b.head] == ["fails", "etl"]
    assert b.head[1][COLUMNS.index("tasks")] == {"Completed": 2}
    assert b.options["flows"] == ["etl", "fails"]
    bars = b.chart["bars"]
    assert sum(sum(c.values()) for _, c in bars) == 2
    assert b.chart["unit"] == "hour"
    only_failed = Recording(state="Failed")
    assert only_failed.total == 1 and only_failed.filters["state"] == ["Failed"]
    with pytest.raises(ParameterError):
        HistoryBrowser(colour="red")


def test_filters_from_the_front_end_requery_and_bad_ones_say_why():
    etl()
    with pytest.raises(RuntimeError):
        fails()
    b = Recording()
    gen = b.generation
    b.filters = {**b.filters, "state": ["FAILED"]}
    assert b.total == 1 and b.generation == gen + 1
    assert names(b.head) == [orion_nb.flow_runs(flow_name="fails")["name"][0]]
    b.filters = {**b.filters, "since": "not a date"}
    assert "since" in b.status["error"] and b.total == 1


def test_pages_are_served_for_the_current_generation_only():
    for _ in range(HEAD + 30):
        etl(0)
    b = Recording()
    assert b.total == HEAD + 30 and len(b.head) == HEAD
    reply = b.ask(kind="page", gen=b.generation, start=HEAD, count=100)
    assert reply["kind"] == "page" and reply["start"] == HEAD and len(reply["rows"]) == 30
    every = orion_nb.flow_runs()
    assert names(reply["rows"]) == list(every["name"][HEAD:])
    before = len(b.sent)
    b._on_custom(b, {"kind": "page", "gen": b.generation - 1, "start": 0, "count": 10}, [])
    assert len(b.sent) == before  # a stale request gets nothing


def test_poll_sends_new_runs_as_a_refresh_and_changed_rows_only():
    etl()
    b = Recording()
    b._view(True)  # a view appeared: the poll thread starts
    try:
        assert b.status["live"] is True
        newest = b._poller._marks[-1][1]
        b._poller.stop()  # the test polls by hand from here, so the two cannot race
        b._poller.join(10)
        etl()
        newest = b.poll(newest)
        assert b.sent[-1] == {"kind": "refresh", "gen": b.generation, "added": 1}
        assert b.total == 2
        sent = len(b.sent)
        assert b.poll(newest) == newest and len(b.sent) == sent  # nothing changed: silence
        # a run that is listed changes state: only its row travels
        release = threading.Event()

        @flow(name="slow")
        def slow() -> None:
            release.wait(30)

        runner = threading.Thread(target=slow)
        runner.start()
        _wait_for(lambda: len(orion_nb.flow_runs(flow_name="slow", state="RUNNING")) == 1)
        newest = b.poll(newest)
        assert (
            b.sent[-1]["kind"] == "refresh" and b.head[0][COLUMNS.index("state_name")] == "Running"
        )
        release.set()
        runner.join(30)
        orion_nb.flow_runs()  # flushes
        b.poll(newest)
        (row,) = b.sent[-1]["rows"]
        assert b.sent[-1]["kind"] == "rows" and row[COLUMNS.index("state_name")] == "Completed"
    finally:
        b._view(False)
    assert b._poller is None and b.status["live"] is False


def test_opening_a_run_sends_its_runview_with_the_error():
    with pytest.raises(RuntimeError):
        fails()
    b = Recording()
    rid = b.head[0][0]
    msg = b.ask(kind="open", id=rid)
    assert msg["kind"] == "run" and msg["id"] == rid
    assert msg["snapshot"]["run"]["state_name"] == "Failed"
    assert "it broke" in msg["snapshot"]["run"]["message"]
    bad = b.ask(kind="open", id="no-such-run")
    assert bad["kind"] == "run-error" and "No flow run" in bad["message"]


def test_static_table_escapes_user_text_and_close_stops_everything():
    etl.with_options(flow_run_name=EVIL)()
    b = Recording()
    data, _ = b._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    page = data["text/html"]
    assert EVIL not in page and html.escape(EVIL) in page
    assert "<img" not in page and "<script" not in page
    assert data["text/plain"] == "History browser: 1 flow run"
    assert repr(b) == "History browser: 1 flow run"
    b._view(True)
    b.close()
    assert b._poller is None and b._closed
