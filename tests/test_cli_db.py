"""``orion-nb db ...`` and ``orion-nb runs reconcile`` as real subprocesses on a real SQLite file."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import orion_nb
from orion_nb import flow
from orion_nb.store import database


def cli(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "ORION_NB_HOME": str(home), "COLUMNS": "200", **(env or {})}
    if not env or "ORION_NB_DATABASE_URL" not in env:
        e.pop("ORION_NB_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "orion_nb.cli", *args], capture_output=True, text=True, env=e
    )


def test_info_upgrade_prune_and_reset(orion_home: Path, db_path: Path):
    @flow(name="old")
    def old():
        return 1

    old()
    old()
    con = sqlite3.connect(db_path)
    con.execute("update flow_runs set created='2020-01-01 00:00:00.000000'")
    con.commit()
    con.close()

    @flow(name="new")
    def new():
        return 2

    new()
    out = cli(orion_home, "db", "info")
    assert out.returncode == 0, out.stderr
    assert database.HEAD_REVISION in out.stdout and "flow runs" in out.stdout
    out = cli(orion_home, "db", "upgrade")
    assert out.returncode == 0 and "is current" in out.stdout
    out = cli(orion_home, "db", "prune", "--older-than", "30d")
    assert out.returncode == 0, out.stderr
    assert "deleted 2 flow runs" in out.stdout
    assert list(orion_nb.flow_runs()["flow_name"]) == ["new"]
    out = cli(orion_home, "db", "prune", "--older-than", "soon")
    assert out.returncode == 1 and "is not an age" in out.stdout
    out = cli(orion_home, "db", "reset", "--yes")
    assert out.returncode == 0, out.stderr
    assert orion_nb.flow_runs().empty


def test_db_commands_refuse_a_foreign_database(tmp_path: Path):
    other = tmp_path / "app.db"
    con = sqlite3.connect(other)
    con.execute("create table users (id integer)")
    con.commit()
    con.close()
    before = other.read_bytes()
    for args in (
        ("db", "reset", "--yes"),
        ("db", "upgrade"),
        ("db", "prune", "--older-than", "1d"),
    ):
        out = cli(tmp_path, *args, env={"ORION_NB_DATABASE_URL": f"sqlite:///{other}"})
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert "not an orion_nb history" in out.stdout and "Traceback" not in out.stderr
    assert other.read_bytes() == before


def test_runs_reconcile_marks_a_killed_standalone_task_run(orion_home: Path):
    code = textwrap.dedent(
        """
        import os, orion_nb
        orion_nb.configure(display="none", flush_interval=0.01)
        from orion_nb.engine import recorder
        @orion_nb.task
        def t():
            recorder.flush()
            os._exit(9)
        t()
        """
    )
    env = {**os.environ, "ORION_NB_HOME": str(orion_home)}
    env.pop("ORION_NB_DATABASE_URL", None)
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 9
    con = sqlite3.connect(orion_home / "orion.db")
    assert con.execute("select state_name from task_runs").fetchone() == ("Running",)
    out = cli(orion_home, "runs", "reconcile")
    assert out.returncode == 0, out.stderr
    assert "marked 1 run(s) Crashed" in out.stdout
    state, message = con.execute("select state_name, message from task_runs").fetchone()
    assert state == "Crashed" and "DetectCrashedRuns" in message
    rule = con.execute("select rule from states where name='Crashed'").fetchone()
    assert rule == ("DetectCrashedRuns",)
