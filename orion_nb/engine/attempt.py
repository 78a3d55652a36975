"""One attempt of a run: what the user's code did, mapped to the engine step that follows.

Both engines (task and flow) and both modes (sync and async) run the user's code inside an
:class:`Attempt` (or :class:`AsyncAttempt`), so this decision is written once per mode:

==================================  ==============================================
the code ...                        the step
==================================  ==============================================
returned ``value``                  ``eng.complete(value)``
hit ``timeout_seconds``             ``eng.fail(RunTimeoutError, timed_out=True)``
raised an ``Exception``             ``eng.fail(exc)``
was interrupted or cancelled        ``eng.cancel(exc)``, then the exception goes on
raised anything else                ``eng.crash(exc)``, then the exception goes on
==================================  ==============================================

``complete`` and ``fail`` return :data:`RetryIn`, kept in :attr:`Attempt.retry_in` for the
driver: seconds until the next attempt, or ``None`` when the run reached its final state. The
timeout covers the user's code only; the steps run after the deadline is disarmed.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Protocol

from orion_nb.engine.timeouts import deadline
from orion_nb.errors import CancelledRun, RunTimeoutError

__all__ = ["AsyncAttempt", "Attempt", "RetryIn", "Steps"]

#: seconds until the next attempt, or None when the run reached its final state
RetryIn = float | None

_CANCEL = (KeyboardInterrupt, CancelledRun, asyncio.CancelledError)


class Steps(Protocol):
    def complete(self, value: Any) -> RetryIn: ...
    def fail(self, exc: BaseException, timed_out: bool = False) -> RetryIn: ...
    def cancel(self, exc: BaseException) -> None: ...
    def crash(self, exc: BaseException) -> None: ...
    async def acomplete(self, value: Any) -> RetryIn: ...
    async def afail(self, exc: BaseException, timed_out: bool = False) -> RetryIn: ...


class Attempt:
    """``with Attempt(eng, timeout) as a: a.returned(fn(...))`` (synchronous code)."""

    __slots__ = ("_deadline", "_fired", "_has_value", "_value", "eng", "retry_in")

    def __init__(self, eng: Steps, timeout: float | None) -> None:
        self.eng = eng
        self.retry_in: RetryIn = None
        self._deadline = deadline(timeout) if timeout is not None else None
        self._fired: Any = None
        self._value: Any = None
        self._has_value = False

    def __enter__(self) -> Attempt:
        if self._deadline is not None:
            self._fired = self._deadline.__enter__()
        return self

    def returned(self, value: Any) -> None:
        self._value = value
        self._has_value = True

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if self._deadline is not None:
            self._deadline.__exit__(et, exc, tb)
        eng = self.eng
        if exc is None:
            value, self._value = self._value, None  # the attempt does not keep the result alive
            self.retry_in = eng.complete(value)
            return False
        if isinstance(exc, RunTimeoutError):
            fired = self._fired is not None and self._fired.fired
            self.retry_in = eng.fail(exc, timed_out=fired)
            return True
        if isinstance(exc, _CANCEL):
            eng.cancel(exc)
            return False
        if isinstance(exc, Exception):
            self.retry_in = eng.fail(exc)
            return True
        eng.crash(exc)
        return False


class AsyncAttempt:
    """``async with AsyncAttempt(eng, timeout) as a: a.returned(await fn(...))``."""

    __slots__ = ("_timeout", "_timer", "_value", "eng", "retry_in", "seconds")

    def __init__(self, eng: Steps, timeout: float | None) -> None:
        self.eng = eng
        self.seconds = timeout
        self.retry_in: RetryIn = None
        self._timer: Any = None
        self._value: Any = None

    async def __aenter__(self) -> AsyncAttempt:
        if self.seconds is not None:
            self._timer = asyncio.timeout(self.seconds)
            await self._timer.__aenter__()
        return self

    def returned(self, value: Any) -> None:
        self._value = value

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        timed_out = False
        if self._timer is not None:
            try:
                await self._timer.__aexit__(et, exc, tb)
            except TimeoutError as expired:
                timed_out = True
                exc = RunTimeoutError(f"Run exceeded timeout_seconds={self.seconds:g}.")
                exc.__cause__ = expired
        eng = self.eng
        if exc is None:
            value, self._value = self._value, None
            self.retry_in = await eng.acomplete(value)
            return False
        if isinstance(exc, RunTimeoutError):
            self.retry_in = await eng.afail(exc, timed_out)
            return True
        if isinstance(exc, _CANCEL):
            eng.cancel(exc)
            return False
        if isinstance(exc, Exception):
            self.retry_in = await eng.afail(exc)
            return True
        eng.crash(exc)
        return False
