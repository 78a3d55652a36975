"""The batched writer on a real SQLite file: poisoned batches, outages, exit, SIGTERM, heartbeats.

Every test drives the real writer (a thread and a sqlite3 connection of its own) and real
subprocesses where a process has to exit or be signalled.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orion_nb
from orion_nb import flow, task
from orion_nb._events import flow_event, log_event, state_event, task_event
from orion_nb.engine import recorder
from orion_nb.engine.params import new_id
from orion_nb.errors import OrionNBWarning
from orion_nb.store.writer import Writer
from tests._helpers import TASK_TRANSITIONS_SQL, TRANSITION_IDS_SQL
from tests.conftest import child_env, spawn

SURROGATE_NAME = b"caf\xe9.csv".decode("utf-8", "surrogateescape")


def count(db: Path, sql: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def test_pending_records_are_flushed_at_interpreter_exit(tmp_path: Path):
    home = tmp_path / "exit_home"
    code = textwrap.dedent(
        """
        import orion_nb
        orion_nb.configure(display="none", flush_interval=60)
        @orion_nb.task
        def t(x):
            return x
        @orion_nb.flow
        def f():
            return 1
        f()
        fut = t.submit(1)   # a standalone submitted task: nothing flushes it but exit
        fut.result()
        """
    )
    subprocess.run([sys.executable, "-c", code], env=child_env(home), check=True)
    con = sqlite3.connect(home / "orion.db")
    assert con.execute("select state_name from task_runs").fetchall() == [("Completed",)]


def test_a_lone_surrogate_in_a_log_line_is_stored_escaped_and_later_runs_are_written():
    @flow(name="reads-files", log_prints=True)
    def reads():
        orion_nb.get_run_logger().info(f"opened {SURROGATE_NAME}")
        print(SURROGATE_NAME)

    @flow(name=f"after-{SURROGATE_NAME}")
    def later():
        return 1

    reads()
    later()
    fr = orion_nb.flow_runs()
    assert sorted(fr["flow_name"]) == ["after-caf\\udce9.csv", "reads-files"]
    assert set(fr["state_name"].astype(str)) == {"Completed"}
    messages = set(orion_nb.logs()["message"])
    assert "opened caf\\udce9.csv" in messages and "caf\\udce9.csv" in messages
    # filtering by the name as given finds the stored (escaped) one
    assert len(orion_nb.flow_runs(flow_name=f"after-{SURROGATE_NAME}")) == 1


def test_a_nul_and_huge_text_are_stored_escaped_and_bounded():
    @flow(name="nul\x00flow")
    def nul(text: str):
        orion_nb.get_run_logger().warning("x" * 3_000_000)
        return text

    nul("a\x00b")
    row = orion_nb.flow_runs().iloc[0]
    assert row["flow_name"] == "nul\\x00flow" and row["parameters"] == {"text": "a\\x00b"}
    message = orion_nb.logs()["message"].iloc[0]
    assert len(message) < 1_100_000 and message.endswith("[truncated 2,000,000 characters]")


def _writer(tmp_path: Path) -> Writer:
    return Writer(f"sqlite:///{tmp_path / 'direct.db'}", flush_interval=0.01).start()


def test_a_refused_row_is_isolated_recorded_as_an_error_log_and_everything_else_written(
    tmp_path: Path,
):
    w = _writer(tmp_path)
    try:
        flow_id = new_id()
        now = time.time()
        w.put(flow_event(flow_id, "f", "run", {}, (), None, None, "h", os.getpid(), now))
        tasks = [new_id() for _ in range(40)]
        for i, tid in enumerate(tasks):
            # one task run's creation time is no date at all: SQLite's types refuse it
            w.put(
                task_event(
                    tid,
                    flow_id,
                    "t",
                    "t-key",
                    str(i),
                    f"t-{i}",
                    (),
                    now if i != 17 else float("inf"),
                )
            )
            w.put(state_event(tid, "task", "COMPLETED", "Completed", now, None, None, 1))
        w.put(state_event(flow_id, "flow", "COMPLETED", "Completed", now, None, None, 1))
        with pytest.warns(OrionNBWarning, match="refused a record"):
            w.flush(timeout=30)
        # the writer keeps going afterwards
        w.put(log_event(flow_id, None, "INFO", time.time(), "still writing"))
        w.flush(timeout=30)
    finally:
        w.close()
    db = tmp_path / "direct.db"
    assert count(db, "select count(*) from task_runs") == 39
    assert count(db, "select count(*) from states where run_kind='task'") == 40
    assert count(db, "select count(*) from logs where message='still writing'") == 1
    con = sqlite3.connect(db)
    (msg,) = con.execute("select message from logs where level='ERROR'").fetchone()
    assert f"task run {tasks[17]}" in msg and "dropped" in msg
    assert w.refused == 1


def test_exit_with_a_locked_database_journals_and_the_next_process_replays_exactly_once(
    tmp_path: Path,
):
    home = tmp_path / "home"
    db = home / "orion.db"
    code = textwrap.dedent(
        """
        import orion_nb
        orion_nb.configure(display="none", flush_interval=60)
        @orion_nb.task
        def t(x):
            orion_nb.get_run_logger().info(f"task {x}")
            return x
        @orion_nb.flow(name="before-lock")
        def f(n):
            return [t(i) for i in range(n)]
        f(1)
        print("READY", flush=True)
        input()
        f(50)
        """
    )
    proc = spawn(code, child_env(home), talk=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another process holds the database for the whole exit
    try:
        start = time.monotonic()
        _out, err = proc.communicate("\n", timeout=60)
        elapsed = time.monotonic() - start
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert proc.returncode == 0, err
    assert elapsed < 15, f"exit took {elapsed:.1f} s"
    assert "saved to the journal" in err and str(home / "journal") in err
    assert len(list((home / "journal").rglob("*.jsonl"))) >= 1
    # the next process that opens the history writes them, and a second replay adds nothing
    orion_nb.configure(home=home, database_url=f"sqlite:///{db}")
    assert len(orion_nb.task_runs()) == 51
    assert list((home / "journal").rglob("*.jsonl")) == []
    orion_nb.configure(database_url=f"sqlite:///{tmp_path / 'other.db'}")
    orion_nb.configure(database_url=f"sqlite:///{db}")
    assert len(orion_nb.task_runs()) == 51
    assert len(orion_nb.logs()) == 51
    log = orion_nb.states()
    assert len(log) == count(db, f"select count(*) from ({TRANSITION_IDS_SQL})")
    assert log["id"].is_unique
    assert count(db, TASK_TRANSITIONS_SQL) == 51 * 3


def test_a_journal_replayed_twice_writes_each_batch_once(tmp_path: Path):
    from orion_nb.store.batches import Batch
    from orion_nb.store.journal import Journal

    url = f"sqlite:///{tmp_path / 'j.db'}"
    journal = Journal(tmp_path / "journal", url)
    rows = [(new_id(), "task", "COMPLETED", "Completed", time.time(), None, None) for _ in range(5)]
    batch = Batch({"states": rows})
    file = journal.write(batch)
    copy = journal.dir / ("z" + file.path.name)
    copy.write_bytes(file.path.read_bytes())  # the same batch twice, as after a crash mid-replay
    orion_nb.configure(home=tmp_path, database_url=url)
    assert len(orion_nb.states()) == 5  # opening the history replays, each batch once
    assert not list(journal.dir.glob("*.jsonl"))


def test_sigterm_mid_flow_writes_every_finished_task_run_then_terminates(tmp_path: Path):
    home = tmp_path / "home"
    code = textwrap.dedent(
        """
        import os, signal, orion_nb
        orion_nb.configure(display="none", flush_interval=60)
        @orion_nb.task
        def t(i):
            return i
        @orion_nb.flow(name="terminated")
        def f():
            for i in range(30):
                t(i)
            os.kill(os.getpid(), signal.SIGTERM)   # as `kill PID` or a container stop would
            for i in range(30, 60):
                t(i)
        f()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    db = home / "orion.db"
    assert count(db, "select count(*) from task_runs where state_name='Completed'") == 30
    con = sqlite3.connect(db)
    state, message = con.execute("select state_name, message from flow_runs").fetchone()
    assert state == "Crashed" and "SIGTERM" in message


