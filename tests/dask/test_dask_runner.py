"""The Dask task runner against a real LocalCluster: scale, lost workers, errors, clients.

The module's cluster is reached by address, as a user's own cluster would be; one test
starts a temporary cluster of its own. Tests that kill a worker rely on the nanny to start
a new one, so the cluster stays usable for the tests that follow.
"""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import orion_nb
from orion_nb import DaskTaskRunner, ProcessPoolTaskRunner, flow, get_run_logger, task
from orion_nb.errors import ConfigurationError, MissingContextError
from tests.dask.conftest import idle
from tests.remote_helpers import (
    kill_when_ready,
    run_script,
    run_with_a_killed_worker,
    victim,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]


@task
def inc(x: int) -> int:
    return x + 1


def workers_of(client: Any) -> set[str]:
    return set(client.scheduler_info()["workers"])


def test_500_mapped_tasks_complete_with_results_and_records(cluster, client):
    @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
    def pipeline(n: int) -> list[int]:
        return inc.map(range(n)).result()

    assert pipeline(500) == list(range(1, 501))
    tr = orion_nb.task_runs()
    assert len(tr) == 500 and set(tr["state_name"]) == {"Completed"}
    assert set(tr["worker"]) == workers_of(client)  # the work was spread over the cluster
    states = orion_nb.states()
    names = states[states["run_kind"] == "task"].groupby("run_id")["name"].apply(sorted)
    assert len(names) == 500
    assert all(n == ["Completed", "Pending", "Running"] for n in names)
    # each ran once, on a worker: start before end, durations of the function, not the queue
    assert (tr["end_time"] >= tr["start_time"]).all()


def test_connecting_to_an_address_leaves_the_cluster_running(cluster, client):
    def connected() -> int:
        return int(client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.clients)))

    @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
    def pipeline() -> int:
        return inc.submit(1).result()

    assert pipeline() == 2
    after_one = connected()
    assert pipeline() == 2  # a second flow run (a second cell) reuses the kernel's connection
    assert connected() == after_one
    assert len(workers_of(client)) == 2
    assert client.submit(sum, [1, 2, 3]).result() == 6
    wait_until(lambda: idle(client), what="an idle cluster")


def test_a_worker_killed_mid_task_is_retried_by_the_kernel(cluster, client, tmp_path):
    runner = DaskTaskRunner(address=cluster.scheduler_address)
    out, run = run_with_a_killed_worker(runner, tmp_path, retries=1)
    assert out == ("attempt 2", [1, 2, 3])
    assert run["state_name"] == "Completed" and run["run_count"] == 2
    messages = " ".join(orion_nb.states(run["id"])["message"].dropna())
    assert "died" in messages and "RetryFailedRuns" in messages
    wait_until(lambda: len(workers_of(client)) == 2, what="the nanny to restart the worker")


def test_a_worker_killed_mid_task_without_retries_ends_it_crashed_and_the_flow_goes_on(
    cluster, client, tmp_path
):
    runner = DaskTaskRunner(address=cluster.scheduler_address)
    out, run = run_with_a_killed_worker(runner, tmp_path, retries=0)
    assert out == ("Crashed", [1, 2, 3])
    assert run["state_name"] == "Crashed" and "died" in run["message"]
    wait_until(lambda: len(workers_of(client)) == 2, what="the nanny to restart the worker")
    wait_until(lambda: idle(client), what="an idle cluster")


def test_a_temporary_cluster_is_started_for_the_flow_run_and_closed_after(tmp_path):
    import psutil

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    kill_when_ready(tmp_path)
    retried = victim.with_options(retries=1)
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 1})

    @flow(task_runner=runner)
    def pipeline() -> tuple[str, int]:
        return retried.submit(str(tmp_path)).result(), inc.submit(1).result()

    # a worker of a temporary cluster that dies fails its attempt at once (KilledWorker)
    assert pipeline() == ("attempt 2", 2)
    run = orion_nb.task_runs(task_name="victim").iloc[0]
    assert run["run_count"] == 2
    assert "KilledWorker" in " ".join(orion_nb.states(run["id"])["message"].dropna())

    def worker_like(p: Any) -> bool:
        # multiprocessing's resource tracker (and forkserver) live as long as this process
        try:
            cmd = " ".join(p.cmdline())
            return p.status() != psutil.STATUS_ZOMBIE and not (
                "resource_tracker" in cmd or "forkserver" in cmd
            )
        except psutil.Error:  # gone while we looked
            return False

    def stopped() -> bool:
        return {p.pid for p in me.children(recursive=True) if worker_like(p)} <= before

    wait_until(stopped, what="the temporary cluster's processes to exit")


def test_an_unreachable_scheduler_is_a_clear_error():
    runner = DaskTaskRunner(address="tcp://127.0.0.1:9", client_kwargs={"timeout": "2s"})

    @flow(task_runner=runner)
    def pipeline() -> int:
        return inc.submit(1).result()

    with pytest.raises(
        ConfigurationError, match=r"Cannot reach the Dask scheduler at 'tcp://127\.0\.0\.1:9'"
    ):
        pipeline()
    run = orion_nb.flow_runs().iloc[0]
    assert run["state_name"] == "Failed" and "Cannot reach the Dask scheduler" in run["message"]
    # the task run that needed the cluster says why it could not run, and was not retried
    task_run = orion_nb.task_runs().iloc[0]
    assert task_run["state_name"] == "Failed" and task_run["run_count"] == 1
    assert "Cannot reach the Dask scheduler" in task_run["message"]


