"""The history read API (DataFrames, filters) on a real SQLite file.

The writer's behaviour is tested in ``test_writer.py``, set-up and recovery in
``test_database.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

import orion_nb
from orion_nb import flow, task


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
