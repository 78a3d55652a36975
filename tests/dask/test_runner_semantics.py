"""The same task-run semantics on every task runner: threads, sequential, processes and Dask.

Each behaviour runs once per runner against the real thing (a process pool, a
``LocalCluster`` of two worker processes) and is checked where a user would look: the values
and exceptions the flow gets, and the history (states, edges, logs, where each run ran).
Task functions touch files under ``tmp_path`` when a test needs to know whether (or how
often) a function really ran, since process and Dask workers share nothing else with the
test.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import orion_nb
from orion_nb import (
    INPUTS,
    DaskTaskRunner,
    ProcessPoolTaskRunner,
    SequentialTaskRunner,
    ThreadPoolTaskRunner,
    allow_failure,
    flow,
    get_run_logger,
    runtime,
    task,
    unmapped,
)
from tests.dask.conftest import idle, wait_until

RUNNERS = ["threads", "sequential", "processes", "dask"]


@pytest.fixture(params=RUNNERS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def runner(kind: str, request: pytest.FixtureRequest) -> Any:
    if kind == "threads":
        return ThreadPoolTaskRunner(4)
    if kind == "sequential":
        return SequentialTaskRunner()
    if kind == "processes":
        return ProcessPoolTaskRunner(2)
    cluster = request.getfixturevalue("cluster")
    return DaskTaskRunner(address=cluster.scheduler_address)


def remote(kind: str) -> bool:
    return kind in ("processes", "dask")


# -- tasks (module level; the decorated functions travel to workers by value) ----------------


@task
def double(x: int) -> int:
    return 2 * x


@task
def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


@task(retries=2)
def flaky(x: int) -> int:
    if runtime.task_run.run_count < 3:
        raise RuntimeError(f"attempt {runtime.task_run.run_count} failed")
    return x


@task
def type_of(x: Any) -> str:
    return type(x).__name__


@task(cache_policy=INPUTS)
def counted(path: str, x: int) -> int:
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return 10 * x


@task(timeout_seconds=0.5)
def sleepy() -> str:
    for _ in range(600):  # short sleeps: an asynchronous exception lands between them
        time.sleep(0.1)
    return "woke up"


@task
def slow(folder: str, i: int) -> int:
    Path(folder, f"started-{i}").write_text(str(os.getpid()))
    for _ in range(600):
        time.sleep(0.1)
    Path(folder, f"finished-{i}").touch()
    return i


@task(log_prints=True)
def chatty(x: int) -> int:
    get_run_logger().warning("about to handle %s", x)
    print(f"printed {x}")
    return x


@task
async def async_double(x: int) -> int:
    await asyncio.sleep(0.01)
    return 2 * x


@task(tags=["one-at-a-time"])
def exclusive(folder: str, i: int) -> int:
    start = time.time()
    time.sleep(0.05)
    Path(folder, f"span-{i}").write_text(f"{start} {time.time()}")
    return i


@task
def who_am_i() -> tuple[Any, ...]:
    return (
        runtime.task_run.name,
        runtime.task_run.task_name,
        runtime.flow_run.name,
        runtime.flow_run.flow_name,
        runtime.task_run.parameters,
    )


def rows() -> Any:
    return orion_nb.task_runs()


# -- the behaviours ---------------------------------------------------------------------------


def test_results_and_where_each_run_ran(runner, kind):
    finished: list[str] = []
    doubled = double.with_options(on_completion=[lambda t, r, s: finished.append(r.name)])

    @flow(task_runner=runner)
    def pipeline(n: int) -> list[int]:
        return doubled.map(range(n)).result()

    assert pipeline(20) == [2 * i for i in range(20)]
    tr = rows()
    assert len(tr) == 20 and set(tr["state_name"]) == {"Completed"}
    assert set(tr["run_count"]) == {1}
    assert sorted(finished) == sorted(tr["name"])  # hooks run in the kernel, once each
    assert tr["host"].notna().all() and tr["pid"].notna().all()
    if remote(kind):
        assert (tr["pid"] != os.getpid()).all()
        prefix = "tcp://" if kind == "dask" else "process "
        assert tr["worker"].str.startswith(prefix).all()
    else:
        assert (tr["pid"] == os.getpid()).all() and tr["worker"].isna().all()
    assert (tr["duration"] >= pd.Timedelta(0)).all()


def test_a_failure_raises_the_users_exception_with_its_traceback(runner):
    @flow(task_runner=runner)
    def pipeline() -> None:
        boom.submit(3).result()

    with pytest.raises(ValueError, match="boom 3") as info:
        pipeline()
    text = "".join(traceback.format_exception(info.value))
    assert 'raise ValueError(f"boom {x}")' in text  # where it failed, also on a worker
    run = rows().iloc[0]
    assert run["state_name"] == "Failed" and run["message"] == "ValueError: boom 3"


def test_retries_are_decided_in_the_kernel(runner):
    @flow(task_runner=runner)
    def pipeline() -> int:
        return flaky.submit(7).result()

    assert pipeline() == 7
    run = rows().iloc[0]
    assert run["state_name"] == "Completed" and run["run_count"] == 3
    names = list(orion_nb.states(run["id"]).sort_values("timestamp")["name"])
    assert names.count("AwaitingRetry") == 2 and names.count("Retrying") == 2
    messages = " ".join(orion_nb.states(run["id"])["message"].dropna())
    assert "RuntimeError: attempt 1 failed" in messages


def test_upstream_results_edges_and_failures(runner):
    @flow(task_runner=runner)
    def pipeline() -> tuple[int, Any]:
        a = double.submit(2)
        b = double.submit(a)
        c = double.submit(boom.submit(1))
        return b.result(), c.wait() or c.state

    value, state = pipeline()
    assert value == 8
    assert state.is_failed() and "upstream run 'boom-0' is Failed" in state.message
    tr = rows().set_index("name")
    edges = orion_nb.task_inputs()
    assert {(tr.loc["double-1", "id"], tr.loc["double-0", "id"])} <= set(
        zip(edges["task_run_id"], edges["upstream_task_run_id"], strict=True)
    )
    # the kernel decided: the downstream run never ran anywhere
    assert tr.loc["double-2", "state_name"] == "Failed" and pd.isna(tr.loc["double-2", "host"])


def test_allow_failure_passes_the_exception(runner):
    @flow(task_runner=runner)
    def pipeline() -> str:
        return type_of.submit(allow_failure(boom.submit(1))).result()

    assert pipeline() == "ValueError"


def test_caching_runs_the_function_once(runner, tmp_path):
    log = tmp_path / "calls.txt"

    @flow(task_runner=runner)
    def pipeline() -> list[int]:
        first = counted.submit(str(log), 5).result()
        second = counted.submit(str(log), 5).result()
        return [first, second]

    assert pipeline() == [50, 50]
    assert log.read_text().splitlines() == ["5"]
    assert sorted(rows()["state_name"]) == ["Cached", "Completed"]


def test_timeouts(runner):
    @flow(task_runner=runner)
    def pipeline() -> tuple[str, str]:
        state = sleepy.submit(return_state=True)
        return state.name, state.message

    name, message = pipeline()
    assert name == "TimedOut" and "timeout_seconds=0.5" in message


def test_logs_and_prints_come_back_with_the_right_ids(runner, kind, capsys):
    @flow(task_runner=runner)
    def pipeline() -> list[int]:
        return chatty.map(range(3)).result()

    assert pipeline() == [0, 1, 2]
    tr = rows().set_index("id")
    lg = orion_nb.logs()
    warnings = lg[lg["level"] == "WARNING"]
    assert sorted(warnings["message"]) == [f"about to handle {i}" for i in range(3)]
    assert sorted(lg[lg["level"] == "INFO"]["message"]) == [f"printed {i}" for i in range(3)]
    for rec in lg.itertuples():
        run = tr.loc[rec.task_run_id]
        assert rec.flow_run_id == run["flow_run_id"]
        # made while the attempt ran (on the worker's clock, within the run's span)
        assert run["start_time"] <= rec.timestamp <= run["end_time"]
    out = capsys.readouterr().out
    assert all(f"printed {i}" in out for i in range(3))


def test_async_tasks_run_to_completion(runner):
    @flow(task_runner=runner)
    def pipeline() -> list[int]:
        return async_double.map(range(4)).result()

    assert pipeline() == [0, 2, 4, 6]


def test_concurrency_limits_hold_across_workers(runner, tmp_path):
    orion_nb.set_concurrency_limit("one-at-a-time", 1)
    try:

        @flow(task_runner=runner)
        def pipeline() -> list[int]:
            return exclusive.map(unmapped(str(tmp_path)), range(4)).result()

        assert pipeline() == [0, 1, 2, 3]
    finally:
        orion_nb.set_concurrency_limit("one-at-a-time", None)
    spans = sorted(tuple(map(float, p.read_text().split())) for p in tmp_path.glob("span-*"))
    assert len(spans) == 4
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start  # never two at once


def test_run_context_on_the_worker(runner):
    @flow(task_runner=runner, name="ctx-flow")
    def pipeline() -> Any:
        return who_am_i.submit().result()

    name, task_name, flow_run_name, flow_name, params = pipeline()
    run = rows().iloc[0]
    flow_run = orion_nb.flow_runs().iloc[0]
    assert (name, task_name, params) == (run["name"], "who_am_i", {})
    assert (flow_run_name, flow_name) == (flow_run["name"], "ctx-flow")


# the sequential runner finishes each task inside .submit(): there is nothing left to cancel
@pytest.mark.parametrize("kind", [k for k in RUNNERS if k != "sequential"])
def test_cancelling_the_flow_cancels_queued_and_running_task_runs(runner, kind, tmp_path, request):

    @flow(task_runner=runner)
    def pipeline() -> None:
        futures = slow.map(unmapped(str(tmp_path)), range(4))
        wait_until(lambda: any(f.state.is_running() for f in futures), what="a running task")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline()
    tr = rows()
    assert set(tr["state_name"]) == {"Cancelled"}, tr[["name", "state_name"]]
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "Cancelled"
    assert not list(tmp_path.glob("finished-*"))
    if kind == "dask":
        client = request.getfixturevalue("client")
        wait_until(lambda: idle(client), what="an idle cluster")
        # the workers' threads were stopped too: both can take new work at once
        futures = client.map(lambda i: i, range(2), pure=False)
        assert client.gather(futures) == [0, 1]
    if kind == "processes":
        import psutil

        pids = [int(p.read_text()) for p in tmp_path.glob("started-*")]

        def gone(pid: int) -> bool:
            try:
                return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        wait_until(lambda: all(gone(p) for p in pids), what="the pool's processes to stop")


@task
def inner(x: int) -> int:
    return x * 3


@task
def outer(x: int) -> int:
    get_run_logger().info("calling inner")
    return inner(x) + 1


def test_a_task_that_calls_a_task_records_both_where_they_ran(runner, kind):
    @flow(task_runner=runner)
    def pipeline() -> int:
        return outer.submit(2).result()

    assert pipeline() == 7
    tr = rows().set_index("task_name")
    flow_run_id = orion_nb.flow_runs().iloc[0]["id"]
    assert set(tr["flow_run_id"]) == {flow_run_id}
    assert set(tr["state_name"]) == {"Completed"}
    # the inner run ran where the outer one did (on the worker for remote runners)
    assert tr.loc["inner", "pid"] == tr.loc["outer", "pid"]
    assert (tr.loc["outer", "pid"] != os.getpid()) == remote(kind)


def test_async_flows_and_subflows_share_the_runner(runner):
    @flow
    def child(n: int) -> list[int]:
        return double.map(range(n)).result()

    @flow(task_runner=runner)
    async def parent() -> list[int]:
        future = async_double.submit(5)
        first = await asyncio.to_thread(future.result)  # the loop stays free while it waits
        return [first, *child(3)]

    assert asyncio.run(parent()) == [10, 0, 2, 4]
    tr = rows()
    assert set(tr["state_name"]) == {"Completed"} and len(tr) == 5  # 1 + 3 + the subflow's
