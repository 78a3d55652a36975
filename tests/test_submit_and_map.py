"""``submit``/``map`` forms Prefect users rely on, and futures handed to subflows."""

from __future__ import annotations

import threading

import orion_nb
from orion_nb import allow_failure, flow, task


@task
def double(x):
    return 2 * x


@task
def boom(x):
    raise ValueError(f"boom {x}")


def test_submit_with_return_state_returns_the_final_state():
    seen = []

    @flow
    def pipeline():
        seen.append(double.submit(2, return_state=True))
        seen.append(boom.submit(1, return_state=True))

    pipeline()
    good, failed = seen
    assert good.is_completed() and good.result() == 4
    assert failed.is_failed()


def test_map_over_a_state_maps_over_its_result():
    @task
    def numbers():
        return [1, 2, 3]

    @flow
    def pipeline():
        state = numbers(return_state=True)
        return [f.result() for f in double.map(state)]

    assert pipeline() == [2, 4, 6]


def test_map_over_allow_failure_of_futures_runs_every_item():
    @task
    def describe(x):
        return f"error: {x}" if isinstance(x, Exception) else f"value: {x}"

    @flow
    def pipeline():
        futs = [double.submit(1), boom.submit(2)]
        return [f.result() for f in describe.map(allow_failure(futs))]

    assert pipeline() == ["value: 2", "error: boom 2"]


def test_futures_passed_to_a_subflow_are_resolved_and_linked():
    seen = []

    @flow
    def child(x: int, xs: list):
        seen.append((x, xs))
        return x + sum(xs)

    @flow
    def parent():
        return child(double.submit(1), double.map([1, 2]))

    assert parent() == 8
    assert seen == [(2, [2, 4])]
    runs = orion_nb.task_runs()
    mirror = runs[runs["task_name"] == "child"].iloc[0]
    edges = orion_nb.task_inputs()
    assert len(edges[edges["task_run_id"] == mirror["id"]]) == 3


def test_a_subflow_waits_for_its_wait_for():
    order = []

    @task
    def slow(gate):
        gate.wait(5)
        order.append("slow")

    @flow
    def child():
        order.append("child")

    @flow
    def parent():
        gate = threading.Event()
        fut = slow.submit(gate)
        threading.Timer(0.05, gate.set).start()
        child(wait_for=[fut])

    parent()
    assert order == ["slow", "child"]
