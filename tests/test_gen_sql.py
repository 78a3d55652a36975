"""The SQLite path's SQL compiled ahead of time (store/gen_sql.py -> store/_sqlite_sql.py).

The first run of a process sets up and writes a SQLite history through ``sqlite3`` alone; these
tests hold that path to what SQLAlchemy and Alembic would have done.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from orion_nb import settings
from orion_nb.orchestration.recovery_rules import Crash
from orion_nb.store import _sqlite_sql, database, gen_sql, recovery
from tests.conftest import child_env


def test_the_generated_module_is_current():
    """Regenerates it from the models and migrations: a change there needs a regeneration."""
    assert gen_sql.TARGET.read_text(encoding="utf-8") == gen_sql.render(), (
        "orion_nb/store/_sqlite_sql.py is out of date: run `python -m orion_nb.store.gen_sql`"
    )
    assert _sqlite_sql.HEAD_REVISION == database.HEAD_REVISION


def _master(path: Path) -> list[tuple[str, str, str, str]]:
    """``sqlite_master`` with whitespace normalised, in a stable order."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
        version = con.execute("SELECT version_num FROM alembic_version").fetchall()
    finally:
        con.close()
    norm = [(t, n, tb, " ".join((sql or "").split())) for t, n, tb, sql in rows]
    return [*sorted(norm), ("version", str(version), "", "")]


def test_a_new_database_set_up_by_sqlite3_equals_alembic_upgrade_head(tmp_path: Path):
    via_alembic = tmp_path / "alembic.db"
    engine = database.create_engine(f"sqlite:///{via_alembic}")
    with engine.begin() as conn:
        database._upgrade(conn)
    engine.dispose()
    fast = tmp_path / "fast.db"
    assert database.open_sqlite(settings.sqlite_url(fast), str(fast)) == "created"
    assert _master(fast) == _master(via_alembic)
    # opened again, it is recognised as current and left alone
    before = fast.read_bytes()
    assert database.open_sqlite(settings.sqlite_url(fast), str(fast)) == "current"
    assert fast.read_bytes() == before


def test_an_older_revision_is_left_to_alembic(tmp_path: Path):
    from tests.test_migrations import alembic

    old = tmp_path / "old.db"
    engine = database.create_engine(f"sqlite:///{old}")
    with engine.begin() as conn:
        alembic(conn, "upgrade", "0001")
    engine.dispose()
    assert database.open_sqlite(settings.sqlite_url(old), str(old)) is None
    con = sqlite3.connect(old)
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    con.close()


@pytest.mark.parametrize(
    "name", ["orion.db", "a b/runs?v=1.db", "100%.db", "a#b.db", "ü+x.db"], ids=repr
)
def test_sqlite_urls_are_written_and_read_as_sqlalchemy_does(tmp_path: Path, name: str):
    path = str(tmp_path / name)
    url = settings.sqlite_url(path)
    assert url == sa.engine.URL.create("sqlite", database=path).render_as_string(
        hide_password=False
    )
    assert database.sqlite_path(url) == sa.engine.make_url(url).database == path
    assert database.sqlite_path("sqlite:///rel.db") == "rel.db"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///:memory:",
        "sqlite:///file:x.db?mode=ro&uri=true",
        "sqlite:///x.db?timeout=3",
        "postgresql://u@h/db",
        "sqlite://",
    ],
)
def test_other_urls_take_the_sqlalchemy_path(url: str):
    assert database.sqlite_path(url) is None


def _open_runs_db(path: Path) -> None:
    """A history holding an open flow run (with an open task run) of a process that is gone."""
    assert database.open_sqlite(settings.sqlite_url(path), str(path)) == "created"
    con = sqlite3.connect(path)
    ts = "2026-01-01 00:00:00.000000"
    con.execute(
        "INSERT INTO flow_runs (id, flow_name, name, parameters, state_type, state_name, created,"
        " run_count, tags, host, pid, pid_start) VALUES ('f1', 'f', 'n', '{}', 'RUNNING',"
        " 'Running', ?, 1, '[]', ?, 999999, '1.00')",
        (ts, os.uname().nodename),
    )
    con.execute(
        "INSERT INTO task_runs (id, flow_run_id, task_name, task_key, dynamic_key, name,"
        " state_type, state_name, created, run_count, tags) VALUES ('t1', 'f1', 't', 'k', '0',"
        " 't-0', 'RUNNING', 'Running', ?, 1, '[]')",
        (ts,),
    )
    con.commit()
    con.close()


