"""Database set-up and recovery on real SQLite files and real subprocesses.

Creating and migrating the schema (only on an empty or our own database, in one transaction,
under a lock), clear errors for every way a database can be unusable, crash detection.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import orion_nb
from orion_nb import flow, task
from orion_nb.errors import ConfigurationError, ParameterError
from orion_nb.store import database
from tests.conftest import FLOWS_SCRIPT, child_env, require_or_skip, spawn, wait_all
from tests.test_migrations import alembic


@task
def square(x):
    return x * x


@flow(name="squares")
def squares(n: int = 3):
    return [square(i) for i in range(n)]


def test_unusable_database_urls_fail_early_with_masked_password():
    with pytest.raises(ConfigurationError, match="is not a database URL"):
        orion_nb.configure(database_url="runs.db")
    orion_nb.configure(database_url="mysql://admin:hunter2@localhost/db")
    try:
        with pytest.raises(ConfigurationError) as info:
            squares(1)
        assert "hunter2" not in str(info.value) and "***" in str(info.value)
        assert "supports SQLite" in str(info.value)
        orion_nb.configure(database_url="postgresql://admin:hunter2@127.0.0.1:1/nope")
        with pytest.raises(ConfigurationError) as info:
            squares(1)
        assert "hunter2" not in str(info.value)
        assert "Cannot use the database 'postgresql+asyncpg://admin:***@127.0.0.1:1/nope'" in str(
            info.value
        ) or "admin:***@127.0.0.1:1/nope" in str(info.value)
    finally:
        orion_nb.configure(
            database_url="sqlite:///"
            + str(Path(orion_nb.settings.get_settings().home) / "orion.db")
        )


def test_a_directory_that_cannot_be_created_is_reported(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    orion_nb.configure(database_url=f"sqlite:///{blocker}/sub/orion.db")
    try:
        with pytest.raises(ConfigurationError, match="Cannot create the directory"):
            squares(1)
    finally:
        orion_nb.configure(
            database_url="sqlite:///"
            + str(Path(orion_nb.settings.get_settings().home) / "orion.db")
        )


def test_switching_databases_keeps_what_was_recorded(tmp_path: Path, db_path: Path):
    squares(1)
    other = tmp_path / "other.db"
    orion_nb.configure(database_url=f"sqlite:///{other}")
    squares(2)
    assert len(orion_nb.flow_runs()) == 1
    orion_nb.configure(database_url=f"sqlite:///{db_path}")
    assert len(orion_nb.flow_runs()) == 1
    assert orion_nb.flow_runs().iloc[0]["parameters"] == {"n": 1}


def test_new_database_is_created_from_models_and_stamped_at_head(db_path: Path):
    squares(1)
    con = sqlite3.connect(db_path)
    version = con.execute("select version_num from alembic_version").fetchone()[0]
    assert version == database.HEAD_REVISION
    tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    assert {"flow_runs", "task_runs", "task_run_inputs", "states", "logs", "deployments"} <= tables
    assert con.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_runs_of_a_killed_process_are_marked_crashed_by_the_next_process(orion_home: Path):
    code = textwrap.dedent(
        """
        import os, orion_nb
        orion_nb.configure(display="none", flush_interval=0.01)
        from orion_nb.engine import recorder
        @orion_nb.task
        def t():
            recorder.flush()
            os._exit(9)  # the kernel dies mid-task: nothing can record the end
        @orion_nb.flow(name="doomed")
        def f():
            t()
        f()
        """
    )
    env = {**os.environ, "ORION_NB_HOME": str(orion_home)}
    env.pop("ORION_NB_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 9
    con = sqlite3.connect(orion_home / "orion.db")
    assert con.execute("select state_name from flow_runs where flow_name='doomed'").fetchone() == (
        "Running",
    )
    # the next process to open the history notices and says what happened
    orion_nb.configure(database_url=f"sqlite:///{orion_home / 'other.db'}")
    orion_nb.configure(database_url=f"sqlite:///{orion_home / 'orion.db'}")
    fr = orion_nb.flow_runs(flow_name="doomed")
    assert fr.iloc[0]["state_name"] == "Crashed"
    assert "kernel restarted or killed" in fr.iloc[0]["message"]
    tr = orion_nb.task_runs(flow_run_id=fr.iloc[0]["id"])
    assert list(tr["state_name"].astype(str)) == ["Crashed"]


def _snapshot(path: Path) -> bytes:
    return path.read_bytes()


def test_another_applications_database_is_refused_and_left_untouched(tmp_path: Path):
    other = tmp_path / "inventory.db"
    con = sqlite3.connect(other)
    con.execute("create table products (id integer primary key, name text)")
    con.execute("insert into products (name) values ('widget')")
    con.commit()
    con.close()
    before = _snapshot(other)
    orion_nb.configure(database_url=f"sqlite:///{other}")
    with pytest.raises(ConfigurationError, match=r"is not an orion_nb history.*products") as info:
        squares(1)
    assert str(other) in str(info.value)
    with pytest.raises(ConfigurationError, match="is not an orion_nb history"):
        orion_nb.flow_runs()
    assert _snapshot(other) == before


def test_a_database_of_a_newer_orion_nb_is_refused_clearly(tmp_path: Path, db_path: Path):
    squares(1)
    con = sqlite3.connect(db_path)
    con.execute("update alembic_version set version_num='0099'")
    con.commit()
    con.close()
    orion_nb.configure(database_url=f"sqlite:///{tmp_path / 'elsewhere.db'}")
    orion_nb.configure(database_url=f"sqlite:///{db_path}")
    with pytest.raises(ConfigurationError, match=r"newer orion_nb \(schema revision 0099"):
        squares(1)
    con = sqlite3.connect(db_path)
    assert con.execute("select count(*) from flow_runs").fetchone() == (1,)


def test_a_failed_migration_leaves_nothing_half_done(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = database.create_engine(url)
    with engine.begin() as conn:
        alembic(conn, "upgrade", "0001")
    engine.dispose()
    con = sqlite3.connect(tmp_path / "old.db")
    # something in the way of the last step of 0002 (creating write_batches)
    con.execute("create view write_batches as select 1 as id")
    con.commit()
    before = con.execute("select sql from sqlite_master where name='task_runs'").fetchone()
    con.close()
    orion_nb.configure(database_url=url)
    with pytest.raises(ConfigurationError, match="rolled back, so nothing was changed"):
        squares(1)
    con = sqlite3.connect(tmp_path / "old.db")
    assert con.execute("select version_num from alembic_version").fetchone() == ("0001",)
    assert con.execute("select sql from sqlite_master where name='task_runs'").fetchone() == before


def test_in_memory_sqlite_is_refused_with_the_reason(db_path: Path):
    with pytest.raises(ConfigurationError, match="in-memory SQLite database"):
        orion_nb.configure(database_url="sqlite:///:memory:")
    assert orion_nb.settings.get_settings().database_url == f"sqlite:///{db_path}"


@pytest.mark.parametrize(
    "name", ["runs?v=1", "100%", "a#b"], ids=["question mark", "percent", "hash"]
)
def test_a_home_path_with_url_characters_keeps_the_file_where_it_belongs(tmp_path: Path, name: str):
    home = tmp_path / name
    code = "import orion_nb\n@orion_nb.flow\ndef f():\n    return 1\nf()\nprint(len(orion_nb.flow_runs()))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=child_env(home), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1"]
    assert (home / "orion.db").exists()


def test_a_relative_sqlite_url_is_resolved_once_and_chdir_changes_nothing(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    code = textwrap.dedent(
        """
        import os, orion_nb
        orion_nb.configure(display="none", database_url="sqlite:///rel.db")
        @orion_nb.flow
        def f():
            return 1
        f()
        os.chdir("../b")
        f()
        print(len(orion_nb.flow_runs()))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path / "a",
        env=child_env(tmp_path / "h"),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2"]
    assert (tmp_path / "a" / "rel.db").exists() and not (tmp_path / "b" / "rel.db").exists()


