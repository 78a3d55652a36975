"""The run context: which flow run and task run the current code belongs to.

Stored in a ``ContextVar`` so that threads started by the task runner (which copy the context)
and async tasks see the run that started them.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from typing import TYPE_CHECKING, Any

from orion_nb.engine.runs import TaskRun
from orion_nb.errors import MissingContextError

if TYPE_CHECKING:  # definitions and runners import this module
    from orion_nb.engine.flows import Flow
    from orion_nb.engine.runners import TaskRunner
    from orion_nb.engine.tasks import Task
    from orion_nb.engine.views import RunView

__all__ = [
    "FlowRunContext",
    "TaskRunContext",
    "current_flow_run",
    "current_task_run",
    "fingerprint",
    "get_run_context",
]


def fingerprint(obj: Any) -> tuple[Any, ...] | None:
    """Length and first/last item identities of a list, tuple, dict or set (else None)."""
    t = type(obj)
    if t is list or t is tuple:
        return (len(obj), id(obj[0]), id(obj[-1])) if obj else (0,)
    if t is dict:
        if not obj:
            return (0,)
        k = next(iter(obj))
        return (len(obj), id(k), id(obj[k]))
    if t is set or t is frozenset:
        return (len(obj),)
    return None


class FlowRunContext:
    """Everything the engine tracks for one flow run while it runs."""

    __slots__ = (
        "active",
        "cancelled",
        "dynamic_keys",
        "flow",
        "is_async",
        "lock",
        "log_prints",
        "name",
        "parameters",
        "parent",
        "parent_task_run_id",
        "result_ids",
        "run_id",
        "tags",
        "task_runner",
        "view",
    )

    def __init__(
        self,
        *,
        flow: Flow[Any, Any],
        run_id: str,
        name: str,
        parameters: dict[str, Any],
        parent: FlowRunContext | None,
        task_runner: TaskRunner,
        view: RunView | None,
        log_prints: bool,
        is_async: bool,
        parent_task_run_id: str | None = None,
        tags: frozenset[str] = frozenset(),
    ) -> None:
        self.flow = flow
        self.run_id = run_id
        self.name = name
        self.parameters = parameters
        self.parent = parent
        self.task_runner = task_runner
        self.view = view
        self.log_prints = log_prints
        self.is_async = is_async
        self.parent_task_run_id = parent_task_run_id
        self.tags = tags
        # task runs that are not finished yet, for cancellation and for waiting at the end
        self.active: dict[str, TaskRun] = {}
        self.dynamic_keys: dict[str, int] = {}
        # id(result) -> (task run id, type, fingerprint), to discover upstream edges from
        # plain results; see track_result for why an entry is never taken for another object
        self.result_ids: dict[int, tuple[str, type, Any]] = {}
        self.cancelled = False
        self.lock = threading.Lock()

    @property
    def flow_run(self) -> FlowRunContext:
        """This context (Prefect's ``FlowRunContext.flow_run``): ``id``, ``name``, ``parameters``."""
        return self

    @property
    def id(self) -> str:
        return self.run_id

    def track_result(self, result: Any, run_id: str) -> None:
        """Remember that ``result`` came from task run ``run_id`` (for upstream edges).

        Nothing here keeps a result alive, and an entry must not be taken for a new object
        that reuses a dead one's address. Objects that can be weakly referenced drop their
        entry when they die. Lists, tuples, dicts and sets cannot be: their entry carries a
        fingerprint (length and the identity of the first and last items) that a new object
        at the same address would also have to match. Other objects are not tracked.
        """
        key = id(result)
        try:
            weakref.finalize(result, self.result_ids.pop, key, None)
        except TypeError:
            print_ = fingerprint(result)
            if print_ is None:
                return
            self.result_ids[key] = (run_id, type(result), print_)
            return
        self.result_ids[key] = (run_id, type(result), None)

    def next_dynamic_key(self, task_key: str, count: int = 1) -> int:
        """Reserve ``count`` consecutive dynamic keys of ``task_key``; returns the first."""
        with self.lock:
            n = self.dynamic_keys.get(task_key, 0)
            self.dynamic_keys[task_key] = n + count
        return n


class TaskRunContext:
    """The task run the current code is executing in (for loggers and nested calls)."""

    __slots__ = ("_args", "_kwargs", "_parameters", "flow_run", "log_prints", "run", "task")

    def __init__(
        self,
        task: Task[Any, Any],
        run: TaskRun,
        flow_run: FlowRunContext | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        log_prints: bool,
    ) -> None:
        self.task = task
        self.run = run
        self.flow_run = flow_run
        self._args = args
        self._kwargs = kwargs
        self._parameters: dict[str, Any] | None = None
        self.log_prints = log_prints

    @property
    def parameters(self) -> dict[str, Any]:
        """The call's parameters by name (bound on first use: most runs never ask)."""
        if self._parameters is None:
            self._parameters = self.task.signature.bind(self._args, self._kwargs)
        return self._parameters

    @property
    def task_run_id(self) -> str:
        return self.run.id

    @property
    def task_run(self) -> TaskRun:
        """The task run: ``id``, ``name``, ``run_count`` (the attempt), ``tags``, ``state``."""
        return self.run


_flow_ctx: contextvars.ContextVar[FlowRunContext | None] = contextvars.ContextVar(
    "orion_nb_flow_run", default=None
)
_task_ctx: contextvars.ContextVar[TaskRunContext | None] = contextvars.ContextVar(
    "orion_nb_task_run", default=None
)


def current_flow_run() -> FlowRunContext | None:
    return _flow_ctx.get()


def current_task_run() -> TaskRunContext | None:
    return _task_ctx.get()


def get_run_context() -> TaskRunContext | FlowRunContext:
    """The context of the run the calling code belongs to (the task run's, else the flow run's).

    Raises
    ------
    MissingContextError
        Outside any flow or task run.
    """
    ctx: TaskRunContext | FlowRunContext | None = _task_ctx.get() or _flow_ctx.get()
    if ctx is None:
        raise MissingContextError(
            "get_run_context() was called outside a flow or task run; call it from the body of "
            "a @flow or @task (orion_nb.runtime gives None values outside runs instead)."
        )
    return ctx
