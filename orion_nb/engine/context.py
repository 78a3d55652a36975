"""The run context: which flow run and task run the current code belongs to.

Stored in a ``ContextVar`` so that threads started by the task runner (which copy the context)
and async tasks see the run that started them.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orion_nb.engine.flows import Flow
    from orion_nb.engine.runners import TaskRunner
    from orion_nb.engine.tasks import Task, TaskRun

__all__ = [
    "RECENT_RESULTS",
    "FlowRunContext",
    "TaskRunContext",
    "current_flow_run",
    "current_task_run",
]

# results that cannot be weakly referenced (lists, dicts, tuples) kept per flow run so that
# passing one to another task is recognised as an upstream edge
RECENT_RESULTS = 256


class FlowRunContext:
    """Everything the engine tracks for one flow run while it runs."""

    __slots__ = (
        "_recent",
        "active",
        "cancelled",
        "dynamic_keys",
        "flow",
        "futures",
        "is_async",
        "lock",
        "log_prints",
        "name",
        "parameters",
        "parent",
        "parent_task_run_id",
        "result_ids",
        "run_id",
        "task_runner",
        "thread_ident",
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
        view: Any,
        log_prints: bool,
        is_async: bool,
        parent_task_run_id: str | None = None,
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
        # task runs that are not finished yet, for cancellation and for waiting at the end
        self.active: dict[str, TaskRun] = {}
        self.futures: list[Any] = []
        self.dynamic_keys: dict[str, int] = {}
        # id(result) -> (task run id, type of the result), to discover upstream edges from
        # plain results; see track_result for how an entry never outlives its object
        self.result_ids: dict[int, tuple[str, type]] = {}
        self._recent: deque[Any] = deque()
        self.cancelled = False
        self.lock = threading.Lock()
        self.thread_ident = threading.get_ident()

    def track_result(self, result: Any, run_id: str) -> None:
        """Remember that ``result`` came from task run ``run_id`` (for upstream edges).

        An entry must not outlive its object, or a new object at the same address would be
        taken for it. Objects that can be weakly referenced drop their entry when they die.
        Lists, dicts and tuples cannot: the newest ``RECENT_RESULTS`` of them are kept alive
        and their entries are dropped as they leave, so older ones simply stop producing
        edges; nothing else keeps results alive.
        """
        key = id(result)
        entry = (run_id, type(result))
        try:
            weakref.finalize(result, self.result_ids.pop, key, None)
        except TypeError:
            with self.lock:
                self._recent.append(result)
                if len(self._recent) > RECENT_RESULTS:
                    self.result_ids.pop(id(self._recent.popleft()), None)
                self.result_ids[key] = entry
            return
        self.result_ids[key] = entry

    def next_dynamic_key(self, task_key: str) -> int:
        with self.lock:
            n = self.dynamic_keys.get(task_key, 0)
            self.dynamic_keys[task_key] = n + 1
        return n


class TaskRunContext:
    """The task run the current code is executing in (for loggers and nested calls)."""

    __slots__ = ("flow_run", "log_prints", "parameters", "run", "task")

    def __init__(
        self,
        task: Task[Any, Any],
        run: TaskRun,
        flow_run: FlowRunContext | None,
        parameters: dict[str, Any],
        log_prints: bool,
    ) -> None:
        self.task = task
        self.run = run
        self.flow_run = flow_run
        self.parameters = parameters
        self.log_prints = log_prints

    @property
    def task_run_id(self) -> str:
        return self.run.id


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
