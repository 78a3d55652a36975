"""The coalescer: events of one flush window in, one batch of rows out (store/coalesce.py).

Driven directly (no writer thread), so each rule of the merge is pinned: which row a state
lands in, which times it sets, what is cleaned, what is left out of ``states`` and what is not.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from orion_nb._events import (
    cache_event,
    edge_event,
    flow_event,
    log_event,
    ran_event,
    state_event,
    task_event,
)
from orion_nb.store.batches import LEFT_OUT_COLS
from orion_nb.store.coalesce import Coalescer

SURROGATE = b"caf\xe9".decode("utf-8", "surrogateescape")
T0 = 1_800_000_000.0


def plain_life(rid: str, flow_id: str | None = "f", t: float = T0) -> list[tuple[Any, ...]]:
    return [
        task_event(rid, flow_id, "t", "mod.t", "0", "t-0", (), t),
        state_event(rid, "task", "PENDING", "Pending", t, None, None, 0),
        state_event(rid, "task", "RUNNING", "Running", t + 1, None, None, 1),
        state_event(rid, "task", "COMPLETED", "Completed", t + 2, None, None, 1),
    ]


def marks(batch: Any) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(s[0], s[2], tuple(s[7:])) for s in batch.parts.get("states", [])]


def test_a_plain_task_run_is_one_row_and_its_three_transitions_are_marked_left_out():
    c = Coalescer(elide=True)
    batch = c.batch(plain_life("a"), None)
    (row,) = batch.parts["upsert_task"]
    assert (row["created"], row["start_time"], row["end_time"]) == (T0, T0 + 1, T0 + 2)
    assert (row["state_type"], row["state_name"], row["run_count"]) == (
        "COMPLETED",
        "Completed",
        1,
    )
    assert (row["host"], row["pid"]) == (socket.gethostname(), os.getpid())
    assert all(row[c] is None for c in LEFT_OUT_COLS)
    assert marks(batch) == [
        ("a", "PENDING", ("pending_state_id",)),
        ("a", "RUNNING", ("running_state_id",)),
        ("a", "COMPLETED", ("final_state_id",)),
    ]
    # a finished run is forgotten: a later state of it is an update of its written row
    assert c.task_rows == {}
    late = c.batch([state_event("a", "task", "CRASHED", "Crashed", T0 + 9, "x", None, 1)], None)
    assert late.parts["update_task"] == [
        {
            "_id": "a",
            "state_type": "CRASHED",
            "state_name": "Crashed",
            "run_count": 1,
            "end_time": T0 + 9,
            "message": "x",
        }
    ]


def test_late_states_of_two_written_runs_are_two_updates():
    c = Coalescer(elide=True)
    c.batch(plain_life("a") + plain_life("b", t=T0 + 10), None)
    late = c.batch(
        [
            state_event("a", "task", "CRASHED", "Crashed", T0 + 9, "x", None, 1),
            state_event("b", "task", "CANCELLED", "Cancelled", T0 + 19, "y", None, 1),
        ],
        None,
    )
    assert [(r["_id"], r["state_type"], r["message"]) for r in late.parts["update_task"]] == [
        ("a", "CRASHED", "x"),
        ("b", "CANCELLED", "y"),
    ]


def test_without_elide_every_transition_is_a_row():
    batch = Coalescer(elide=False).batch(plain_life("a"), None)
    assert marks(batch) == [("a", "PENDING", ()), ("a", "RUNNING", ()), ("a", "COMPLETED", ())]


# where each field is in a state event (orion_nb._events.state_event)
FIELD = {"type": 3, "name": 4, "ts": 5, "message": 6, "rule": 7, "run_count": 8}


def altered(events: list[tuple[Any, ...]], state: str, **fields: Any) -> list[tuple[Any, ...]]:
    out = []
    for ev in events:
        if ev[0] == "state" and ev[3] == state:
            names = ["kind", "id", "run_kind", *FIELD, "error"]
            ev = tuple(fields.get(name, v) for name, v in zip(names, ev, strict=True))
        out.append(ev)
    return out


@pytest.mark.parametrize(
    ("state", "fields"),
    [
        # what makes a run's life not plain: each keeps its three rows
        ("PENDING", {"ts": T0 + 0.5}),  # Pending not at the row's creation
        ("PENDING", {"message": "m"}),
        ("PENDING", {"rule": "R"}),
        ("RUNNING", {"rule": ""}),  # even an empty rule
        ("RUNNING", {"name": "Retrying"}),
        ("COMPLETED", {"message": "a message"}),
        ("COMPLETED", {"rule": "SomeRule"}),
        ("COMPLETED", {"name": "Cached"}),
        ("COMPLETED", {"run_count": 2}),  # a second attempt
        ("COMPLETED", {"type": "FAILED", "name": "Failed"}),
    ],
)
def test_anything_unusual_keeps_the_rows(state, fields):
    batch = Coalescer(elide=True).batch(altered(plain_life("a"), state, **fields), None)
    assert len(batch.parts["states"]) == 3
    assert all(m[2] == () for m in marks(batch)), marks(batch)


def test_a_run_with_a_fourth_state_or_only_part_of_its_life_keeps_its_rows():
    c = Coalescer(elide=True)
    events = plain_life("a")
    events.insert(2, state_event("a", "task", "PENDING", "Pending", T0, None, None, 0))
    assert all(m[2] == () for m in marks(c.batch(events, None)))
    # created in one window, finished in the next: both windows write plain rows
    c = Coalescer(elide=True)
    first = c.batch(plain_life("b")[:3], None)
    second = c.batch(plain_life("b")[3:], None)
    assert [m[2] for m in marks(first) + marks(second)] == [(), (), ()]
    assert second.parts["upsert_task"][0]["end_time"] == T0 + 2


def test_a_state_after_completed_in_the_same_window_keeps_every_row():
    events = plain_life("a")
    events.append(state_event("a", "task", "CRASHED", "Crashed", T0 + 3, "late", None, 1))
    batch = Coalescer(elide=True).batch(events, None)
    assert [m[2] for m in marks(batch)] == [(), (), (), ()]
    (row,) = batch.parts["upsert_task"]
    assert (row["state_type"], row["end_time"], row["message"]) == ("CRASHED", T0 + 3, "late")


def test_interleaved_runs_are_judged_each_on_its_own_life():
    """Mapped runs' transitions interleave in a window: one unusual run spoils only itself."""
    a, b, c = plain_life("a"), plain_life("b", t=T0 + 10), plain_life("c", t=T0 + 20)
    c = altered(c, "RUNNING", rule="R")
    events = [ev for trio in zip(a, b, c, strict=True) for ev in trio]
    batch = Coalescer(elide=True).batch(events, None)
    by_run: dict[str, list[tuple[str, ...]]] = {}
    for rid, _type, mark in marks(batch):
        by_run.setdefault(rid, []).append(mark)
    left_out = [(col,) for col in LEFT_OUT_COLS]
    assert by_run == {"a": left_out, "b": left_out, "c": [(), (), ()]}


