"""``submit``/``map`` forms Prefect users rely on, and futures handed to subflows."""

from __future__ import annotations

import contextvars
import gc
import threading
import time

import pytest

import orion_nb
from orion_nb import allow_failure, flow, task, unmapped
from orion_nb.engine import dispatch, recorder
from orion_nb.errors import ParameterError


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


@pytest.fixture
def small_map_chunks(monkeypatch):
    """Make ``.map()`` create its runs in chunks of 2, so a few items cross chunk borders."""
    monkeypatch.setattr(dispatch, "MAP_CHUNK", 2)


def test_a_map_larger_than_a_chunk_runs_every_item_with_consecutive_names(small_map_chunks):
    @flow
    def pipeline():
        futs = double.map(range(7))
        return futs.result(), [f.run.name for f in futs]

    results, names = pipeline()
    assert results == [2 * i for i in range(7)]
    assert names == [f"double-{i}" for i in range(7)]
    assert gc.isenabled()
    assert sorted(orion_nb.task_runs()["name"]) == sorted(names)


def test_mapped_items_still_run_concurrently_across_chunks(small_map_chunks):
    barrier = threading.Barrier(4, timeout=5)

    @task
    def meet(i):
        barrier.wait()  # breaks (and the run fails) unless all four run at the same time
        return i

    @flow(task_runner=orion_nb.ThreadPoolTaskRunner(max_workers=4))
    def pipeline():
        return meet.map(range(4)).result()

    assert pipeline() == [0, 1, 2, 3]


def test_a_failing_item_does_not_stop_the_others(small_map_chunks):
    @task
    def picky(x):
        if x == 2:
            raise ValueError("no twos")
        return x

    @flow
    def pipeline():
        futs = picky.map([1, 2, 3, 4, 5])
        futs.wait()
        return [f.state.name for f in futs], futs.result(raise_on_failure=False)

    names, results = pipeline()
    assert names == ["Completed", "Failed", "Completed", "Completed", "Completed"]
    assert results[0] == 1 and isinstance(results[1], ValueError) and results[2:] == [3, 4, 5]


def test_cancelling_the_flow_reaches_mapped_items_still_queued(small_map_chunks):
    started = threading.Event()
    ran = []

    @task
    def item(i):
        ran.append(i)
        started.set()
        for _ in range(500):
            time.sleep(0.01)

    @flow(task_runner=orion_nb.ThreadPoolTaskRunner(max_workers=1))
    def pipeline():
        item.map(range(5))
        started.wait(5)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline()
    assert ran == [0]  # the queued items never started
    runs = orion_nb.task_runs()
    assert len(runs) == 5
    assert set(runs["state_name"].astype(str)) == {"Cancelled"}


def test_each_mapped_run_gets_its_own_copy_of_the_callers_context():
    var = contextvars.ContextVar("var", default="caller's")

    @task
    def set_and_report(i):
        seen = var.get()
        var.set(f"set by {i}")
        return seen

    @flow(task_runner=orion_nb.ThreadPoolTaskRunner(max_workers=1))
    def pipeline():
        return set_and_report.map(range(3)).result()

    assert pipeline() == ["caller's"] * 3


def test_a_map_whose_first_call_does_not_fit_records_no_run():
    @flow
    def pipeline():
        with pytest.raises(ParameterError, match="unknown"):
            double.map(range(3), unknown=1)
        return double.map([]).result()

    assert pipeline() == []
    assert len(orion_nb.task_runs()) == 0


def test_map_with_mapped_keywords_and_constants_in_every_position():
    @task
    def combine(a, b, c=0, *, d):
        return (a, b, c, d)

    @flow
    def pipeline():
        return combine.map([1, 2], unmapped([0]), d=["x", "y"], c=5).result()

    assert pipeline() == [(1, [0], 5, "x"), (2, [0], 5, "y")]


def test_a_map_that_stops_midway_leaves_the_collector_on_and_its_runs_finish(small_map_chunks):
    def name(x):
        if x == 3:
            raise RuntimeError("no name for 3")
        return f"item-{x}"

    @task(task_run_name=name)
    def named(x):
        return x

    @flow
    def pipeline():
        with pytest.raises(ParameterError, match="no name for 3"):
            named.map(range(5))
        # the history writer pauses the collector while it builds a batch (store/writer.py):
        # let it finish what is queued, so that only the map's own pause is looked at
        recorder.flush()
        assert gc.isenabled()

    pipeline()
    runs = orion_nb.task_runs()
    assert sorted(runs["name"]) == ["item-0", "item-1", "item-2"]
    assert set(runs["state_name"].astype(str)) == {"Completed"}


def test_user_code_run_inline_by_the_sequential_runner_never_runs_with_the_collector_paused():
    # without history: the writer's own short pauses (store/writer.py) are not the map's
    orion_nb.configure(persist=False)

    @task
    def collector_on(x):
        return gc.isenabled()

    @flow(task_runner=orion_nb.SequentialTaskRunner())
    def sequential():
        return collector_on.map(range(3)).result()

    assert sequential() == [True, True, True]
