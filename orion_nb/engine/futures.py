"""Futures returned by ``Task.submit`` and ``Task.map``."""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from orion_nb.orchestration.states import State

if TYPE_CHECKING:
    from orion_nb.engine.tasks import TaskRun

__all__ = ["FutureList", "TaskFuture"]

R = TypeVar("R")


class TaskFuture(Generic[R]):
    """A task run that may still be running.

    ``result()`` waits and returns the task's return value (or raises its exception);
    ``wait()`` waits without raising; ``state`` is the run's current state.
    """

    __slots__ = ("__weakref__", "_cf", "run")

    def __init__(self, run: TaskRun, cf: concurrent.futures.Future[State]) -> None:
        self.run = run
        self._cf = cf

    @property
    def task_run_id(self) -> str:
        return self.run.id

    @property
    def state(self) -> State:
        return self.run.state

    def done(self) -> bool:
        return self._cf.done()

    def _help_while_waiting(self, timeout: float | None) -> None:
        from orion_nb.engine.runners import help_until_done

        help_until_done(self._cf, timeout)

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the run is finished (or ``timeout`` seconds passed)."""
        self._help_while_waiting(timeout)
        try:
            self._cf.result(timeout)
        except concurrent.futures.TimeoutError:
            return
        except BaseException:
            return

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The task's return value; raises its exception if it failed.

        Raises
        ------
        TimeoutError
            When the run is not finished within ``timeout`` seconds.
        """
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        self._help_while_waiting(timeout)
        state = self._cf.result(timeout)
        return state.result(raise_on_failure=raise_on_failure)  # type: ignore[no-any-return]

    def add_done_callback(self, fn: Any) -> None:
        self._cf.add_done_callback(lambda _cf: fn(self))

    def __repr__(self) -> str:
        return f"TaskFuture({self.run.name!r}, state={self.run.state.name})"


class FutureList(list[TaskFuture[R]]):
    """The futures of a ``.map()`` call; ``result()`` returns all results in order."""

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        return [f.result(timeout, raise_on_failure) for f in self]

    def wait(self, timeout: float | None = None) -> None:
        for f in self:
            f.wait(timeout)
