"""The final state of a submitted task run, as something threads and event loops can wait on.

Every ``.submit()`` and every item of a ``.map()`` needs one, so it is kept small: a
``concurrent.futures.Future`` allocates a ``Condition`` (with its deque, its ``RLock`` and five
bound methods) and two lists, about ten objects the garbage collector must walk on every full
collection while the run is alive. A ``.map()`` of 10,000 items kept 100,000 such objects alive
and paid for them in full collections (measured: more than a third of its time). An
:class:`Outcome` is one object: the :class:`threading.Event` a blocked waiter needs is created
only when somebody actually blocks on a run that is not finished, and since even a lock is an
object the collector walks, outcomes share a fixed set of 64 locks (chosen by address), each
guarding a few bytecodes that never block.

The first :meth:`Outcome.set` wins (a run cancelled from outside and settled by its own thread
at the same moment keeps the state recorded first); callbacks run once, in the thread that
sets the outcome, or at once when added to a finished one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from orion_nb.orchestration.states import State

__all__ = ["Outcome"]

_LOG = logging.getLogger("orion_nb.engine")
_LOCKS = tuple(threading.Lock() for _ in range(64))


class Outcome:
    """Set once with a run's final state; waited on by futures, upstream runs and the flow."""

    __slots__ = ("_callbacks", "_event", "state")

    def __init__(self) -> None:
        self.state: State | None = None
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[[Outcome], Any]] | None = None

    @property
    def _lock(self) -> threading.Lock:
        return _LOCKS[(id(self) >> 4) & 63]

    def done(self) -> bool:
        return self.state is not None

    def set(self, state: State) -> bool:
        """Record the final state; False (and nothing changes) when it was set already."""
        with self._lock:
            if self.state is not None:
                return False
            self.state = state
            event, callbacks = self._event, self._callbacks
            self._callbacks = None
        if event is not None:
            event.set()
        if callbacks:
            for fn in callbacks:
                self._call(fn)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the state is set (or ``timeout`` seconds passed); True when it is set."""
        if self.state is not None:
            return True
        with self._lock:
            if self.state is not None:
                return True
            event = self._event
            if event is None:
                event = self._event = threading.Event()
        return event.wait(timeout)

    def result(self, timeout: float | None = None) -> State:
        """The final state, waiting for it.

        Raises
        ------
        TimeoutError
            When the run is not finished within ``timeout`` seconds.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"The task run did not finish within {timeout:g} s.")
        return self.state  # type: ignore[return-value]

    def add_done_callback(self, fn: Callable[[Outcome], Any]) -> None:
        """Call ``fn(outcome)`` once the state is set (at once if it is)."""
        with self._lock:
            if self.state is None:
                if self._callbacks is None:
                    self._callbacks = [fn]
                else:
                    self._callbacks.append(fn)
                return
        self._call(fn)

    async def wait_async(self) -> None:
        """Wait on the running event loop without blocking it."""
        if self.state is not None:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def wake(_outcome: Outcome) -> None:
            try:
                loop.call_soon_threadsafe(_resolve, waiter)
            except RuntimeError:  # the loop closed while the run finished: nobody waits
                pass

        self.add_done_callback(wake)
        await waiter

    def _call(self, fn: Callable[[Outcome], Any]) -> None:
        try:
            fn(self)
        except Exception:  # one failing callback must not stop the others, nor the run
            _LOG.exception("A done callback of a task run raised; the other callbacks still run.")

    def __repr__(self) -> str:
        state = self.state.name if self.state is not None else "not finished"
        return f"Outcome({state})"


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
