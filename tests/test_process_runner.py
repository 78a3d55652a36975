"""The process-pool runner: lost workers, a script without a main guard, CPU parallelism.

The behaviours every runner shares are in ``tests/dask/test_runner_semantics.py``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import orion_nb
from orion_nb import ProcessPoolTaskRunner, flow, runtime, task
from tests.remote_helpers import run_script, run_with_a_killed_worker
from tests.test_notebook_model import live  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[1]


@task
def inc(x: int) -> int:
    return x + 1


def test_a_killed_worker_process_is_retried_and_the_pool_replaced(tmp_path):
    out, run = run_with_a_killed_worker(ProcessPoolTaskRunner(2), tmp_path, retries=1)
    assert out == ("attempt 2", [1, 2, 3])  # the mapped runs went to a new pool
    assert run["state_name"] == "Completed" and run["run_count"] == 2
    messages = " ".join(orion_nb.states(run["id"])["message"].dropna())
    assert "worker process of the process pool died" in messages


def test_a_killed_worker_process_without_retries_crashes_only_its_run(tmp_path):
    out, run = run_with_a_killed_worker(ProcessPoolTaskRunner(2), tmp_path, retries=0)
    assert out == ("Crashed", [1, 2, 3])
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
    res = run_script(script)
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


@task
def read_flow_parameters() -> list[str]:
    return sorted(runtime.flow_run.parameters)


def test_flow_parameters_reach_workers_unless_too_large_to_send():
    @flow(task_runner=ProcessPoolTaskRunner(1))
    def pipeline(blob: bytes) -> Any:
        state = read_flow_parameters.submit(return_state=True)
        return state.result(raise_on_failure=False)

    assert pipeline(b"small") == ["blob"]
    error = pipeline(b"x" * (2 << 20))
    assert isinstance(error, orion_nb.errors.ParameterError)
    assert "were not sent to the workers (they are larger than 1 MB pickled)" in str(error)