def test_the_sqlite_file_deleted_while_running_is_recreated_with_a_warning(db_path: Path):
    @flow(name="first")
    def first():
        return 1

    @flow(name="second")
    def second():
        return 2

    first()
    for p in db_path.parent.glob("orion.db*"):
        p.unlink()
    with pytest.warns(OrionNBWarning, match="was deleted or replaced"):
        second()
    assert list(orion_nb.flow_runs()["flow_name"]) == ["second"]


def test_open_runs_get_heartbeats_from_the_writer_thread(db_path: Path):
    orion_nb.configure(heartbeat_interval=0.2)
    try:
        recorder.get_writer().heartbeat_interval = 0.2  # type: ignore[union-attr]

        @flow(name="slow")
        def slow():
            time.sleep(1.0)

        slow()
    finally:
        orion_nb.configure(heartbeat_interval=5)
    con = sqlite3.connect(db_path)
    created, beat, pid_start = con.execute(
        "select created, heartbeat_at, pid_start from flow_runs"
    ).fetchone()
    assert beat > created  # updated while the run was going
    assert pid_start  # the process start, so a reused pid is recognised


def test_memory_stays_bounded_during_an_outage_and_nothing_is_lost(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'bounded.db'}"
    w = Writer(url, flush_interval=0.01).start()
    w.max_pending_rows = 100
    lock = sqlite3.connect(tmp_path / "bounded.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            for i in range(1000):
                w.put(log_event(None, new_id(), "INFO", time.time(), f"line {i}"))
                if i % 100 == 0:
                    time.sleep(0.05)
            deadline = time.monotonic() + 20
            while w.journaled < 700 and time.monotonic() < deadline:
                time.sleep(0.1)
        assert sum(len(b) for b in w._backlog) <= 200
        assert w.journaled >= 700
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    w.flush(timeout=60)
    w.close()
    assert count(tmp_path / "bounded.db", "select count(*) from logs") == 1000


TEXT = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), min_size=0, max_size=40
) | st.sampled_from([SURROGATE_NAME, "\x00", "a\x00b", "\ud800", "x" * 5000, "[/]", "é" * 10])
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=TEXT, task_name=TEXT, message=TEXT, value=VALUES)
def test_any_name_message_or_parameter_is_written_exactly_once(name, task_name, message, value):
    marker = new_id()

    # a blank name is refused at definition (DefinitionError), before any record exists
    @task(name=task_name if task_name.strip() else "t")
    def t(v):
        orion_nb.get_run_logger().info(message)
        return 1

    @flow(name=name if name.strip() else "f", flow_run_name=marker)
    def f(v):
        return t(v)

    assert f(value) == 1
    fr = orion_nb.flow_runs()
    fr = fr[fr["name"] == marker]
    assert len(fr) == 1 and fr.iloc[0]["state_name"] == "Completed"
    tr = orion_nb.task_runs(flow_run_id=fr.iloc[0]["id"])
    assert list(tr["state_name"].astype(str)) == ["Completed"]
    assert len(orion_nb.logs(flow_run_id=fr.iloc[0]["id"])) == 1


