"""Scheduled runs on a shared PostgreSQL history: several ``serve`` processes, each slot once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import orion_nb
from orion_nb.export import deployments as dep
from orion_nb.export.deployments import DeploymentSpec
from orion_nb.export.schedules import Schedule
from orion_nb.store import deployments as sql
from tests.conftest import require_or_skip
from tests.export.helpers import race_claims
from tests.postgres.test_postgres_store import ADMIN_URL, _admin

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(orion_home: Path) -> Iterator[str]:
    name = f"orion_serve_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server here
        require_or_skip(False, f"PostgreSQL at {ADMIN_URL} ({type(exc).__name__}: {exc})")
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    orion_nb.configure(database_url=url)
    try:
        yield url
    finally:
        orion_nb.configure(database_url=f"sqlite:///{orion_home / 'orion.db'}")
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_a_slot_is_claimed_once_by_racing_claimers_on_postgres(pg: str, tmp_path: Path):
    script = tmp_path / "job.py"
    script.write_text("print(1)\n")
    d = dep.register(DeploymentSpec("race", script, "job", Schedule.parse(interval=60)))
    slot = datetime(2030, 1, 1, tzinfo=UTC)
    made = [dep.call(sql.schedule_slots, d, [slot], slot, lambda: "r") for _ in range(3)]
    assert made == [1, 0, 0]
    (due,) = dep.call(sql.due_runs, d["id"], slot + timedelta(seconds=1))
    wins = race_claims(due["id"], 6)
    assert sorted(wins) == [False] * 5 + [True]


def test_two_serve_processes_on_one_database_run_each_slot_once(pg: str, tmp_path: Path):
    script = tmp_path / "job.py"
    script.write_text(
        "import time\nfrom orion_nb import flow\n\n@flow(name='shared-job')\ndef job():\n"
        "    time.sleep(0.3)\n    return 1\n\njob()\n"
    )
    # the schema first: two processes creating it at the same moment on an empty database
    # collide in Postgres's catalog (a store issue, reported); here they share a ready one
    dep.register(DeploymentSpec("job.py", script, "shared-job", Schedule.parse(interval=1)))
    env = {**os.environ, "ORION_NB_HOME": str(tmp_path / "home"), "ORION_NB_DATABASE_URL": pg}
    cmd = [sys.executable, "-m", "orion_nb.cli", "serve", str(script), "--interval", "1"]
    procs = [
        subprocess.Popen(
            [*cmd, "--poll", "1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(10)
    outputs = []
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out
        outputs.append(out)
    runs = orion_nb.flow_runs(deployment="job.py")
    assert runs["expected_start_time"].is_unique  # one row per slot
    states = orion_nb.states()
    states["order"] = states["id"].astype(int)  # (text on Postgres today)
    skipped = runs["message"].fillna("").str.contains("serve --catch-up", regex=False)
    claimed = runs[~skipped & ~((runs["state_type"] == "SCHEDULED") & runs["pid"].isna())]
    completed = claimed[claimed["state_name"] == "Completed"]
    assert len(completed) >= 3, outputs
    for r in claimed.itertuples():
        names = list(states[states["run_id"] == r.id].sort_values("order")["name"].astype(str))
        assert names.count("Running") <= 1, names  # never started twice
        if r.state_name == "Completed":
            assert names == ["Scheduled", "Pending", "Running", "Completed"], names
    # each claimed slot was launched by exactly one of the two processes, once
    launched = sum(out.count(" started (pid") for out in outputs)
    assert launched == len(claimed), outputs
    assert not runs["state_type"].isin(["PENDING", "RUNNING"]).any()
    # (a shared test server may be restarted by another suite meanwhile: serve keeps going,
    # and a run whose writes were lost ends Crashed or Failed, but still ran once)