def test_flow_runs_are_never_left_out_and_get_their_own_row():
    c = Coalescer(elide=True)
    events = [
        flow_event("f", "etl", "run-1", {"n": 1}, ("x",), None, "src", "host-a", os.getpid(), T0),
        state_event("f", "flow", "PENDING", "Pending", T0, None, None, 0),
        state_event("f", "flow", "RUNNING", "Running", T0 + 1, None, None, 1),
    ]
    batch = c.batch(events, None)
    (row,) = batch.parts["upsert_flow"]
    assert row["flow_name"] == "etl" and row["parameters"] == {"n": 1} and row["tags"] == ["x"]
    assert (row["source"], row["host"], row["pid"]) == ("src", "host-a", os.getpid())
    assert row["pid_start"] == c.pid_start and row["start_time"] == T0 + 1
    assert row["end_time"] is None and row["heartbeat_at"] == T0
    assert marks(batch) == [("f", "PENDING", ()), ("f", "RUNNING", ())]
    assert c.open_runs() == (["f"], [])
    hb = c.heartbeat(T0 + 5)
    assert hb == {"heartbeat_flow": [("f", T0 + 5)], "heartbeat_task": []}
    # another process's flow run (a different pid) gets no heartbeat or pid start from here
    other = flow_event("g", "etl", "run-2", {}, (), None, None, "h", os.getpid() + 1, T0)
    c.batch([other], None)
    assert c.open_runs() == (["f"], [])
    assert c.flow_rows["g"]["pid_start"] is None


