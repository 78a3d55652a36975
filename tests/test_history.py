"""The store round trip through the public DataFrame API, on a real SQLite file."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

import orion_nb
from orion_nb import flow, task
from orion_nb.errors import ConfigurationError
from orion_nb.store import database


@task
def square(x):
    return x * x


@flow(name="squares")
def squares(n: int = 3):
    return [square(i) for i in range(n)]


def test_frames_have_aware_datetimes_durations_and_categoricals():
    squares(2)
    fr = orion_nb.flow_runs()
    tr = orion_nb.task_runs()
    st = orion_nb.states()
    for df, cols in (
        (fr, ["start_time", "end_time", "created"]),
        (tr, ["start_time", "end_time", "created"]),
        (st, ["timestamp"]),
    ):
        for c in cols:
            assert isinstance(df[c].dtype, pd.DatetimeTZDtype), c
            assert str(df[c].dt.tz) == "UTC"
    assert pd.api.types.is_timedelta64_dtype(fr["duration"])
    assert (tr["duration"] >= pd.Timedelta(0)).all()
    assert isinstance(fr["state_name"].dtype, pd.CategoricalDtype)
    assert "Completed" in list(fr["state_name"].cat.categories)
    now = datetime.now(UTC)
    assert (now - fr["start_time"].iloc[0]) < timedelta(minutes=1)


def test_newest_first_and_filters():
    squares(1)
    squares(2)

    @flow(name="other")
    def other():
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        other()
    fr = orion_nb.flow_runs()
    assert list(fr["flow_name"]) == ["other", "squares", "squares"]
    assert list(orion_nb.flow_runs(flow_name="squares")["parameters"]) == [{"n": 2}, {"n": 1}]
    assert list(orion_nb.flow_runs(state="Failed")["flow_name"]) == ["other"]
    assert list(orion_nb.flow_runs(state="FAILED")["flow_name"]) == ["other"]
    assert len(orion_nb.flow_runs(limit=1)) == 1
    assert orion_nb.flow_runs(since=datetime.now(UTC) + timedelta(hours=1)).empty
    newest = fr.iloc[1]["id"]
    assert len(orion_nb.task_runs(flow_run_id=newest)) == 2
    assert len(orion_nb.task_runs(task_name="square")) == 3


def test_states_record_rule_and_reason_per_transition():
    @task(retries=1, retry_delay_seconds=0)
    def once():
        once.n = getattr(once, "n", 0) + 1  # type: ignore[attr-defined]
        if once.n == 1:  # type: ignore[attr-defined]
            raise ValueError("first")

    once()
    run_id = orion_nb.task_runs().iloc[0]["id"]
    st = orion_nb.states(run_id)
    assert list(st["name"].astype(str)) == [
        "Completed",
        "Retrying",
        "AwaitingRetry",
        "Running",
        "Pending",
    ]
    assert st["rule"].isna().sum() == 4  # only the rule that intervened is named
    assert st[st["name"] == "AwaitingRetry"].iloc[0]["rule"] == "RetryFailedRuns"


def test_committed_and_visible_to_another_process_when_the_flow_returns(db_path: Path):
    squares(3)
    # read the file directly, from another process, without going through orion_nb
    code = textwrap.dedent(
        f"""
        import sqlite3
        con = sqlite3.connect({str(db_path)!r})
        print(con.execute("select count(*) from task_runs where state_name='Completed'").fetchone()[0])
        print(con.execute("select state_name from flow_runs").fetchone()[0])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["3", "Completed"]


def test_history_from_another_process_through_the_api(orion_home: Path):
    squares(2)
    code = "import orion_nb; df = orion_nb.flow_runs(); print(len(df), df.iloc[0]['flow_name'])"
    env = {**os.environ, "ORION_NB_HOME": str(orion_home), "ORION_NB_DATABASE_URL": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["1", "squares"]


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
    env = {**os.environ, "ORION_NB_HOME": str(home)}
    env.pop("ORION_NB_DATABASE_URL", None)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    con = sqlite3.connect(home / "orion.db")
    assert con.execute("select state_name from task_runs").fetchall() == [("Completed",)]


def test_logs_frame():
    @flow
    def talk():
        orion_nb.get_run_logger().info("one")
        orion_nb.get_run_logger().error("two")

    talk()
    lg = orion_nb.logs()
    assert list(lg["message"]) == ["two", "one"]
    assert list(orion_nb.logs(level="error")["message"]) == ["two"]
    assert lg["flow_run_id"].iloc[0] == orion_nb.flow_runs().iloc[0]["id"]


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


def test_runs_of_a_killed_process_are_marked_crashed(orion_home: Path):
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
