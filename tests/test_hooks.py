"""State-change hooks: decorator style, async hooks, on_running / on_crashed, errors logged."""

from __future__ import annotations

import asyncio

import pytest

import orion_nb
from orion_nb import flow, task


def test_decorator_style_hooks_are_called():
    calls = []

    @task
    def may_fail(x):
        if x < 0:
            raise ValueError("negative")
        return x

    @may_fail.on_failure
    def failed(task, run, state):
        calls.append(("task failed", run.name, state.name))

    @flow
    def pipeline(x: int):
        return may_fail(x)

    @pipeline.on_completion
    def done(flow, run, state):
        calls.append(("flow completed", flow.name, state.name))

    assert failed.__name__ == "failed"  # the decorator gives the function back
    pipeline(1)
    with pytest.raises(ValueError):
        pipeline(-1)
    assert calls == [
        ("flow completed", "pipeline", "Completed"),
        ("task failed", "may_fail-0", "Failed"),
    ]


def test_async_hooks_are_awaited_for_sync_and_async_runs():
    calls = []

    async def record(obj, run, state):
        await asyncio.sleep(0)
        calls.append((obj.name, state.name))

    @task(on_completion=[record])
    def sync_task():
        return 1

    @flow(on_completion=[record])
    async def async_flow():
        return sync_task()

    asyncio.run(async_flow())
    assert sorted(calls) == [("async-flow", "Completed"), ("sync_task", "Completed")]


def test_on_running_and_on_crashed_hooks():
    calls = []

    class Abort(BaseException):
        """Stops the run as an interrupt would (not an Exception)."""

    @task(on_running=[lambda t, run, state: calls.append(("task running", state.name))])
    def step():
        return 1

    @flow(
        on_running=[lambda f, run, state: calls.append(("flow running", state.name))],
        on_crashed=[lambda f, run, state: calls.append(("flow crashed", state.name))],
    )
    def pipeline():
        step()
        raise Abort()

    with pytest.raises(Abort):
        pipeline()
    assert calls == [
        ("flow running", "Running"),
        ("task running", "Running"),
        ("flow crashed", "Crashed"),
    ]


def test_a_failing_hook_is_logged_and_never_changes_the_result():
    def broken(task, run, state):
        raise RuntimeError("hook is broken")

    @task(on_completion=[broken])
    def fine():
        return 42

    assert fine() == 42
    logs = orion_nb.logs()
    assert logs["level"].eq("ERROR").any()
    assert logs["message"].str.contains("broken").any()
    assert orion_nb.task_runs().iloc[0]["state_name"] == "Completed"
