"""Background event loop threads.

Jupyter runs every cell inside a running asyncio loop, so orion_nb never calls
``asyncio.run()`` in the caller's thread and never patches asyncio. A :class:`LoopThread` is a
daemon thread that owns a private loop, started on first use (never at import):

- the engine's shared one (:func:`get_loop_thread`) runs timers: the deadlines that interrupt
  sync code in worker threads (``engine/timeouts.py``);
- the store's writer starts its own, so a large write never delays a timer.

User code never runs on either: async flows and tasks run on the caller's loop when awaited, and
submitted async tasks on their worker thread's own loop (``engine/runners.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread", "get_loop_thread"]

T = TypeVar("T")


class LoopThread:
    """A daemon thread running an asyncio loop, with thread-safe ways in."""

    def __init__(self, name: str = "orion-nb-loop") -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._started = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> LoopThread:
        with self._lock:
            if self.thread is not None and self.thread.is_alive():
                return self
            self._started.clear()
            self.thread = threading.Thread(target=self._main, name=self.name, daemon=True)
            self.thread.start()
        self._started.wait()
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self, timeout: float = 5) -> None:
        """Stop the loop and join the thread (pending callbacks are dropped)."""
        loop, thread = self.loop, self.thread
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(loop.stop)
        if threading.current_thread() is not thread:
            thread.join(timeout)

    @property
    def in_thread(self) -> bool:
        return self.thread is not None and threading.current_thread() is self.thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns a concurrent future."""
        if self.loop is None:
            self.start()
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and block the calling thread for its result."""
        if self.in_thread:
            coro.close()
            raise RuntimeError(
                "LoopThread.run() called from the loop thread itself would deadlock."
            )
        return self.submit(coro).result(timeout)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if self.loop is None:
            self.start()
        assert self.loop is not None
        self.loop.call_soon_threadsafe(fn, *args)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> _Timer:
        """Call ``fn(*args)`` on the loop thread after ``delay`` seconds; cancellable."""
        timer = _Timer()
        if self.loop is None:
            self.start()
        assert self.loop is not None
        loop = self.loop

        def arm() -> None:
            if not timer.cancelled:
                timer.handle = loop.call_later(delay, fn, *args)

        loop.call_soon_threadsafe(arm)
        timer.loop = loop
        return timer


class _Timer:
    __slots__ = ("cancelled", "handle", "loop")

    def __init__(self) -> None:
        self.cancelled = False
        self.handle: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def cancel(self) -> None:
        self.cancelled = True
        handle, loop = self.handle, self.loop
        if handle is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(handle.cancel)


_loop_thread: LoopThread | None = None
_lock = threading.Lock()


def get_loop_thread() -> LoopThread:
    """The process's background loop thread, started on first use."""
    global _loop_thread
    lt = _loop_thread
    if lt is None:
        with _lock:
            if _loop_thread is None:
                _loop_thread = LoopThread().start()
            lt = _loop_thread
    return lt
