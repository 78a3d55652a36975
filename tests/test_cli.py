"""The orion-nb command, run as a real subprocess against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orion_nb
from orion_nb import flow, task


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORION_NB_HOME": str(home), "COLUMNS": "200"}
    env.pop("ORION_NB_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "orion_nb.cli", *args], capture_output=True, text=True, env=env
    )


def test_runs_view_and_config(orion_home: Path):
    @task(retries=1, retry_delay_seconds=0)
    def once():
        once.n = getattr(once, "n", 0) + 1  # type: ignore[attr-defined]
        if once.n == 1:  # type: ignore[attr-defined]
            raise ValueError("first")

    @flow(name="cli-flow")
    def f():
        once()

    f()
    out = cli(orion_home, "runs")
    assert out.returncode == 0, out.stderr
    assert "cli-flow" in out.stdout and "Completed" in out.stdout
    out = cli(orion_home, "view", "cli-flow")
    assert out.returncode == 0, out.stderr
    assert "RetryFailedRuns" in out.stdout and "AwaitingRetry" in out.stdout
    out = cli(orion_home, "view", "no-such-run")
    assert out.returncode == 1 and "No flow run with id or name" in out.stdout
    out = cli(orion_home, "config")
    assert str(orion_home) in out.stdout.replace("\n", "") or "orion.db" in out.stdout
    assert orion_nb.flow_runs().iloc[0]["flow_name"] == "cli-flow"