def test_a_flow_runs_states_fill_its_row_and_a_late_one_updates_the_written_row():
    c = Coalescer(elide=True)
    events = [
        flow_event("f", "etl", "run-1", {}, (), None, None, None, None, T0),  # no host given
        state_event("f", "flow", "RUNNING", "Running", T0 + 1, None, None, 1),
        state_event("f", "flow", "FAILED", "Failed", T0 + 2, "boom", None, 2),
    ]
    (row,) = c.batch(events, None).parts["upsert_flow"]
    assert (row["state_type"], row["state_name"], row["run_count"]) == ("FAILED", "Failed", 2)
    assert (row["start_time"], row["end_time"], row["message"]) == (T0 + 1, T0 + 2, "boom")
    assert (row["host"], row["pid"]) == (None, None)  # a flow row says where it ran itself
    # finished, so forgotten: a later state (a crash detected afterwards) updates the row
    late = c.batch([state_event("f", "flow", "CRASHED", "Crashed", T0 + 9, "x", "R", 2)], None)
    assert late.parts["update_flow"] == [
        {
            "_id": "f",
            "state_type": "CRASHED",
            "state_name": "Crashed",
            "run_count": 2,
            "end_time": T0 + 9,
            "message": "x",
        }
    ]
    assert late.parts["states"] == [("f", "flow", "CRASHED", "Crashed", T0 + 9, "x", "R")]


def test_standalone_task_runs_carry_this_process_and_a_heartbeat():
    c = Coalescer(elide=True)
    c.batch(plain_life("s", flow_id=None)[:2], None)
    row = c.task_rows["s"]
    assert (row["host"], row["pid"], row["pid_start"]) == (c.host, c.pid, c.pid_start)
    assert row["heartbeat_at"] == T0
    assert c.open_runs() == ([], ["s"])
    assert c.reinsert_open_runs().parts == {"upsert_task": [row]}
    # inside a flow, a task run's host is set when it starts (or by a "ran" event)
    c.batch(plain_life("t")[:2], None)
    assert c.task_rows["t"]["host"] is None and c.task_rows["t"]["heartbeat_at"] is None


def test_a_ran_event_says_where_the_run_ran_and_running_does_not_overwrite_it():
    c = Coalescer(elide=True)
    events = plain_life("a")
    events.insert(2, ran_event("a", "worker-host", 4242, "tcp://w:1"))
    batch = c.batch(events, None)
    (row,) = batch.parts["upsert_task"]
    assert (row["host"], row["pid"], row["worker"]) == ("worker-host", 4242, "tcp://w:1")
    # a ran event for a run this coalescer does not know changes nothing
    assert len(c.batch([ran_event("zzz", "h", 1, "w")], None)) == 0


def test_cache_results_land_in_the_row_or_as_a_late_update():
    c = Coalescer(elide=True)
    events = plain_life("a")
    events.append(cache_event("a", "key-1", T0 + 60, "/r/key-1.pkl"))
    (row,) = c.batch(events, None).parts["upsert_task"]
    assert (row["cache_key"], row["cache_expiration"], row["result_ref"]) == (
        "key-1",
        T0 + 60,
        "/r/key-1.pkl",
    )
    c.batch(plain_life("b"), None)
    late = c.batch(
        [
            cache_event("a", "key-2", None, "/r/key-2.pkl"),
            cache_event("b", "key-3", None, "/r/key-3.pkl"),
        ],
        None,
    )
    assert late.parts["update_task_result"] == [  # one update per run
        {"_id": "a", "cache_key": "key-2", "cache_expiration": None, "result_ref": "/r/key-2.pkl"},
        {"_id": "b", "cache_key": "key-3", "cache_expiration": None, "result_ref": "/r/key-3.pkl"},
    ]


def test_edges_logs_and_every_text_are_cleaned_on_the_way_in():
    c = Coalescer(elide=True)
    events = [
        task_event("a", "f", SURROGATE, SURROGATE, SURROGATE, SURROGATE, (SURROGATE,), T0),
        state_event("a", "task", "PENDING", SURROGATE, T0, SURROGATE, SURROGATE, 0),
        edge_event("a", "u", SURROGATE),
        log_event("f", "a", "INFO", T0, "a\x00b"),
    ]
    batch = c.batch(events, None)
    (row,) = batch.parts["upsert_task"]
    for col in ("task_name", "task_key", "dynamic_key", "name"):
        row[col].encode("utf-8")  # no lone surrogate left
    row["tags"][0].encode("utf-8")
    (state,) = batch.parts["states"]
    for text in state[3], state[5], state[6]:
        text.encode("utf-8")
    (edge,) = batch.parts["edges"]
    assert edge["task_run_id"] == "a" and edge["upstream_task_run_id"] == "u"
    edge["parameter"].encode("utf-8")
    (log,) = batch.parts["logs"]
    assert log["message"] == "a\\x00b" and log["level"] == "INFO"
    assert (log["flow_run_id"], log["task_run_id"], log["timestamp"]) == ("f", "a", T0)
    # the same task name again comes from the memo, still cleaned
    again = c.batch([task_event("b", "f", SURROGATE, "k", "1", "n", (), T0)], None)
    assert again.parts["upsert_task"][0]["task_name"] == row["task_name"]


