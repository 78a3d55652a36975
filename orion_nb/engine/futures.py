"""Futures returned by ``Task.submit`` and ``Task.map``, and waiting for several of them."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

from orion_nb.engine.outcome import Outcome
from orion_nb.engine.runners import help_until_done
from orion_nb.engine.runs import TaskRun
from orion_nb.orchestration.states import State

__all__ = ["DoneAndNotDoneFutures", "FutureList", "TaskFuture", "as_completed", "wait"]

R = TypeVar("R")


class TaskFuture(Generic[R]):
    """A task run that may still be running.

    ``result()`` waits and returns the task's return value (or raises its exception);
    ``wait()`` waits without raising; ``state`` is the run's current state.
    """

    __slots__ = ("__weakref__", "_cf", "run")

    def __init__(self, run: TaskRun, cf: Outcome) -> None:
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

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the run is finished (or ``timeout`` seconds passed); never raises the
        run's failure (a KeyboardInterrupt while waiting still propagates)."""
        help_until_done(self._cf, timeout)
        self._cf.wait(timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The task's return value; raises its exception if it failed.

        Raises
        ------
        TimeoutError
            When the run is not finished within ``timeout`` seconds.
        """
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        help_until_done(self._cf, timeout)
        state = self._cf.result(timeout)
        return state.result(raise_on_failure=raise_on_failure)  # type: ignore[no-any-return]

    def add_done_callback(self, fn: Callable[[TaskFuture[R]], Any]) -> None:
        self._cf.add_done_callback(lambda _outcome: fn(self))

    def __repr__(self) -> str:
        state = self.run.state.name if self.run.state is not None else "Pending"
        return f"TaskFuture({self.run.name!r}, state={state})"


class FutureList(list[TaskFuture[R]]):
    """The futures of a ``.map()`` call; ``result()`` returns all results in order."""

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        deadline = None if timeout is None else time.monotonic() + timeout
        return [f.result(_left(deadline), raise_on_failure) for f in self]

    def wait(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for f in self:
            f.wait(_left(deadline))


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class DoneAndNotDoneFutures(NamedTuple):
    done: set[TaskFuture[Any]]
    not_done: set[TaskFuture[Any]]


def wait(futures: Iterable[TaskFuture[Any]], timeout: float | None = None) -> DoneAndNotDoneFutures:
    """Wait until every future is done, or ``timeout`` seconds passed.

    Returns the futures that finished and those that did not, as Prefect's ``wait`` does.
    """
    futures = list(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    for f in futures:
        f.wait(_left(deadline))
    done = {f for f in futures if f.done()}
    return DoneAndNotDoneFutures(done, {f for f in futures if f not in done})


def as_completed(
    futures: Iterable[TaskFuture[Any]], timeout: float | None = None
) -> Iterator[TaskFuture[Any]]:
    """Yield each future as soon as its run is finished, in the order they finish.

    Raises
    ------
    TimeoutError
        When ``timeout`` seconds pass before every future is done.
    """
    unique = list({id(f): f for f in futures}.values())
    finished: queue.SimpleQueue[TaskFuture[Any]] = queue.SimpleQueue()
    for f in unique:
        f._cf.add_done_callback(lambda _outcome, f=f: finished.put(f))  # type: ignore[misc]
    deadline = None if timeout is None else time.monotonic() + timeout
    for left in range(len(unique), 0, -1):
        try:
            yield finished.get(timeout=_left(deadline))
        except queue.Empty:
            raise TimeoutError(
                f"{left} (of {len(unique)}) futures unfinished after {timeout:g} s."
            ) from None
