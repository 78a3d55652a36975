"""The records of runs while the engine drives them.

A :class:`Run` is what every run has: identity, current state, attempt count and the live view
it reports to. :class:`TaskRun` and :class:`FlowRun` add what their engines need. Hooks receive
these objects, as Prefect's hooks receive its run objects: read ``id``, ``name``, ``state``,
``run_count``, ``tags`` and ``parameters``; everything else is the engine's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orion_nb.orchestration.states import State

if TYPE_CHECKING:  # the definitions import this module; the records only point back
    from orion_nb.engine.context import FlowRunContext
    from orion_nb.engine.flows import Flow
    from orion_nb.engine.inputs import Upstream
    from orion_nb.engine.outcome import Outcome
    from orion_nb.engine.remote import RemoteRun
    from orion_nb.engine.tasks import Task
    from orion_nb.engine.views import RunView

__all__ = ["FlowRun", "Run", "TaskRun"]


class Run:
    """What every run (task or flow) has: identity, state, attempt count, live view."""

    __slots__ = ("id", "kind", "name", "run_count", "state", "view")

    def __init__(self, id: str, kind: str, name: str, view: RunView | None) -> None:
        self.id = id
        self.kind = kind
        self.name = name
        self.state: State = None  # type: ignore[assignment]  # set by the first record()
        self.run_count = 0
        self.view = view


class TaskRun(Run):
    """A task run while it is known to the engine (held by its future)."""

    __slots__ = (
        "cf",
        "flow_ctx",
        "parameters",
        "remote",
        "tags",
        "task",
        "thread_ident",
        "upstream",
    )

    def __init__(
        self,
        id: str,
        name: str,
        task: Task[Any, Any],
        flow_ctx: FlowRunContext | None,
        view: RunView | None,
    ) -> None:
        super().__init__(id, "task", name, view)
        self.task = task
        self.flow_ctx = flow_ctx
        # a tuple until the run has upstream inputs: most runs have none, and an empty list
        # per run would be one more object for the garbage collector to walk
        self.upstream: Sequence[Upstream] = ()
        self.thread_ident: int | None = None
        # the driver of a run whose attempts execute on a process or Dask worker (it cancels
        # the remote attempt when the run is cancelled from outside)
        self.remote: RemoteRun | None = None
        self.cf: Outcome | None = None
        self.tags: frozenset[str] = task.tags
        self.parameters: dict[str, Any] | None = None

    @property
    def flow_run_id(self) -> str | None:
        return self.flow_ctx.run_id if self.flow_ctx is not None else None

    def __repr__(self) -> str:
        return f"TaskRun({self.name!r}, {self.state!r})"


class FlowRun(Run):
    """A flow run while it runs."""

    __slots__ = ("ctx", "flow", "parameters", "parent_run", "tags")

    def __init__(
        self,
        id: str,
        name: str,
        flow: Flow[Any, Any],
        parameters: dict[str, Any],
        view: RunView | None,
    ) -> None:
        super().__init__(id, "flow", name, view)
        self.flow = flow
        self.parameters = parameters
        self.ctx: FlowRunContext | None = None
        self.parent_run: Run | None = None
        self.tags: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"FlowRun({self.name!r}, {self.state!r})"
