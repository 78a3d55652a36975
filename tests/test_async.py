"""Async flows and tasks, and every running-event-loop situation a notebook creates."""

from __future__ import annotations

import asyncio
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


def test_async_flow_called_from_sync_code_runs_to_completion():
    @flow
    async def af(n: int):
        a = await async_double(n)
        return sync_inc(a)

    assert af(3) == 7
    fr = orion_nb.flow_runs().iloc[0]
    assert fr["state_name"] == "Completed"
    assert sorted(orion_nb.task_runs()["name"]) == ["async_double-0", "sync_inc-0"]


def test_await_async_flow_inside_a_running_loop():
    @flow
    async def af():
        futs = [async_double.submit(i) for i in range(3)]
        return [f.result() for f in futs]

    async def main():
        return await af()

    assert asyncio.run(main()) == [0, 2, 4]
    assert len(orion_nb.task_runs()) == 3


def test_sync_flow_called_from_async_code_under_asyncio_run():
    # exactly a Jupyter cell: an event loop is running in this thread
    @flow
    def sf():
        return sync_inc(1) + async_double(1)  # async task from sync code runs to completion

    async def cell():
        asyncio.get_running_loop()
        return sf()

    assert asyncio.run(cell()) == 4
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "Completed"


def test_async_flow_from_sync_flow_inside_running_loop():
    @flow
    async def inner():
        return await async_double(5)

    @flow
    def outer():
        return inner()  # a sync flow calls an async subflow: it runs to completion

    async def cell():
        return outer()

    assert asyncio.run(cell()) == 10
    fr = orion_nb.flow_runs()
    assert set(fr["flow_name"]) == {"outer", "inner"}


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

    assert af() == ("ok", "TimedOut")
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
        af()
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "Failed"


def test_async_flow_timeout():
    @flow(timeout_seconds=0.1)
    async def af():
        await asyncio.sleep(5)

    with pytest.raises(TimeoutError):
        af()
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "TimedOut"


def test_no_global_asyncio_patching():
    import orion_nb as _  # noqa: F401

    assert not hasattr(asyncio, "_nest_patched")
    assert asyncio.run.__module__ == "asyncio.runners"