def test_a_state_name_that_is_not_text_is_cleaned_not_trusted():
    c = Coalescer(elide=True)
    events = plain_life("a")
    events[3] = state_event("a", "task", "COMPLETED", 123, T0 + 2, None, None, 1)  # type: ignore[arg-type]
    batch = c.batch(events, None)
    assert batch.parts["upsert_task"][0]["state_name"] == "123"
    assert all(m[2] == () for m in marks(batch))


def test_a_cancelled_pending_run_gets_a_start_and_an_end_and_keeps_its_rows():
    c = Coalescer(elide=True)
    events = [
        *plain_life("a")[:2],
        state_event("a", "task", "CANCELLED", "Cancelled", T0 + 3, "stop", "Rule", 0),
    ]
    batch = c.batch(events, None)
    (row,) = batch.parts["upsert_task"]
    assert row["start_time"] == row["end_time"] == T0 + 3 and row["message"] == "stop"
    assert row["host"] is None  # it never ran
    assert all(m[2] == () for m in marks(batch))


def test_heartbeats_ride_along_as_extra_parts():
    c = Coalescer(elide=True)
    batch = c.batch([], {"heartbeat_task": [("x", T0)]})
    assert batch.parts == {"heartbeat_task": [("x", T0)]}


def test_crashed_events_name_every_open_run_and_only_those():
    c = Coalescer(elide=True)
    c.batch(plain_life("done"), None)  # finished: forgotten
    c.batch(plain_life("open")[:3], None)  # running
    c.batch([flow_event("f", "etl", "r", {}, (), None, None, "h", os.getpid(), T0)], None)
    events = c.crashed("terminated (SIGTERM)", T0 + 9)
    assert sorted((e[1], e[2], e[3], e[4], e[5], e[6], e[8]) for e in events) == [
        ("f", "flow", "CRASHED", "Crashed", T0 + 9, "terminated (SIGTERM)", 0),
        ("open", "task", "CRASHED", "Crashed", T0 + 9, "terminated (SIGTERM)", 1),
    ]
    assert all(e[7] for e in events)  # the recovery rule's name
    batch = c.batch(events, None)
    assert {r["id"]: r["state_type"] for r in batch.parts["upsert_task"]} == {"open": "CRASHED"}
    assert c.open_runs() == ([], [])


def test_rows_carry_this_process_start_and_open_runs_can_be_written_again():
    """What a replaced database file gets back (Writer: the file was deleted under it)."""
    from orion_nb.store.recovery import process_start_of

    c = Coalescer(elide=True)
    assert c.pid_start is not None and c.pid_start == process_start_of(os.getpid())
    c.batch([flow_event("f", "etl", "r", {}, (), None, None, "h", os.getpid(), T0)], None)
    c.batch(plain_life("open", flow_id=None)[:3], None)  # a standalone run, still running
    again = c.reinsert_open_runs()
    assert [r["id"] for r in again.parts["upsert_flow"]] == ["f"]
    assert [r["id"] for r in again.parts["upsert_task"]] == ["open"]
    assert again.parts["upsert_task"][0]["pid_start"] == c.pid_start


def test_two_late_results_of_one_run_are_one_update_with_the_last():
    c = Coalescer(elide=True)
    c.batch(plain_life("a"), None)
    late = c.batch(
        [
            cache_event("a", "key-1", None, "/r/key-1.pkl"),
            cache_event("a", "key-2", T0 + 5, "/r/key-2.pkl"),
        ],
        None,
    )
    assert late.parts["update_task_result"] == [
        {"_id": "a", "cache_key": "key-2", "cache_expiration": T0 + 5, "result_ref": "/r/key-2.pkl"}
    ]
