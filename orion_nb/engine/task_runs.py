"""Creating task runs: the record of a call, before anything runs.

Every call of a task becomes a run the moment it is made, whether it then runs in this thread
(:mod:`orion_nb.engine.task_drivers`) or on a task runner (:mod:`orion_nb.engine.dispatch`):
:func:`create_task_run` gives it an id, a name and its dynamic key, records the ``task``
event, an edge for every upstream run its inputs reference, and its Pending state. A call
that does not fit the task's signature is a run too: :func:`record_bad_call` records it
Failed and calls the failure hooks (:func:`start_call` decides which of the two happens).
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

from orion_nb._events import edge_event, task_event
from orion_nb.engine import recorder
from orion_nb.engine.context import FlowRunContext, _flow_ctx
from orion_nb.engine.hooks import call_hooks
from orion_nb.engine.inputs import find_upstream
from orion_nb.engine.params import format_name, new_id
from orion_nb.engine.runs import TaskRun
from orion_nb.engine.tags import current_tags
from orion_nb.engine.transitions import record
from orion_nb.errors import OrionNBWarning, ParameterError
from orion_nb.orchestration.states import Failed, Pending, State

if TYPE_CHECKING:  # the definition module imports this one
    from orion_nb.engine.tasks import Task

__all__ = ["create_task_run", "dynamic_keys", "record_bad_call", "start_call"]

_standalone_keys: dict[str, int] = {}
_standalone_lock = threading.Lock()


def start_call(
    task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool
) -> tuple[FlowRunContext | None, State | None]:
    """Where a call runs (its flow run), and whether it fits the task's signature.

    A call that does not fit is recorded as a Failed run (hooks called); its state is returned
    when the caller asked for states, otherwise the :class:`ParameterError` is raised.
    """
    __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
    flow_ctx = _flow_ctx.get()
    if flow_ctx is None:
        recorder.get_writer()
        _warn_if_detached(task)
    try:
        task.signature.check(args, kwargs)
    except ParameterError as err:
        state = record_bad_call(task, flow_ctx, args, kwargs, err)
        if return_state:
            return flow_ctx, state
        raise
    return flow_ctx, None


def _dynamic_key(task: Task[Any, Any], flow_ctx: FlowRunContext | None) -> int:
    return dynamic_keys(task, flow_ctx, 1)


def dynamic_keys(task: Task[Any, Any], flow_ctx: FlowRunContext | None, count: int) -> int:
    """Reserve ``count`` consecutive dynamic keys for runs of ``task``; returns the first."""
    if flow_ctx is not None:
        return flow_ctx.next_dynamic_key(task.task_key, count)
    with _standalone_lock:
        n = _standalone_keys.get(task.task_key, 0)
        _standalone_keys[task.task_key] = n + count
    return n


def _new_run(
    task: Task[Any, Any],
    flow_ctx: FlowRunContext | None,
    name: str | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    dyn: int | None = None,
    extra: frozenset[str] | None = None,
    created: float | None = None,
) -> TaskRun:
    if dyn is None:
        dyn = _dynamic_key(task, flow_ctx)
    default = f"{task.name}-{dyn}"
    if name is None:
        name = (
            default
            if task.task_run_name is None
            else format_name(task.task_run_name, task.signature.bind(args, kwargs), default)
        )
    view = flow_ctx.view if flow_ctx is not None else None
    run = TaskRun(new_id(), name, task, flow_ctx, view)
    if extra is None:
        extra = current_tags()
    if extra:
        run.tags = task.tags | extra
    ev = task_event(
        run.id,
        flow_ctx.run_id if flow_ctx else None,
        task.name,
        task.task_key,
        str(dyn),
        name,
        run.tags,
        time.time() if created is None else created,
    )
    recorder.emit(ev)
    if view is not None:
        view.on_event(ev)
    return run


def create_task_run(
    task: Task[Any, Any],
    flow_ctx: FlowRunContext | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: Any,
    dyn: int | None = None,
    extra: frozenset[str] | None = None,
) -> TaskRun:
    """A new Pending task run, with an edge for every upstream run its inputs reference.

    ``dyn`` (its dynamic key) and ``extra`` (the tags of enclosing ``tags()`` blocks) are
    looked up here unless the caller did so once for many runs (``.map()``).
    """
    # Pending at the run's creation time: a run whose life was the plain Pending -> Running ->
    # Completed is then fully described by its row's times (the store keeps no state rows for it)
    now = time.time()
    run = _new_run(task, flow_ctx, None, args, kwargs, dyn, extra, now)
    upstream = find_upstream(
        args,
        kwargs,
        task.signature.positional,
        flow_ctx.result_ids if flow_ctx else None,
        wait_for,
    )
    if upstream:
        run.upstream = upstream
        view = run.view
        for u in upstream:
            ev = edge_event(run.id, u.run_id, u.parameter)
            recorder.emit(ev)
            if view is not None:
                view.on_event(ev)
    record(run, Pending(ts=now))
    if flow_ctx is not None:
        flow_ctx.active[run.id] = run
    return run


def record_bad_call(
    task: Task[Any, Any],
    flow_ctx: FlowRunContext | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    err: ParameterError,
) -> State:
    """A call that does not fit the signature is still a run: recorded Failed, hooks called."""
    run = _new_run(task, flow_ctx, f"{task.name}-invalid", args, kwargs)
    record(run, Pending())
    state = Failed(data=err, message=str(err))
    record(run, state)
    call_hooks(
        task.on_failure_hooks, "task", task, run, state, task_run_id=run.id, run_name=run.name
    )
    if flow_ctx is None:
        recorder.flush()
    return state


_detached_warned: set[str] = set()


def _warn_if_detached(task: Task[Any, Any]) -> None:
    """A task called from a thread started inside a flow run does not see that flow run."""
    from orion_nb.engine.flow_engine import active_flow_runs

    active = active_flow_runs()
    if not active or task.task_key in _detached_warned:
        return
    _detached_warned.add(task.task_key)
    warnings.warn(
        f"Task {task.name!r} was called in a thread that is not part of a flow run while flow "
        f"run {active[0]!r} is running in this process, so it is recorded as a standalone task "
        "run. To attach it to the flow run, call it with task.submit(...), or start the thread "
        "with the flow's context: threading.Thread(target=contextvars.copy_context().run, "
        "args=(fn,)).",
        OrionNBWarning,
        stacklevel=4,
    )