def test_a_flow_run_that_submits_nothing_never_connects():
    # an address nothing listens on: connecting would fail, and is never tried
    @flow(task_runner=DaskTaskRunner(address="tcp://127.0.0.1:9"))
    def pipeline() -> int:
        return inc(1)  # a direct call runs here, in the kernel

    assert pipeline() == 2


@pytest.mark.parametrize("kind", ["processes", "dask"])
def test_an_argument_that_cannot_be_pickled_names_the_parameter_and_its_type(kind, request):
    if kind == "dask":
        runner: Any = DaskTaskRunner(address=request.getfixturevalue("cluster").scheduler_address)
    else:
        runner = ProcessPoolTaskRunner(1)

    @task(retries=2)
    def use(conn: Any, n: int) -> int:
        return n

    @flow(task_runner=runner)
    def pipeline() -> Any:
        state = use.submit(threading.Lock(), 1, return_state=True)
        return state.name, state.message

    name, message = pipeline()
    assert name == "Failed"
    assert "parameter 'conn'" in message and "_thread.lock" in message
    assert "thread runner" in message  # says what to do
    assert orion_nb.task_runs().iloc[0]["run_count"] == 1  # not retried: it cannot help


def test_get_dask_client_in_a_task_and_in_the_flow(cluster):
    @task
    def total(n: int) -> int:
        with orion_nb.get_dask_client() as c:
            return c.submit(sum, range(n)).result()

    @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
    def pipeline() -> tuple[int, int]:
        with orion_nb.get_dask_client() as c:
            here = c.submit(len, [1, 2]).result()
        return total.submit(10).result(), here

    assert pipeline() == (45, 2)
    with pytest.raises(MissingContextError, match="Dask task runner"), orion_nb.get_dask_client():
        pytest.fail("a Dask client was handed out outside a task run on the Dask runner")


def test_worker_logs_are_recorded_even_when_the_attempt_fails(cluster):
    @task
    def noisy() -> None:
        log = get_run_logger()
        log.info("step one")
        log.error("step two went wrong")
        raise RuntimeError("gave up")

    @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
    def pipeline() -> str:
        return noisy.submit(return_state=True).name

    assert pipeline() == "Failed"
    run = orion_nb.task_runs().iloc[0]
    lg = orion_nb.logs(task_run_id=run["id"]).sort_values("timestamp")
    assert list(lg["message"]) == ["step one", "step two went wrong"]
    assert list(lg["level"]) == ["INFO", "ERROR"]
    assert (lg["timestamp"] >= run["start_time"]).all()


def test_the_timeline_rebuilt_from_history_shows_the_workers(cluster, client):
    from orion_nb.notebook.views import model_for

    @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
    def pipeline() -> list[int]:
        return inc.map(range(8)).result()

    pipeline()
    snap = model_for(orion_nb.flow_runs().iloc[0]["id"]).snapshot()
    col = snap["task_columns"].index("worker")
    assert {row[col] for row in snap["tasks"]} <= workers_of(client)
    assert all(row[col] for row in snap["tasks"])


def test_notebook_style_functions_and_classes_from_main_run_on_workers(cluster, tmp_path):
    """A real ``__main__`` (a script) defines the task, a helper and a class: all go by value."""
    script = tmp_path / "analysis.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import orion_nb
            from orion_nb import DaskTaskRunner, ProcessPoolTaskRunner, flow, task

            class Point:
                def __init__(self, x, y):
                    self.x, self.y = x, y

            def norm2(p):
                return p.x * p.x + p.y * p.y

            @task
            def measure(i):
                p = Point(i, i + 1)
                return p, norm2(p)

            for runner in (DaskTaskRunner(address=sys.argv[1]), ProcessPoolTaskRunner(2)):
                @flow(task_runner=runner)
                def pipeline():
                    return measure.map(range(3)).result()

                out = pipeline()
                print(runner.name, [n for _, n in out], all(isinstance(p, Point) for p, _ in out))
            """
        )
    )
    res = run_script(script, cluster.scheduler_address)
    lines = res.stdout.strip().splitlines()
    assert "dask [1, 5, 13] True" in lines and "processes [1, 5, 13] True" in lines
    assert len(lines) == 2  # the script ran once: its workers did not run it again


def test_the_kernel_enforces_a_timeout_the_worker_cannot(cluster, client):
    """One long C call (``time.sleep``) ignores the worker's own deadline; the kernel does not.

    Last in the module: the worker's thread stays asleep for a few seconds after.
    """

    @task(timeout_seconds=1)
    def stuck() -> str:
        time.sleep(8)
        return "late"

    @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
    def pipeline() -> tuple[str, str]:
        state = stuck.submit(return_state=True)
        return state.name, str(state.result(raise_on_failure=False))

    name, error = pipeline()
    assert name == "TimedOut"
    assert "the kernel stopped waiting" in error and "tcp://" in error
    wait_until(lambda: idle(client), what="the cancelled attempt to leave the scheduler")


def test_the_gather_window_grows_with_the_queue_and_is_bounded():
    """Few attempts in flight: outcomes are fetched within 20 ms; a long queue waits longer
    (fewer gathers, fewer messages through the kernel), never more than 0.2 s."""
    from orion_nb.engine.dask_runner import _gather_window

    assert _gather_window(0) == _gather_window(15) == 0.02
    assert _gather_window(16) == 0.04
    assert _gather_window(10_000) == 0.2
