"""Live updates as diffs: the kernel's RunModel produces them, runview.js applies them.

Real engine events (a flow with retries, a subflow, a failure and logs) go through a real
:class:`RunModel` on the Python side; its diffs and snapshots reach the page as the custom
messages anywidget delivers, and the widget must end up drawing exactly the run the model holds.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from playwright.sync_api import Page, expect

import orion_nb
from orion_nb import flow, task
from orion_nb.notebook.model import RunModel

pytestmark = pytest.mark.browser


class Recorder:
    shows_logs = True

    def __init__(self, run: Any) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def on_event(self, ev: tuple[Any, ...]) -> None:
        with self.lock:
            self.events.append(ev)

    def close(self) -> None:
        """Nothing to release."""


@task(retries=1, retry_delay_seconds=0)
def flaky(i: int, fails: set[int]) -> int:
    if i in fails:
        fails.discard(i)
        raise ConnectionError(f"try {i} again")
    return i


@task(name="<img src=x onerror=alert(1)>")
def evil() -> None:
    """A task named like markup."""


@task
def broken() -> None:
    raise ValueError("bad row")


@flow
def child(n: int) -> list[int]:
    return [flaky(i, set()) for i in range(n)]


@flow(name="diffs")
def parent(n: int) -> int:
    orion_nb.get_run_logger().info("starting")
    fails = set(range(0, n, 3))
    futures = [flaky.submit(i, fails) for i in range(n)]
    child(3)
    evil()
    broken(return_state=True)
    return sum(f.result() for f in futures)


def recorded_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    views: list[Recorder] = []

    def factory(run: Any, mode: str) -> Recorder:
        views.append(Recorder(run))
        return views[-1]

    from orion_nb.notebook import display

    monkeypatch.setattr(display, "make_view", factory)
    orion_nb.configure(display="widget")
    try:
        parent(40)
    finally:
        orion_nb.configure(display="none")
    return views[0].events


def state_of(page: Page) -> dict[str, Any]:
    return page.evaluate(
        "() => Object.fromEntries(['run','tasks','transitions','logs','counts','total']"
        ".map((k) => [k, window.__model.get(k)]))"
    )


def emit(page: Page, messages: list[dict[str, Any]]) -> None:
    page.evaluate("(ms) => { for (const m of ms) window.__emit(m); }", messages)


def stream(events: list[tuple[Any, ...]], chunks: int) -> tuple[RunModel, list[dict[str, Any]]]:
    """The kernel's side: apply events in ``chunks`` and take one diff per chunk."""
    model = RunModel()
    messages = []
    step = max(1, len(events) // chunks)
    for seq, i in enumerate(range(0, len(events), step), start=1):
        for ev in events[i : i + step]:
            model.apply(ev)
        messages.append({"kind": "diff", "seq": seq, "base": seq - 1, **model.take_diff(now=0)})
    return model, messages


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    return {k: state[k] for k in ("run", "tasks", "transitions", "logs", "counts", "total")}


def test_diffs_rebuild_exactly_the_models_state(page: Page, monkeypatch: pytest.MonkeyPatch):
    events = recorded_events(monkeypatch)
    model, messages = stream(events, chunks=12)
    assert len(messages) >= 10
    emit(page, messages)
    assert comparable(state_of(page)) == comparable(model.snapshot(now=0))
    # the page drew it: one timeline bar per task run, the failure, the escaped name
    widget = page.locator(".onb-runview")
    expect(widget.locator(".onb-header [data-state]").first).to_have_attribute(
        "data-state", "Completed"
    )
    expect(widget.locator("g.onb-run")).to_have_count(model.total)
    expect(widget.get_by_text("<img src=x onerror=alert(1)>").first).to_be_attached()
    assert widget.locator("img").count() == 0
    assert page.evaluate("window.__sent") == []  # nothing was missed, nothing asked for


def test_diffs_carry_only_the_rows_that_changed(monkeypatch: pytest.MonkeyPatch):
    events = recorded_events(monkeypatch)
    _model, messages = stream(events, chunks=len(events))  # one diff per event
    for m in messages:
        assert len(m["tasks"]) <= 1  # an event changes at most one row
    sizes = [len(m["tasks"]) for m in messages]
    assert sum(sizes) < len(messages)  # log and flow events change no task row


def test_a_model_that_missed_a_diff_asks_for_a_snapshot_and_catches_up(
    page: Page, monkeypatch: pytest.MonkeyPatch
):
    events = recorded_events(monkeypatch)
    model, messages = stream(events, chunks=10)
    emit(page, messages[:3])
    emit(page, messages[4:6])  # message 4 was lost: these cannot be applied
    assert page.evaluate("window.__sent") == [{"kind": "attach", "seq": 3}]
    partial = state_of(page)
    emit(page, [{"kind": "snapshot", "seq": 6, **_snapshot_after(events, messages, 6)}])
    assert state_of(page)["total"] >= partial["total"]
    emit(page, messages[6:])  # the stream goes on from the snapshot
    assert comparable(state_of(page)) == comparable(model.snapshot(now=0))
    assert len(page.evaluate("window.__sent")) == 1  # asked once, not once per diff


def _snapshot_after(
    events: list[tuple[Any, ...]], messages: list[dict[str, Any]], n: int
) -> dict[str, Any]:
    step = max(1, len(events) // 10)
    model = RunModel()
    for ev in events[: n * step]:
        model.apply(ev)
    return model.snapshot(now=0)


def test_a_burst_of_diffs_is_drawn_in_few_frames(page: Page, monkeypatch: pytest.MonkeyPatch):
    events = recorded_events(monkeypatch)
    _, messages = stream(events, chunks=30)
    page.evaluate("window.__frames(2)")
    before = int(page.locator("#root").get_attribute("data-renders") or "0")
    emit(page, messages)
    page.evaluate("window.__frames(3)")
    after = int(page.locator("#root").get_attribute("data-renders") or "0")
    assert after - before <= 2, (before, after)