def _rows(path: Path) -> list[list[tuple[object, ...]]]:
    con = sqlite3.connect(path)
    try:
        return [
            con.execute(f"SELECT id, state_type, state_name, end_time, message FROM {t}").fetchall()
            for t in ("flow_runs", "task_runs")
        ] + [
            con.execute(
                "SELECT run_id, run_kind, type, name, timestamp, message, rule FROM states "
                "ORDER BY run_id"
            ).fetchall()
        ]
    finally:
        con.close()


def test_crash_recovery_through_sqlite3_writes_what_sqlalchemy_writes(tmp_path: Path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    _open_runs_db(a)
    _open_runs_db(b)
    now = time.time()
    crashes = [Crash("f1", "flow", "gone")]
    con = sqlite3.connect(a, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    found_a = recovery.find_crashed(con, 0.0, now)
    marked_a = recovery.mark_crashed(con, crashes, now)
    con.execute("COMMIT")
    con.close()
    engine = database.create_engine(settings.sqlite_url(b))
    with engine.begin() as conn:
        found_b = recovery.find_crashed(conn, 0.0, now)
        marked_b = recovery.mark_crashed(conn, crashes, now)
    engine.dispose()
    assert found_a == found_b and [c.run_id for c in found_a] == ["f1"]
    assert marked_a == marked_b == ["f1", "t1"]
    assert _rows(a) == _rows(b)
    assert _rows(a)[0][0][1:3] == ("CRASHED", "Crashed")


FIRST_RUN = textwrap.dedent(
    """
    import json, sys
    import orion_nb
    orion_nb.configure(display="none")

    @orion_nb.task
    def double(x):
        return 2 * x

    @orion_nb.flow
    def first(n):
        return [double(i) for i in range(n)]

    first(3)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic"))
    runs = orion_nb.flow_runs()
    print(json.dumps({"loaded": loaded, "flow_runs": len(runs),
                      "task_runs": len(orion_nb.task_runs()),
                      "states": list(runs["state_name"].astype(str))}))
    """
)


def test_a_first_run_imports_no_sqlalchemy_on_a_new_or_an_existing_database(tmp_path: Path):
    home = tmp_path / "home"
    for n in (1, 2):  # creates the database, then opens it
        out = subprocess.run(
            [sys.executable, "-c", FIRST_RUN], env=child_env(home), capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert out.stderr == ""
        got = json.loads(out.stdout)
        assert got["loaded"] == [], f"run {n} imported {got['loaded'][:5]} before its flow returned"
        # ... and the history API (which may import SQLAlchemy) reads what it wrote
        assert got["flow_runs"] == n and got["task_runs"] == 3 * n
        assert got["states"] == ["Completed"] * n


def test_a_new_database_that_replays_a_journal_still_gets_its_crashed_runs_marked(tmp_path: Path):
    """Crash detection is skipped for a database created just now, unless a journal filled it."""
    import socket

    import orion_nb
    from orion_nb.store.batches import Batch
    from orion_nb.store.journal import Journal
    from orion_nb.store.writer import Writer

    db = tmp_path / "new.db"
    url = settings.sqlite_url(db)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    now = time.time()
    row = dict.fromkeys(_sqlite_sql.WRITER["upsert_flow"][1])
    row |= {
        "id": "0" * 8 + "-0000-4000-8000-" + "0" * 12,
        "flow_name": "journaled",
        "name": "n",
        "parameters": {},
        "state_type": "RUNNING",
        "state_name": "Running",
        "created": now - 60,
        "start_time": now - 60,
        "heartbeat_at": now - 60,
        "run_count": 1,
        "tags": [],
        "host": socket.gethostname(),
        "pid": int(gone.stdout),
        "pid_start": "1.00",
    }
    Journal(tmp_path / "journal", url).write(Batch({"upsert_flow": [row]}))
    assert not db.exists()
    orion_nb.configure(home=tmp_path)  # where the journal is
    writer = Writer(url).start()  # creates the database, replays the journal, checks for crashes
    writer.close()
    con = sqlite3.connect(db)
    assert con.execute("SELECT flow_name, state_name FROM flow_runs").fetchall() == [
        ("journaled", "Crashed")
    ]
    con.close()
