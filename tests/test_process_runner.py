"""The process-pool runner: lost workers, a script without a main guard, CPU parallelism.

The behaviours every runner shares are in ``tests/dask/test_runner_semantics.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import orion_nb
from orion_nb import ProcessPoolTaskRunner, flow, runtime, task
from tests.test_notebook_model import live  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[1]


@task
def inc(x: int) -> int:
    return x + 1


@task
def victim(folder: str) -> str:
    if runtime.task_run.run_count == 1:
        Path(folder, "pid").write_text(str(os.getpid()))
        for _ in range(1200):
            time.sleep(0.05)
    return f"attempt {runtime.task_run.run_count}"


def kill_when_ready(folder: Path) -> None:
    def killer() -> None:
        pid_file = folder / "pid"
        deadline = time.monotonic() + 60
        while not pid_file.exists():
            assert time.monotonic() < deadline, "the victim never started"
            time.sleep(0.05)
        time.sleep(0.2)  # let the start report reach the kernel first
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    threading.Thread(target=killer, daemon=True).start()


def test_a_killed_worker_process_is_retried_and_the_pool_replaced(tmp_path):
    kill_when_ready(tmp_path)
    retried = victim.with_options(retries=1)

    @flow(task_runner=ProcessPoolTaskRunner(2))
    def pipeline() -> tuple[str, list[int]]:
        v = retried.submit(str(tmp_path))
        return v.result(), inc.map(range(4)).result()

    assert pipeline() == ("attempt 2", [1, 2, 3, 4])
    run = orion_nb.task_runs(task_name="victim").iloc[0]
    assert run["state_name"] == "Completed" and run["run_count"] == 2
    messages = " ".join(orion_nb.states(run["id"])["message"].dropna())
    assert "worker process of the process pool died" in messages


def test_a_killed_worker_process_without_retries_crashes_only_its_run(tmp_path):
    kill_when_ready(tmp_path)

    @flow(task_runner=ProcessPoolTaskRunner(2))
    def pipeline() -> tuple[str, list[int]]:
        v = victim.submit(str(tmp_path))
        v.wait()
        return v.state.name, inc.map(range(3)).result()

    assert pipeline() == ("Crashed", [1, 2, 3])
    run = orion_nb.task_runs(task_name="victim").iloc[0]
    assert run["state_name"] == "Crashed" and "died" in run["message"]
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "Completed"


def test_a_script_without_a_main_guard_runs_its_flows_once(tmp_path):
    """An exported notebook runs flows at import; its workers must not run them again."""
    script = tmp_path / "exported.py"
    script.write_text(
        textwrap.dedent(
            """
            from orion_nb import ProcessPoolTaskRunner, flow, task

            print("script body ran")

            @task
            def square(x):
                return x * x

            @flow(task_runner=ProcessPoolTaskRunner(2))
            def pipeline():
                return square.map(range(6)).result()

            print(pipeline())
            """
        )
    )
    env = {
        **os.environ,
        "ORION_NB_HOME": str(tmp_path / "home"),
        "ORION_NB_DISPLAY": "none",
        "PYTHONPATH": str(ROOT),
    }
    res = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.splitlines() == ["script body ran", "[0, 1, 4, 9, 16, 25]"]


def test_the_live_view_and_the_rebuilt_view_show_the_same_workers(live):  # noqa: F811
    from orion_nb.notebook.model import TASK_COLUMNS, RunModel
    from orion_nb.notebook.views import model_for

    @flow(task_runner=ProcessPoolTaskRunner(2))
    def pipeline() -> list[int]:
        return inc.map(range(6)).result()

    pipeline()
    model = RunModel()
    for ev in live[0].events:
        model.apply(ev)
    col = TASK_COLUMNS.index("worker")
    now = {r[0]: r[col] for r in model.snapshot()["tasks"]}
    assert all(w.startswith("process ") for w in now.values())
    # each attempt carries the worker that ran it
    assert all(r[7][-1][3] == r[col] for r in model.snapshot()["tasks"])
    rebuilt = model_for(orion_nb.flow_runs().iloc[0]["id"]).snapshot()
    assert {r[0]: r[col] for r in rebuilt["tasks"]} == now
