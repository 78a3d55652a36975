"""Transitions left out of ``states``: the log users read is the one that would have been written.

The SQLite writer keeps no ``states`` rows for a task run that lived plainly (Pending ->
Running -> Completed, no rule, no message); it takes their ids from the ``states`` sequence and
keeps them on the run, and the readers put the three transitions back (store/state_log.py).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import orion_nb
from orion_nb import flow, history, task
from orion_nb._events import flow_event, state_event, task_event
from orion_nb.engine import recorder
from orion_nb.engine.params import new_id
from orion_nb.errors import OrionNBWarning
from orion_nb.store.writer import Writer
from tests._helpers import TRANSITION_IDS_SQL


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


@task
def double(x: int) -> int:
    return 2 * x


@task(retries=1, retry_delay_seconds=0)
def flaky(attempts: list[int]) -> str:
    attempts.append(1)
    if len(attempts) == 1:
        raise RuntimeError("first attempt fails")
    return "ok"


@task
def broken() -> None:
    raise ValueError("always")


@task(cache_key_fn=lambda ctx, params: f"fixed-{params['x']}")
def cached(x: int) -> int:
    return x


@flow
def child(n: int) -> int:
    return sum(double(i) for i in range(n))


@flow
def mixed() -> int:
    total = sum(f.result() for f in double.map(range(6)))
    flaky([])
    cached(1)
    cached(1)  # the second call is Cached: its Completed state is decided by a rule
    with contextlib.suppress(ValueError):  # recorded Failed: a run that keeps its rows
        broken()
    return total + child(3)


def _events_of_a_session() -> list[tuple[Any, ...]]:
    """Everything the engine emitted for ``mixed()`` and a standalone task call."""
    events: list[tuple[Any, ...]] = []
    emit = recorder.emit
    recorder.emit = events.append  # type: ignore[assignment]
    try:
        mixed()
        double(21)
    finally:
        recorder.emit = emit  # type: ignore[assignment]
    return events


def _write(path: Path, events: list[tuple[Any, ...]], *, leave_out: bool) -> None:
    w = Writer(f"sqlite:///{path}", flush_interval=0.01).start()
    w._coalescer.elide = leave_out
    try:
        # queued in one step, so the whole life of each run is in one batch
        w.queue.extend(events)
        w.flush(timeout=30)
    finally:
        w.close()


def _frames(path: Path) -> dict[str, pd.DataFrame]:
    orion_nb.configure(database_url=f"sqlite:///{path}")
    return {
        "states": orion_nb.states(),
        "newest": orion_nb.states(limit=5),
        "tasks": orion_nb.task_runs(),
    }


def test_the_log_is_the_same_whether_plain_transitions_are_written_or_left_out(tmp_path: Path):
    events = _events_of_a_session()
    full, lean = tmp_path / "full.db", tmp_path / "lean.db"
    _write(full, events, leave_out=False)
    _write(lean, events, leave_out=True)

    # rows were left out: the six mapped runs, child's three runs and the standalone call
    # (kept: flaky retried, broken failed, both cached calls had a rule decide, and the
    # subflow's own task run)
    n_plain = rows(lean, "select count(*) from task_runs where final_state_id is not null")
    assert n_plain == [(10,)]
    written = rows(lean, "select count(*) from states")[0][0]
    assert written == rows(full, "select count(*) from states")[0][0] - 3 * 10

    a, b = _frames(full), _frames(lean)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_like=False)
    # `orion-nb db info` counts the transitions, not the rows
    from orion_nb.store import maintenance

    assert maintenance.info(f"sqlite:///{lean}")["states"] == len(a["states"])
    # ids, order and content: e.g. the cached run's Cached state and rule are still there
    log = b["states"]
    assert log["id"].is_unique and log["id"].is_monotonic_decreasing
    assert "Cached" in set(log["name"]) and log["rule"].notna().any()

    # per run, through the same readers
    run = b["tasks"].loc[b["tasks"]["name"] == "double-0", "id"].iloc[0]
    assert list(orion_nb.states(run_id=run)["name"])[::-1] == ["Pending", "Running", "Completed"]
    tree_lean = history.run_tree(
        rows(
            lean, "select id from flow_runs where name is not null and parent_task_run_id is null"
        )[0][0]
    )
    orion_nb.configure(database_url=f"sqlite:///{full}")
    tree_full = history.run_tree(
        rows(
            full, "select id from flow_runs where name is not null and parent_task_run_id is null"
        )[0][0]
    )
    pd.testing.assert_frame_equal(tree_full["states"], tree_lean["states"])


def test_left_out_ids_are_never_handed_out_again(tmp_path: Path):
    db = tmp_path / "seq.db"
    now = time.time()
    standalone = [new_id() for _ in range(3)]
    events: list[tuple[Any, ...]] = []
    for i, rid in enumerate(standalone):
        # standalone runs: no flow run states, so no states row at all in this batch
        events.append(task_event(rid, None, "t", "t-key", str(i), f"t-{i}", (), now + i))
        for j, (t, name) in enumerate(
            (("PENDING", "Pending"), ("RUNNING", "Running"), ("COMPLETED", "Completed"))
        ):
            events.append(state_event(rid, "task", t, name, now + i + j / 10, None, None, 1))
    _write(db, events, leave_out=True)
    assert rows(db, "select count(*) from states") == [(0,)]
    assert rows(db, "select max(final_state_id) from task_runs") == [(9,)]

    # any other insert (crash recovery, a scheduler's slot, another version) comes after them
    con = sqlite3.connect(db)
    con.execute(
        "insert into states (run_id, run_kind, type, name, timestamp) values "
        "('00000000-0000-0000-0000-000000000001', 'flow', 'CRASHED', 'Crashed', "
        "'2026-01-01 00:00:00.000000')"
    )
    con.commit()
    con.close()
    assert rows(db, "select max(id) from states") == [(10,)]
    # and so does the next batch of this writer
    flow_id = new_id()
    _write(
        db,
        [
            flow_event(flow_id, "f", "r", {}, (), None, None, "h", os.getpid(), now),
            state_event(flow_id, "flow", "PENDING", "Pending", now + 5, None, None, 0),
        ],
        leave_out=True,
    )
    ids = [r[0] for r in rows(db, TRANSITION_IDS_SQL)]
    assert sorted(ids) == list(range(1, 12))
    orion_nb.configure(database_url=f"sqlite:///{db}")
    newest = orion_nb.states(limit=3)
    assert list(newest["id"]) == [11, 10, 9]
    assert list(newest["name"]) == ["Pending", "Crashed", "Completed"]


def test_a_refused_row_splits_the_batch_and_no_transition_is_lost_or_doubled(tmp_path: Path):
    db = tmp_path / "split.db"
    now = time.time()
    flow_id = new_id()
    events: list[tuple[Any, ...]] = [
        flow_event(flow_id, "f", "r", {}, (), None, None, "h", os.getpid(), now)
    ]
    runs = [new_id() for _ in range(16)]
    for i, rid in enumerate(runs):
        created = now + i if i != 11 else float("inf")  # SQLite's types refuse this row
        events.append(task_event(rid, flow_id, "t", "t-key", str(i), f"t-{i}", (), created))
        events.append(state_event(rid, "task", "PENDING", "Pending", created, None, None, 1))
        events.append(state_event(rid, "task", "RUNNING", "Running", now + i + 0.1, None, None, 1))
        events.append(
            state_event(rid, "task", "COMPLETED", "Completed", now + i + 0.2, None, None, 1)
        )
    with pytest.warns(OrionNBWarning, match="refused a record"):
        _write(db, events, leave_out=True)
    ids = [r[0] for r in rows(db, TRANSITION_IDS_SQL)]
    assert len(ids) == len(set(ids))
    orion_nb.configure(database_url=f"sqlite:///{db}")
    log = orion_nb.states()
    for i, rid in enumerate(runs):
        names = list(log.loc[log["run_id"] == rid, "name"])[::-1]
        if i == 11:
            continue  # its row was refused; its states rows (written as rows) may remain
        assert names == ["Pending", "Running", "Completed"], (i, names)
    assert rows(db, "select count(*) from task_runs") == [(15,)]


def test_the_browser_change_feed_sees_runs_whose_transitions_were_left_out():
    from orion_nb.store import browse

    @flow
    def busy() -> None:
        double(1)

    busy()
    newest, ids, _ = history._read(browse.changes, after=0)
    (flow_run_id,) = ids
    # a task run of that flow run recorded later (as a notebook's still running flow would)
    recorder.flush()
    after = newest
    now = time.time()
    rid = new_id()
    for ev in (
        task_event(rid, flow_run_id, "t", "t-key", "9", "t-9", (), now),
        state_event(rid, "task", "PENDING", "Pending", now, None, None, 1),
        state_event(rid, "task", "RUNNING", "Running", now + 0.1, None, None, 1),
        state_event(rid, "task", "COMPLETED", "Completed", now + 0.2, None, None, 1),
    ):
        recorder.emit(ev)
    recorder.flush()
    newest2, ids2, _ = history._read(browse.changes, after=after)
    assert newest2 == after + 3 and ids2 == [flow_run_id]


def test_a_run_whose_life_spans_two_batches_keeps_its_rows(tmp_path: Path):
    db = tmp_path / "span.db"
    w = Writer(f"sqlite:///{db}", flush_interval=0.01).start()
    now = time.time()
    rid = new_id()
    try:
        w.queue.extend(
            [
                task_event(rid, None, "t", "t-key", "0", "t-0", (), now),
                state_event(rid, "task", "PENDING", "Pending", now, None, None, 1),
                state_event(rid, "task", "RUNNING", "Running", now + 0.1, None, None, 1),
            ]
        )
        w.flush(timeout=30)
        w.queue.extend(
            [state_event(rid, "task", "COMPLETED", "Completed", now + 0.2, None, None, 1)]
        )
        w.flush(timeout=30)
    finally:
        w.close()
    assert rows(db, "select name from states order by id") == [
        ("Pending",),
        ("Running",),
        ("Completed",),
    ]
    assert rows(db, "select final_state_id from task_runs") == [(None,)]
    orion_nb.configure(database_url=f"sqlite:///{db}")
    assert list(orion_nb.states()["name"]) == ["Completed", "Running", "Pending"]


def test_a_0002_database_upgrades_and_downgrades_without_losing_a_transition(tmp_path: Path):
    import sqlalchemy as sa

    from orion_nb.store import database
    from tests.test_migrations import alembic

    db = tmp_path / "old.db"
    engine = database.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        alembic(conn, "upgrade", "0002")
        conn.execute(
            sa.text(
                "insert into states (run_id, run_kind, type, name, timestamp) values "
                "('00000000-0000-0000-0000-000000000001', 'flow', 'PENDING', 'Pending', "
                "'2026-01-01 00:00:00.000000')"
            )
        )
    with engine.begin() as conn:
        database._migrate_conn(conn)
    engine.dispose()
    ddl = rows(db, "select sql from sqlite_master where name = 'states'")[0][0]
    assert "AUTOINCREMENT" in ddl
    # a plain run recorded now takes ids after the old row's
    _write(db, _events_of_a_session(), leave_out=True)
    assert rows(db, "select min(pending_state_id) > 1 from task_runs") == [(1,)]
    orion_nb.configure(database_url=f"sqlite:///{db}")
    before = orion_nb.states()
    orion_nb.configure(persist=False)
    engine = database.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        alembic(conn, "downgrade", "0002")
    engine.dispose()
    # back at 0002, every transition is a row again, with the same id
    got = rows(db, "select id, run_id, type, name from states order by id desc")
    want = list(before[["id", "run_id", "type", "name"]].itertuples(index=False, name=None))
    assert got == want


def test_the_transitions_selectable_directly(tmp_path: Path):
    """store/state_log.py on its own: filters, the newest cut, and the columns' content."""
    import sqlalchemy as sa

    from orion_nb.store.models import StateRow, TaskRun
    from orion_nb.store.state_log import transitions

    db = tmp_path / "direct.db"
    now = time.time()
    flow_id, plain, kept = new_id(), new_id(), new_id()
    events: list[tuple[Any, ...]] = [
        flow_event(flow_id, "f", "r", {}, (), None, None, "h", os.getpid(), now),
        state_event(flow_id, "flow", "PENDING", "Pending", now, None, None, 0),
    ]
    for rid, rule in ((plain, None), (kept, "SomeRule")):
        events += [
            task_event(rid, flow_id, "t", "t-key", "0", "t-0", (), now),
            state_event(rid, "task", "PENDING", "Pending", now, None, None, 1),
            state_event(rid, "task", "RUNNING", "Running", now + 1, None, None, 1),
            state_event(rid, "task", "COMPLETED", "Completed", now + 2, "done", rule, 1),
        ]
    # the plain run's Completed carries a message: make it plain again
    events[5] = state_event(plain, "task", "COMPLETED", "Completed", now + 2, None, None, 1)
    _write(db, events, leave_out=True)
    engine = sa.create_engine(f"sqlite:///{db}")
    cols = ["id", "run_id", "run_kind", "type", "name", "timestamp", "message", "rule"]

    def read(**kw: Any) -> list[tuple[Any, ...]]:
        log = transitions(True, **kw)
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(sa.select(*(log.c[c] for c in cols)).order_by(log.c.id))
            ]

    everything = read()
    assert [r[0] for r in everything] == list(range(1, 8))
    left_out = [r for r in everything if r[1] == plain]
    assert [(r[2], r[3], r[4], r[6], r[7]) for r in left_out] == [
        ("task", "PENDING", "Pending", None, None),
        ("task", "RUNNING", "Running", None, None),
        ("task", "COMPLETED", "Completed", None, None),
    ]
    # timestamps come back as the stored text, like the states table's own
    assert left_out[0][5] == rows(db, "select created from task_runs where id = ?", plain)[0][0]
    assert left_out[2][5] == rows(db, "select end_time from task_runs where id = ?", plain)[0][0]
    only = read(states_where=StateRow.run_id == kept, tasks_where=TaskRun.id == kept)
    assert {r[1] for r in only} == {kept} and [r[7] for r in only][-1] == "SomeRule"
    assert read(states_where=StateRow.run_id == plain, tasks_where=TaskRun.id == plain) == left_out
    # newest=N holds at least the N highest ids
    assert [r[0] for r in read(newest=2)][-2:] == [6, 7]
    assert {r[0] for r in read(newest=4)} >= {4, 5, 6, 7}
    engine.dispose()
