"""Helpers for the tests of process-pool and Dask workers: waiting, and killing a worker.

A worker is killed the way a crash kills it (SIGKILL) while it runs the first attempt of
:data:`victim`, which writes its pid to a file and then waits; later attempts finish at once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from orion_nb import runtime, task


def wait_until(predicate: Any, timeout: float = 60, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds (a liveness bound, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@task
def victim(folder: str) -> str:
    """Attempt 1 waits to be killed; later attempts finish at once."""
    if runtime.task_run.run_count == 1:
        Path(folder, "pid").write_text(str(os.getpid()))
        for _ in range(1200):
            time.sleep(0.05)
    return f"attempt {runtime.task_run.run_count}"


def kill_when_ready(folder: Path) -> threading.Thread:
    """Kill the worker process that writes ``folder/pid`` once its start is reported."""

    def killer() -> None:
        pid_file = folder / "pid"
        wait_until(pid_file.exists, what="the victim to start")
        time.sleep(0.2)  # let the start report reach the kernel first
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    return t


@task
def add_one(x: int) -> int:
    return x + 1


def run_with_a_killed_worker(runner: Any, folder: Path, retries: int) -> tuple[Any, Any]:
    """A flow whose ``victim`` loses its worker mid-attempt, then maps a task over 3 items.

    Returns what the flow returned (the victim's result, or its state name when it did not
    complete, and the mapped results) and the victim's task-run row.
    """
    import orion_nb
    from orion_nb import flow

    kill_when_ready(folder)
    doomed = victim.with_options(retries=retries)

    @flow(task_runner=runner)
    def pipeline() -> tuple[Any, list[int]]:
        v = doomed.submit(str(folder))
        v.wait()
        first = v.result() if v.state.is_completed() else v.state.name
        return first, add_one.map(range(3)).result()

    out = pipeline()
    return out, orion_nb.task_runs(task_name="victim").iloc[0]


def run_script(script: Path, *args: str) -> Any:
    """Run ``script`` as a real ``__main__`` in a fresh interpreter, with its own history."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    home = script.parent / "home"
    env = {
        **os.environ,
        "ORION_NB_HOME": str(home),
        "ORION_NB_DISPLAY": "none",
        "PYTHONPATH": str(root),
    }
    env.pop("ORION_NB_DATABASE_URL", None)
    res = subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=script.parent,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res
