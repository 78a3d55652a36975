"""Interrupting synchronous user code at a deadline.

Async code is easy (``asyncio.timeout``). Sync code runs in the caller's thread, which cannot be
killed, so:

- on the main thread (a script, a Jupyter cell) a ``SIGALRM`` timer raises
  :class:`RunTimeoutError` even inside a blocking ``time.sleep``;
- on other threads (task-runner workers) the engine's loop thread raises the exception in the
  target thread with ``PyThreadState_SetAsyncExc``; it lands at the next Python bytecode, so a
  long blocking C call is interrupted when it returns.

The same async-exception mechanism cancels worker threads when a flow is cancelled.
"""

from __future__ import annotations

import ctypes
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orion_nb._loop import get_loop_thread
from orion_nb.errors import RunTimeoutError

__all__ = ["Deadline", "deadline", "raise_in_thread"]

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)


def raise_in_thread(ident: int, exc_type: type[BaseException] | None) -> bool:
    """Raise ``exc_type`` asynchronously in thread ``ident`` (``None`` clears a pending one)."""
    obj: Any = exc_type if exc_type is not None else ctypes.py_object()
    if exc_type is None:
        _set_async_exc.argtypes = (ctypes.c_ulong, ctypes.c_void_p)
        try:
            return bool(_set_async_exc(ctypes.c_ulong(ident), None))
        finally:
            _set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
    return bool(_set_async_exc(ctypes.c_ulong(ident), obj))


class Deadline:
    """Whether the deadline fired (so that a :class:`RunTimeoutError` is known to be ours)."""

    __slots__ = ("done", "fired", "lock", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self.done = False
        self.lock = threading.Lock()


_alarm_active = False


@contextmanager
def deadline(seconds: float | None) -> Iterator[Deadline | None]:
    """Raise :class:`RunTimeoutError` in the current thread after ``seconds``."""
    global _alarm_active
    if seconds is None:
        yield None
        return
    d = Deadline(seconds)
    ident = threading.get_ident()
    use_signal = (
        threading.current_thread() is threading.main_thread()
        and hasattr(signal, "setitimer")
        and not _alarm_active
        # someone else's alarm is pending (e.g. pytest-timeout): leave it alone
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )
    if use_signal:

        def handler(signum: int, frame: Any) -> None:
            with d.lock:
                if d.done:
                    return
                d.fired = True
            raise RunTimeoutError(f"Run exceeded timeout_seconds={seconds:g}.")

        previous = signal.signal(signal.SIGALRM, handler)
        _alarm_active = True
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield d
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            with d.lock:
                d.done = True
            signal.signal(signal.SIGALRM, previous)
            _alarm_active = False
        return

    def fire() -> None:
        with d.lock:
            if d.done:
                return
            d.fired = True
            raise_in_thread(ident, RunTimeoutError)

    timer = get_loop_thread().call_later(seconds, fire)
    try:
        yield d
    finally:
        timer.cancel()
        with d.lock:
            already = d.fired
            d.done = True
        if already and not _in_exception():
            # the deadline hit as the code returned: drop the pending exception
            raise_in_thread(ident, None)


def _in_exception() -> bool:
    import sys

    return sys.exc_info()[0] is not None
