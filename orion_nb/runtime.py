"""What the running code can learn about its run: ``orion_nb.runtime.flow_run`` and ``.task_run``.

As Prefect's ``prefect.runtime``: attributes read the current run when accessed, and are
``None`` outside a run, so code can use them anywhere::

    from orion_nb import runtime

    @task(retries=2)
    def fetch(url):
        if runtime.task_run.run_count > 1:
            log.info("attempt %d of %s", runtime.task_run.run_count, runtime.task_run.name)
"""

from __future__ import annotations

from typing import Any

from orion_nb.engine.context import current_flow_run, current_task_run

__all__ = ["flow_run", "task_run"]


class _FlowRunView:
    """The current flow run (the task's flow run inside a task)."""

    @staticmethod
    def _ctx() -> Any:
        task = current_task_run()
        return task.flow_run if task is not None else current_flow_run()

    @property
    def id(self) -> str | None:
        ctx = self._ctx()
        return ctx.run_id if ctx is not None else None

    @property
    def name(self) -> str | None:
        ctx = self._ctx()
        return ctx.name if ctx is not None else None

    @property
    def flow_name(self) -> str | None:
        ctx = self._ctx()
        return ctx.flow.name if ctx is not None else None

    @property
    def parameters(self) -> dict[str, Any]:
        ctx = self._ctx()
        return dict(ctx.parameters) if ctx is not None else {}

    @property
    def tags(self) -> list[str]:
        ctx = self._ctx()
        return sorted(ctx.tags) if ctx is not None else []

    @property
    def parent_task_run_id(self) -> str | None:
        ctx = self._ctx()
        return ctx.parent_task_run_id if ctx is not None else None

    def __repr__(self) -> str:
        return f"runtime.flow_run(id={self.id!r}, name={self.name!r})"


class _TaskRunView:
    """The current task run."""

    @property
    def id(self) -> str | None:
        ctx = current_task_run()
        return ctx.run.id if ctx is not None else None

    @property
    def name(self) -> str | None:
        ctx = current_task_run()
        return ctx.run.name if ctx is not None else None

    @property
    def task_name(self) -> str | None:
        ctx = current_task_run()
        return ctx.task.name if ctx is not None else None

    @property
    def run_count(self) -> int:
        """The attempt being made: 1 the first time, 2 for the first retry, ..."""
        ctx = current_task_run()
        return ctx.run.run_count if ctx is not None else 0

    @property
    def parameters(self) -> dict[str, Any]:
        ctx = current_task_run()
        return dict(ctx.parameters) if ctx is not None else {}

    @property
    def tags(self) -> list[str]:
        ctx = current_task_run()
        return sorted(ctx.run.tags) if ctx is not None else []

    def __repr__(self) -> str:
        return f"runtime.task_run(id={self.id!r}, name={self.name!r}, run_count={self.run_count})"


flow_run = _FlowRunView()
task_run = _TaskRunView()