def test_a_read_only_history_can_be_read_and_writing_says_why(tmp_path: Path):
    """A history on a read-only file system (a shared volume, a backup), in a real process."""
    home = tmp_path / "home"
    subprocess.run(
        [sys.executable, "-c", "import orion_nb\n@orion_nb.flow\ndef f():\n    return 1\nf()"],
        env=child_env(home),
        check=True,
        capture_output=True,
    )
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = (
        subprocess.run(["mount", "--bind", str(home), str(ro)], capture_output=True).returncode == 0
        and subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True
        ).returncode
        == 0
    )
    require_or_skip(mounted, "a read-only bind mount (root)")
    code = textwrap.dedent(
        """
        import orion_nb
        orion_nb.configure(display="none")
        print("rows", len(orion_nb.flow_runs()))
        @orion_nb.flow
        def g():
            return 2
        try:
            g()
        except orion_nb.errors.ConfigurationError as exc:
            print("error", exc)
        """
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], env=child_env(ro), capture_output=True, text=True
        )
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
    assert out.returncode == 0, out.stderr
    assert "rows 1" in out.stdout
    assert "read-only" in out.stdout and "reading this history still works" in out.stdout
    assert "Traceback" not in out.stderr


def test_a_full_disk_is_reported_as_such_not_as_a_rollback_error(tmp_path: Path):
    from orion_nb.store.batches import Batch
    from orion_nb.store.targets import SQLiteTarget

    url = f"sqlite:///{tmp_path / 'full.db'}"
    engine = database.create_engine(url)
    with engine.begin() as conn:
        database._migrate_conn(conn)
    target = SQLiteTarget(engine, str(tmp_path / "full.db"))
    pages = target.conn.execute("pragma page_count").fetchone()[0]
    target.conn.execute(f"pragma max_page_count={pages}")  # no room for one more page
    logs = [
        {
            "flow_run_id": None,
            "task_run_id": None,
            "level": "INFO",
            "timestamp": time.time(),
            "message": "x" * 2000,
        }
        for _ in range(50)
    ]
    with pytest.raises(sqlite3.OperationalError, match="full"):
        target.write(Batch({"logs": logs}))
    assert not target.conn.in_transaction
    target.close()
    engine.dispose()


def test_a_nul_or_a_wrong_type_in_a_filter_is_handled_clearly():
    @flow(name="a\x00b")
    def f():
        return 1

    f()
    assert len(orion_nb.flow_runs(flow_name="a\x00b")) == 1
    with pytest.raises(ParameterError, match="flow_name must be a string"):
        orion_nb.flow_runs(flow_name=3)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="limit must be a whole number"):
        orion_nb.flow_runs(limit=-1)


@pytest.mark.slow
def test_eight_processes_set_up_a_fresh_database_at_once(tmp_path: Path):
    home = tmp_path / "fresh"
    wait_all([spawn(FLOWS_SCRIPT, child_env(home), "1", "20") for _ in range(8)])
    con = sqlite3.connect(home / "orion.db")
    assert con.execute("select count(*) from flow_runs").fetchone() == (8,)
    assert con.execute("select count(*) from task_runs").fetchone() == (160,)
