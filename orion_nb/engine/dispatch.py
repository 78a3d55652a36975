"""Handing task runs to the flow's task runner: ``.submit()`` and ``.map()``.

A submitted run is created here in the caller's thread (so its id, name and upstream edges
exist at once) and handed to the runner, now or, when some of its upstream futures are
unfinished, as soon as the last of them finishes. What the caller gets back is a
:class:`~orion_nb.engine.futures.TaskFuture` over the run's
:class:`~orion_nb.engine.outcome.Outcome`.

``.map()`` is the bulk case and is built for it: the runner, the caller's context, the tags
of enclosing ``tags()`` blocks and a block of dynamic keys are looked up once per map, not
once per run, and the runs are created in chunks with the garbage collector paused
(:mod:`orion_nb._collector`). Every item is still its own run with its own states,
retries, timeout, cancellation, hooks and upstream edges.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from orion_nb._collector import collector_paused
from orion_nb._events import edge_event
from orion_nb.engine import recorder
from orion_nb.engine.context import FlowRunContext
from orion_nb.engine.futures import TaskFuture
from orion_nb.engine.inputs import Upstream
from orion_nb.engine.outcome import Outcome
from orion_nb.engine.runners import default_runner
from orion_nb.engine.runs import TaskRun
from orion_nb.engine.tags import current_tags
from orion_nb.engine.task_drivers import drive_async_in_worker, drive_sync
from orion_nb.engine.task_engine import TaskRunEngine
from orion_nb.engine.task_runs import create_task_run, dynamic_keys
from orion_nb.orchestration.states import State

if TYPE_CHECKING:  # the definition module imports this one
    from orion_nb.engine.tasks import Task

__all__ = ["MAP_CHUNK", "Dispatch", "submit_map", "submit_task_run"]


def submit_task_run(
    task: Task[Any, Any],
    run: TaskRun,
    flow_ctx: FlowRunContext | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> TaskFuture[Any]:
    """Hand ``run`` to the flow's task runner once its upstream futures are done."""
    return Dispatch(task, flow_ctx, shared=False).submit(run, args, kwargs)


class Dispatch:
    """What the runs of one ``.submit()`` or ``.map()`` call share: the runner, the caller's
    context and the driver, looked up once per call instead of once per run.

    Each run still executes in its own copy of the caller's context (a task that sets a
    context variable does not leak it into its siblings): a ``.map()`` copies the context
    once and each run takes a copy of that copy when a worker starts it, so a queued run
    holds no context object of its own.
    """

    __slots__ = ("ctx", "driver", "runner", "shared", "task")

    def __init__(
        self, task: Task[Any, Any], flow_ctx: FlowRunContext | None, *, shared: bool
    ) -> None:
        self.task = task
        self.runner = flow_ctx.task_runner if flow_ctx is not None else default_runner()
        self.ctx = contextvars.copy_context()
        self.shared = shared  # several runs start from self.ctx: each needs its own copy
        self.driver = drive_async_in_worker if task.is_async else drive_sync

    def submit(
        self, run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> TaskFuture[Any]:
        """A future for ``run``, started now or when its last unfinished upstream finishes."""
        cf = run.cf = Outcome()
        future: TaskFuture[Any] = TaskFuture(run, cf)
        start = self._starter(run, args, kwargs)
        waiting = (
            [u.future for u in run.upstream if u.future is not None and not u.future.done()]
            if run.upstream
            else None
        )
        if waiting:
            _start_after(waiting, start)
        else:
            start()
        return future

    def _starter(
        self, run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Callable[[], None]:
        runner, task = self.runner, self.task
        if runner.remote:
            # the kernel drives the run; the runner's workers execute only the user's function
            from orion_nb.engine.remote import RemoteRun

            eng = TaskRunEngine(task, run, args, kwargs)
            return RemoteRun(runner, eng, self.ctx).start  # type: ignore[arg-type]
        if self.shared:
            job = functools.partial(_run_in_copy, self.ctx, self.driver, task, run, args, kwargs)
        else:
            job = functools.partial(self.ctx.run, self.driver, task, run, args, kwargs)
        return functools.partial(runner.submit, job)


def submit_map(
    task: Task[Any, Any],
    flow_ctx: FlowRunContext | None,
    count: int,
    calls: Iterable[tuple[tuple[Any, ...], dict[str, Any]]],
    sources: list[Upstream],
    wait_for: Any,
) -> list[TaskFuture[Any]]:
    """One submitted run per ``(args, kwargs)`` in ``calls`` (``count`` of them), each also
    fed by ``sources`` (mapped iterables that are another run's result)."""
    if flow_ctx is None:
        recorder.get_writer()
    dispatch = Dispatch(task, flow_ctx, shared=True)
    extra = current_tags()
    first = dynamic_keys(task, flow_ctx, count)
    futures: list[TaskFuture[Any]] = []
    calls = iter(calls)
    # see orion_nb._collector for why; never around user code run inline (sequential)
    pause = collector_paused if dispatch.runner.queues else contextlib.nullcontext
    for chunk in range(first, first + count, MAP_CHUNK):
        with pause():
            for dyn, (args, kwargs) in enumerate(itertools.islice(calls, MAP_CHUNK), chunk):
                run = create_task_run(task, flow_ctx, args, kwargs, wait_for, dyn, extra)
                if sources:
                    _add_sources(run, sources)
                futures.append(dispatch.submit(run, args, kwargs))
    return futures


#: runs a ``.map()`` creates per pause of the garbage collector
MAP_CHUNK = 4096


def _add_sources(run: TaskRun, sources: list[Upstream]) -> None:
    view = run.view
    added = [
        Upstream(src.parameter, src.run_id, src.name, future=src.future, allowed=src.allowed)
        for src in sources
    ]
    run.upstream = [*run.upstream, *added]
    for src in sources:
        ev = edge_event(run.id, src.run_id, src.parameter)
        recorder.emit(ev)
        if view is not None:
            view.on_event(ev)


def _run_in_copy(ctx: contextvars.Context, driver: Callable[..., State], *args: Any) -> State:
    return ctx.copy().run(driver, *args)


def _start_after(waiting: list[TaskFuture[Any]], start: Callable[[], None]) -> None:
    """Call ``start()`` once every future in ``waiting`` is done."""
    remaining = len(waiting)
    lock = threading.Lock()

    def one_done(_f: Any) -> None:
        nonlocal remaining
        with lock:
            remaining -= 1
            go = remaining == 0
        if go:
            start()

    for f in waiting:
        f.add_done_callback(one_done)
