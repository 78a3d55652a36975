"""The process-pool runner: lost workers, a script without a main guard, CPU parallelism.

The behaviours every runner shares are in ``tests/dask/test_runner_semantics.py``.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import orion_nb
from orion_nb import ProcessPoolTaskRunner, flow, runtime, task
from tests._helpers import state_names
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


# -- attempts in chunks ------------------------------------------------------------------------


def test_chunk_sizes_follow_how_long_an_attempt_takes():
    from orion_nb.engine.process_runner import _CHUNK_SECONDS, _MAX_CHUNK, _chunk_sizes

    assert _chunk_sizes(5, None, 2) == [1] * 5  # a function not seen yet: one per call
    assert _chunk_sizes(5, 1.0, 2) == [1] * 5  # a slow one: one per call
    quick = _chunk_sizes(1000, 1e-5, 2)
    assert sum(quick) == 1000 and max(quick) == _MAX_CHUNK
    # the tail shrinks to single attempts, so both workers stay busy to the end
    assert quick == sorted(quick, reverse=True) and quick[-1] == 1
    assert max(_chunk_sizes(1000, _CHUNK_SECONDS / 4, 2)) == 4  # about _CHUNK_SECONDS each
    assert _chunk_sizes(0, 1e-5, 2) == []
    # never more than a 2 * workers-th of what is left: 8 attempts on 2 workers go 2 by 2
    assert _chunk_sizes(8, 1e-5, 2) == [2, 1, 1, 1, 1, 1, 1]


@task
def double(x: int) -> int:
    return 2 * x


@task
def picky(x: int) -> int:
    if x == 7:
        raise ValueError("seven is refused")
    if x == 13:
        os._exit(3)  # the worker process dies, as a segfault would end it
    return x


@pytest.fixture
def pool_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of attempts in each call the runner makes to its process pool."""
    from concurrent.futures import ProcessPoolExecutor

    from orion_nb.engine import process_runner

    monkeypatch.setattr(process_runner, "_durations", type(process_runner._durations)())
    calls: list[int] = []
    submit = ProcessPoolExecutor.submit

    def counting(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]))
        return submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", counting)
    return calls


def test_a_quick_task_mapped_again_goes_out_in_chunks_and_every_run_is_recorded(pool_calls):
    @flow(task_runner=ProcessPoolTaskRunner(2))
    def pipeline(n: int) -> list[int]:
        return double.map(range(n)).result()

    assert pipeline(12) == [2 * x for x in range(12)]
    assert pool_calls == [1] * 12  # not seen before: one attempt per call
    pool_calls.clear()
    assert pipeline(300) == [2 * x for x in range(300)]
    assert sum(pool_calls) == 300 and len(pool_calls) < 300 / 4, pool_calls
    fid = orion_nb.flow_runs(limit=1).iloc[0]["id"]
    runs = orion_nb.task_runs(flow_run_id=fid)
    assert len(runs) == 300 and set(runs["state_name"].astype(str)) == {"Completed"}
    # each run's start is the worker's, between its creation and its end, on a worker
    assert (runs["start_time"] >= runs["created"]).all()
    assert (runs["start_time"] <= runs["end_time"]).all()
    assert not (runs["pid"] == os.getpid()).any() and runs["pid"].notna().all()
    assert state_names(runs.iloc[0]["id"]) == ["Pending", "Running", "Completed"]


def test_in_a_chunk_a_failure_or_a_dead_worker_ends_only_its_own_run(pool_calls):
    """One worker, so that nothing else is running when the run that kills it does: its
    chunk-mates had not started (their outcomes come back with the chunk), so they are sent
    again, not lost. (With several workers, an attempt running alone on another worker when
    the pool breaks is lost with it: docs/task-runners.md.)"""

    @flow(task_runner=ProcessPoolTaskRunner(1))
    def pipeline(items: list[int]) -> list[Any]:
        out: list[Any] = []
        for future in picky.map(items):
            future.wait()
            out.append(future.result() if future.state.is_completed() else future.state.name)
        return out

    pipeline(list(range(20, 40)))  # learned: quick
    pool_calls.clear()
    out = pipeline(list(range(100)))
    assert max(pool_calls) > 1  # the run that kills its worker was sent in a chunk
    assert out[7] == "Failed" and out[13] == "Crashed"
    assert [x for i, x in enumerate(out) if i not in (7, 13)] == [
        x for x in range(100) if x not in (7, 13)
    ]
    runs = orion_nb.task_runs(flow_run_id=orion_nb.flow_runs(limit=1).iloc[0]["id"])
    assert runs["state_name"].astype(str).value_counts().to_dict() == {
        "Completed": 98,
        "Failed": 1,
        "Crashed": 1,
    }
    crashed = runs[runs["state_name"] == "Crashed"].iloc[0]
    assert crashed["name"] == "picky-13" and "died" in crashed["message"]


@task
def slow_from_40(x: int) -> int:
    if x >= 40:
        time.sleep(0.05)
    return x


def test_a_chunk_that_runs_long_hands_back_what_it_did_not_start(pool_calls):
    """A function learned quick that turns slow: its chunks stop after 0.2 s and the attempts
    they did not start go again, alone, without using a retry, so no outcome waits long."""
    from orion_nb.engine.process_runner import _CHUNK_LIMIT

    @flow(task_runner=ProcessPoolTaskRunner(2))
    def pipeline(n: int) -> list[int]:
        return slow_from_40.map(range(n)).result()

    pipeline(20)  # learned: quick
    pool_calls.clear()
    assert pipeline(120) == list(range(120))
    # more attempts were handed to the pool than there are runs: the ones sent again
    assert sum(pool_calls) > 120 and max(pool_calls) > 1
    runs = orion_nb.task_runs(flow_run_id=orion_nb.flow_runs(limit=1).iloc[0]["id"])
    assert set(runs["state_name"].astype(str)) == {"Completed"}
    assert set(runs["run_count"]) == {1}  # sending again used up no retry
    # no run waited much longer than the limit for its chunk to end
    lag = (runs["end_time"] - runs["start_time"]).dt.total_seconds()
    assert lag.max() < _CHUNK_LIMIT + 0.05 + 1.0, lag.max()
