"""What a running task or flow can learn about itself, and waiting for futures."""

from __future__ import annotations

import logging
import threading

import orion_nb
from orion_nb import flow, runtime, task


def test_runtime_exposes_the_current_flow_run_and_task_run_attempt():
    seen = []

    @task(retries=2, retry_delay_seconds=0)
    def flaky():
        seen.append(
            (
                runtime.task_run.run_count,
                runtime.task_run.name,
                runtime.flow_run.name,
                runtime.flow_run.parameters,
            )
        )
        if runtime.task_run.run_count < 3:
            raise ConnectionError("again")
        return runtime.task_run.id

    @flow(flow_run_name="nightly-{day}")
    def pipeline(day: str):
        return flaky()

    task_run_id = pipeline("mon")
    assert [s[0] for s in seen] == [1, 2, 3]
    assert seen[0][1:] == ("flaky-0", "nightly-mon", {"day": "mon"})
    assert task_run_id == orion_nb.task_runs().iloc[0]["id"]
    assert runtime.flow_run.id is None and runtime.task_run.id is None  # outside any run


def test_get_run_context_names_the_run():
    @task
    def which():
        ctx = orion_nb.get_run_context()
        return ctx.task_run.name, ctx.flow_run.name

    @flow(flow_run_name="the-run")
    def pipeline():
        return which()

    assert pipeline() == ("which-0", "the-run")


def test_wait_and_as_completed():
    @task
    def gated(i, gate):
        gate.wait(5)
        return i

    @flow
    def pipeline():
        gates = [threading.Event() for _ in range(3)]
        futs = [gated.submit(i, gates[i]) for i in range(3)]
        done, not_done = orion_nb.wait(futs, timeout=0.05)
        assert (len(done), len(not_done)) == (0, 3)
        gates[2].set()
        order = []
        for n, fut in enumerate(orion_nb.as_completed(futs)):
            order.append(fut.result())
            if n == 0:
                gates[0].set()
                gates[1].set()
        done, not_done = orion_nb.wait(futs)
        return order, len(done), len(not_done)

    order, n_done, n_not_done = pipeline()
    assert order[0] == 2 and sorted(order) == [0, 1, 2]
    assert (n_done, n_not_done) == (3, 0)


def test_run_logs_reach_the_root_logger_handlers(caplog):
    @task
    def noisy():
        orion_nb.get_run_logger().warning("disk almost full")

    with caplog.at_level(logging.INFO):
        noisy()
    assert "disk almost full" in caplog.text
    assert orion_nb.logs()["message"].tolist() == ["disk almost full"]


def test_a_task_called_from_a_plain_thread_inside_a_flow_warns_how_to_attach_it():
    import contextvars

    import pytest

    from orion_nb.errors import OrionNBWarning

    @task
    def side():
        return 1

    @flow
    def pipeline():
        with pytest.warns(OrionNBWarning, match="copy_context"):
            t = threading.Thread(target=side)
            t.start()
            t.join()
        attached = threading.Thread(target=contextvars.copy_context().run, args=(side,))
        attached.start()
        attached.join()

    pipeline()
    runs = orion_nb.task_runs()
    flow_run_id = orion_nb.flow_runs().iloc[0]["id"]
    attached_runs = runs[runs["flow_run_id"] == flow_run_id]
    assert len(runs) == 2 and len(attached_runs) == 1