def test_a_result_recorded_after_its_run_was_written_as_finished_still_lands(tmp_path: Path):
    from orion_nb._events import cache_event

    w = _writer(tmp_path)
    try:
        rid = new_id()
        w.put(task_event(rid, None, "t", "m.t", "0", "t-0", (), time.time()))
        w.put(state_event(rid, "task", "PENDING", "Pending", time.time(), None, None, 0))
        w.put(state_event(rid, "task", "COMPLETED", "Completed", time.time(), None, None, 1))
        w.flush()  # the finished row is written and forgotten by the writer
        w.put(cache_event(rid, "k" * 32, time.time() + 60, "/results/x.pkl"))
        w.flush()
    finally:
        w.close()
    db = tmp_path / "direct.db"
    con = sqlite3.connect(db)
    row = con.execute("select cache_key, result_ref, state_name from task_runs").fetchone()
    con.close()
    assert row == ("k" * 32, "/results/x.pkl", "Completed")


def test_the_writer_leaves_the_garbage_collector_as_it_found_it():
    """It pauses the collector while it builds a batch (rows, never cycles), never for good."""
    import gc

    @task
    def one(i: int) -> int:
        return i

    @flow
    def some() -> int:
        return sum(one(i) for i in range(500))

    assert gc.isenabled()
    assert some() == sum(range(500))
    assert gc.isenabled()
    gc.disable()
    try:
        assert some() == sum(range(500))
        assert not gc.isenabled()  # a program that turned it off keeps it off
    finally:
        gc.enable()


def test_events_the_writer_cannot_read_are_reported_and_it_goes_on(tmp_path: Path):
    """A malformed event (a bug) never hangs a flush: a warning says what was dropped."""
    w = _writer(tmp_path)
    try:
        with pytest.warns(OrionNBWarning, match="could not turn 1 run events.*a bug in orion_nb"):
            w.put(("state", "too", "short"))  # inside: the writer may read it at once
            w.flush(timeout=30)
        assert w.dropped == 1
        flow_id = new_id()
        w.put(flow_event(flow_id, "f", "after", {}, (), None, None, "h", os.getpid(), time.time()))
        w.flush(timeout=30)
    finally:
        w.close()
    assert count(tmp_path / "direct.db", "select count(*) from flow_runs where name='after'") == 1


def test_warnings_turned_into_errors_do_not_stop_the_writer(tmp_path: Path, caplog):
    """Under ``-W error`` the writer's own warnings would end its thread: it logs them."""
    w = _writer(tmp_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", OrionNBWarning)
            with caplog.at_level("ERROR", logger="orion_nb"):
                w.put(("state", "too", "short"))
                w.flush(timeout=30)
            assert "could not turn 1 run events" in caplog.text
            flow_id = new_id()
            w.put(flow_event(flow_id, "f", "later", {}, (), None, None, "h", os.getpid(), 0.0))
            w.flush(timeout=30)
    finally:
        w.close()
    assert count(tmp_path / "direct.db", "select count(*) from flow_runs where name='later'") == 1
