"""Async flows and tasks, and every running-event-loop situation a notebook creates."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest

import orion_nb
from orion_nb import flow, task


@task
async def async_double(x):
    await asyncio.sleep(0.01)
    return 2 * x


@task
def sync_inc(x):
    return x + 1


def run_with_deadline(fn, seconds: float = 60):
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it does not return."""
    out: list[object] = []
    errors: list[BaseException] = []

    def target():
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the test below
            errors.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"did not finish within {seconds} s: the engine hangs"
    if errors:
        raise errors[0]
    return out[0]


def test_calling_an_async_flow_returns_a_coroutine_and_runs_nothing_until_awaited():
    side_effects = []

    @flow
    async def af(n: int):
        side_effects.append(n)
        a = await async_double(n)
        return sync_inc(a)

    coro = af(3)
    assert inspect.iscoroutine(coro)
    assert side_effects == []
    assert len(orion_nb.flow_runs()) == 0
    assert asyncio.run(coro) == 7  # the standard script idiom
    assert side_effects == [3]
    fr = orion_nb.flow_runs().iloc[0]
    assert fr["state_name"] == "Completed"
    assert sorted(orion_nb.task_runs()["name"]) == ["async_double-0", "sync_inc-0"]


def test_an_async_task_called_outside_a_flow_returns_a_coroutine():
    coro = async_double(21)
    assert inspect.iscoroutine(coro)
    assert asyncio.run(coro) == 42
    assert orion_nb.task_runs().iloc[0]["state_name"] == "Completed"


def test_await_async_flow_inside_a_running_loop():
    @flow
    async def af():
        futs = [async_double.submit(i) for i in range(3)]
        return [f.result() for f in futs]

    async def main():
        return await af()

    assert asyncio.run(main()) == [0, 2, 4]
    assert len(orion_nb.task_runs()) == 3


def test_inside_an_async_task_other_async_tasks_and_flows_are_awaited():
    @flow
    async def inner_flow(x: int):
        return await async_double(x)

    @task
    async def outer(x):
        return await async_double(x) + await inner_flow(x)

    @flow
    async def af():
        return await outer(5)

    assert asyncio.run(af()) == 20
    names = set(orion_nb.flow_runs()["flow_name"])
    assert names == {"af", "inner-flow"}


def test_submit_result_inside_a_submitted_async_task_does_not_hang():
    @task
    async def parent(x):
        return async_double.submit(x).result() + sync_inc.submit(x).result()

    @flow
    def sf():
        return parent.submit(2).result()

    assert run_with_deadline(sf) == 7
    assert set(orion_nb.task_runs()["state_name"].astype(str)) == {"Completed"}


def test_nested_async_submits_do_not_deadlock_a_small_pool():
    @task
    async def parent(x):
        await asyncio.sleep(0.01)
        return sum(f.result() for f in [async_double.submit(x), async_double.submit(x)])

    @flow(task_runner=orion_nb.ThreadPoolTaskRunner(max_workers=2))
    def sf():
        return [f.result() for f in parent.map(range(6))]

    assert run_with_deadline(sf) == [4 * i for i in range(6)]


def test_sync_flow_in_a_running_loop_submits_async_tasks():
    # exactly a Jupyter cell: an event loop is running in this thread
    @flow
    def sf():
        return sync_inc(1) + async_double.submit(1).result()

    async def cell():
        asyncio.get_running_loop()
        return sf()

    assert asyncio.run(cell()) == 4
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "Completed"


def test_a_sync_flow_runs_an_async_subflow_with_asyncio_run():
    @flow
    async def inner():
        return await async_double(5)

    @flow
    def outer():
        return asyncio.run(inner())  # a script: no loop runs in this thread

    assert outer() == 10
    fr = orion_nb.flow_runs()
    assert set(fr["flow_name"]) == {"outer", "inner"}
    child = fr[fr["flow_name"] == "inner"].iloc[0]
    assert isinstance(child["parent_task_run_id"], str)  # linked to the parent flow run


def test_flow_in_a_thread():
    out = []

    @flow
    def tf():
        return sync_inc(41)

    t = threading.Thread(target=lambda: out.append(tf()))
    t.start()
    t.join(10)
    assert out == [42]


def test_async_task_retries_and_timeout():
    calls = []

    @task(retries=1, retry_delay_seconds=0)
    async def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("once")
        return "ok"

    @task(timeout_seconds=0.1)
    async def slow():
        await asyncio.sleep(5)

    @flow
    async def af():
        first = await flaky()
        state = await slow(return_state=True)
        return first, state.name

    assert asyncio.run(af()) == ("ok", "TimedOut")
    tr = orion_nb.task_runs().set_index("name")
    assert tr.loc["flaky-0", "run_count"] == 2
    assert tr.loc["slow-0", "state_name"] == "TimedOut"


def test_async_failure_propagates_original_exception():
    @task
    async def boom():
        raise LookupError("gone")

    @flow
    async def af():
        await boom()

    with pytest.raises(LookupError, match="gone"):
        asyncio.run(af())
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "Failed"


def test_async_flow_timeout():
    @flow(timeout_seconds=0.1)
    async def af():
        await asyncio.sleep(5)

    with pytest.raises(TimeoutError):
        asyncio.run(af())
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "TimedOut"


def test_no_global_asyncio_patching():
    import orion_nb as _  # noqa: F401

    assert not hasattr(asyncio, "_nest_patched")
    assert asyncio.run.__module__ == "asyncio.runners"
