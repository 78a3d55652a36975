"""Driving a task run through its attempts, in this thread or on an event loop.

- A direct call (``my_task(x)``) drives the run in the calling thread (:func:`run_task`); an
  ``async def`` task called directly returns a coroutine that drives it on the caller's event
  loop (:func:`arun_task`).
- A submitted run is driven by the same functions on a worker of the flow's task runner
  (:mod:`orion_nb.engine.dispatch`): :func:`drive_sync` for a sync task; an async task runs
  on that worker thread's own event loop
  (:func:`~orion_nb.engine.runners.run_coroutine_in_worker`).

A driver asks :meth:`TaskRunEngine.begin <orion_nb.engine.task_engine.TaskRunEngine.begin>`
whether to run an attempt, runs the user's code inside an
:class:`~orion_nb.engine.attempt.Attempt`, sleeps until a retry is due, and ends with
:meth:`~orion_nb.engine.task_engine.TaskRunEngine.done`.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from orion_nb.engine import recorder
from orion_nb.engine.attempt import AsyncAttempt, Attempt
from orion_nb.engine.context import _task_ctx
from orion_nb.engine.hooks import acall_hooks, call_hooks
from orion_nb.engine.runners import run_coroutine_in_worker
from orion_nb.engine.runs import TaskRun
from orion_nb.engine.task_engine import TaskRunEngine
from orion_nb.engine.task_runs import create_task_run, start_call
from orion_nb.errors import CancelledRun
from orion_nb.orchestration.states import State

if TYPE_CHECKING:  # the definition module imports this one
    from orion_nb.engine.tasks import Task

__all__ = ["arun_task", "drive_async", "drive_async_in_worker", "drive_sync", "run_task"]

_get_ident = threading.get_ident


def run_task(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: Any,
    return_state: bool,
) -> Any:
    """A direct call of a sync task: drive its run here, return its result (or state)."""
    __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
    flow_ctx, rejected = start_call(task, args, kwargs, return_state)
    if rejected is not None:
        return rejected
    run = create_task_run(task, flow_ctx, args, kwargs, wait_for)
    state = drive_sync(task, run, args, kwargs)
    if flow_ctx is None:
        recorder.flush()
    return state if return_state else state.result()


async def arun_task(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: Any,
    return_state: bool,
) -> Any:
    """A direct call of an async task, as the coroutine the caller awaits."""
    __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
    flow_ctx, rejected = start_call(task, args, kwargs, return_state)
    if rejected is not None:
        return rejected
    run = create_task_run(task, flow_ctx, args, kwargs, wait_for)
    state = await drive_async(task, run, args, kwargs)
    if flow_ctx is None:
        await recorder.aflush()
    return state if return_state else state.result()


def drive_sync(
    task: Task[Any, Any], run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> State:
    """Run every attempt of ``run`` in this thread; returns its final state."""
    __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
    eng = TaskRunEngine(task, run, args, kwargs)
    try:
        while eng.begin():
            if task.on_running_hooks:
                call_hooks(task.on_running_hooks, "task", task, run, run.state, **eng.log)
            run.thread_ident = _get_ident()
            token = _task_ctx.set(eng.task_ctx)
            try:
                with Attempt(eng, task.timeout_seconds) as attempt:
                    attempt.returned(task.fn(*eng.args, **eng.kwargs))
            finally:
                _task_ctx.reset(token)
            if attempt.retry_in is None:
                break
            if attempt.retry_in > 0:
                time.sleep(attempt.retry_in)
    except CancelledRun:
        pass  # recorded as Cancelled; the caller gets the Cancelled state
    except BaseException:
        eng.done()
        raise
    return eng.done()


async def drive_async(
    task: Task[Any, Any], run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> State:
    """Run every attempt of an async task's ``run`` on the running loop."""
    __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
    import asyncio

    eng = TaskRunEngine(task, run, args, kwargs)
    try:
        while await eng.abegin():
            if task.on_running_hooks:
                await acall_hooks(task.on_running_hooks, "task", task, run, run.state, **eng.log)
            token = _task_ctx.set(eng.task_ctx)
            try:
                async with AsyncAttempt(eng, task.timeout_seconds) as attempt:
                    attempt.returned(await task.fn(*eng.args, **eng.kwargs))
            finally:
                _task_ctx.reset(token)
            if attempt.retry_in is None:
                break
            if attempt.retry_in > 0:
                await asyncio.sleep(attempt.retry_in)
    except CancelledRun:
        pass
    except BaseException:
        await eng.adone()
        raise
    return await eng.adone()


def drive_async_in_worker(
    task: Task[Any, Any], run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> State:
    return run_coroutine_in_worker(drive_async(task, run, args, kwargs))
