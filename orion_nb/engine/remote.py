"""Task runners whose workers are other processes: the kernel orchestrates, workers execute.

With the thread runner a worker thread runs the whole driver of a task run. With the process
pool and Dask runners only ``fn(*args, **kwargs)`` of one attempt leaves the kernel; states,
retries, caching, timeouts, concurrency limits and records stay here, decided by the same
:class:`~orion_nb.engine.task_engine.TaskRunEngine` steps as every other run.

One attempt
-----------
1. **Start** (:meth:`RemoteRun.start`, when the run's upstream futures are done): the engine's
   ``begin`` asks the policy for RUNNING (cache hit, failed upstream, a full concurrency slot
   are decided here) and *holds* the accepted state; the arguments are pickled (an argument
   that cannot be pickled fails the run, naming the parameter and its type) and the attempt
   is queued. This runs in the submitting thread; only a run whose tags have concurrency
   limits starts on the orchestration pool, because it may wait for a slot.
2. **Submit**: one thread per runner drains the queue and hands whole batches to the
   executor (``Client.map`` for Dask), so a ``.map()`` of 1,000 items costs a few round trips.
3. **Started**: the worker reports the start (Dask topic events, a queue for the process
   pool). The held RUNNING state is recorded with the worker's start time, preceded by a
   ``ran`` event (host, pid, worker), so timelines show when and where work really ran. The
   kernel arms its timeout for the attempt.
4. **Outcome**: completion callbacks on the remote futures (batched ``gather`` for Dask)
   hand the outcome to the orchestration pool, a small thread pool that never blocks per
   task. What the attempt logged, printed and recorded is replayed; then ``complete``,
   ``fail``, ``crash`` or ``lost`` decides, and a retry is scheduled on a timer or the run is
   finished (hooks, future).

Timeouts, cancellation, lost workers
------------------------------------
The worker enforces ``timeout_seconds`` itself (it frees the worker and keeps the traceback);
the kernel enforces it too, :data:`GRACE` seconds later: it cancels the remote future and
records TimedOut, so an attempt stuck in C code cannot hold the flow. Cancelling the run
(cell interrupt, flow cancelled) cancels its queued or running remote future (in batches,
``Client.cancel``) and records Cancelled at once. A worker that dies mid-attempt ends the
attempt as *lost*: retried if the task has retries left, else Crashed; an attempt lost before
it started is simply sent again. A late outcome of an attempt the kernel already gave up on
only has its logs replayed.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orion_nb._loop import get_loop_thread
from orion_nb.engine import concurrency, recorder, run_logging
from orion_nb.engine.task_engine import TaskRunEngine
from orion_nb.engine.transitions import record
from orion_nb.engine.worker import Call, RemoteTraceback
from orion_nb.errors import (
    CancelledRun,
    CrashedRun,
    DefinitionError,
    ParameterError,
    RemoteTaskError,
    RunTimeoutError,
    describe,
)
from orion_nb.orchestration.states import TERMINAL_TYPES, Cancelled

if TYPE_CHECKING:  # the sessions import this module
    from orion_nb.engine.remote_session import RemoteSession

__all__ = ["GRACE", "Attempt", "RemoteRun"]

#: seconds the kernel waits past ``timeout_seconds`` for the worker's own deadline
GRACE = 0.5
#: an attempt lost before it started is sent again at most this many times
_MAX_RESENDS = 3


class Attempt:
    """One attempt of a task run, from the queue to its outcome."""

    __slots__ = ("call", "cancelled", "handle", "key", "remote", "resends", "started", "timer")

    def __init__(self, remote: RemoteRun, call: Call) -> None:
        self.remote = remote
        self.call = call
        self.key = call[0]
        self.handle: Any = None  # the executor's future
        self.started: tuple[float, str, int, str] | None = None
        self.timer: Any = None
        self.cancelled = False
        self.resends = 0


class RemoteRun:
    """Drives one task run whose attempts execute on a :class:`RemoteSession`'s workers."""

    __slots__ = ("attempt", "ctx", "eng", "lock", "session")

    def __init__(
        self, session: RemoteSession, eng: TaskRunEngine, ctx: contextvars.Context
    ) -> None:
        self.session = session
        self.eng = eng
        self.ctx = ctx
        self.lock = threading.Lock()
        self.attempt: Attempt | None = None
        eng.run.remote = self

    def _job(self, fn: Callable[..., Any], *args: Any) -> Callable[[], None]:
        """``fn(*args)`` in the run's context; an engine error ends the run, never hangs it."""
        ctx = self.ctx

        def job() -> None:
            try:
                ctx.copy().run(fn, *args)  # jobs of one run may overlap: a copy each
            except BaseException as exc:
                self._broken(exc)
                if not isinstance(exc, Exception):
                    raise

        return job

    def _broken(self, exc: BaseException) -> None:
        eng = self.eng
        with self.lock:
            attempt, self.attempt = self.attempt, None
            if attempt is not None:
                self.session.cancel(attempt)
            eng.held = None
            if isinstance(exc, KeyboardInterrupt | CancelledRun):
                eng.cancel(exc)
            else:
                eng.crash(exc)
        eng.done()

    def start(self) -> None:
        """Begin an attempt (its upstream runs are done)."""
        run = self.eng.run
        job = self._job(self._start)
        if run.tags and concurrency.limits():  # may wait for a slot: not in the caller
            self.session.pool.submit(job)
        else:
            job()

    def _start(self) -> None:
        eng, session = self.eng, self.session
        if not eng.begin(defer=True):
            eng.done()
            return
        try:
            call = session.prepare(eng)
        except (ParameterError, DefinitionError) as exc:
            eng.held = None
            eng.fail(exc, retry=False)  # sending it again would fail the same way
            eng.done()
            return
        attempt = Attempt(self, call)
        with self.lock:
            if eng.run.state.type in TERMINAL_TYPES:  # cancelled meanwhile
                eng.held = None
                eng._release()
                return
            self.attempt = attempt
        session.send(attempt)

    # -- reports from the session (on the orchestration pool) ---------------------------------
    def on_started(self, attempt: Attempt, ts: float, host: str, pid: int, worker: str) -> None:
        with self.lock:
            if attempt is not self.attempt:
                return
            if attempt.started is None:
                self._started(attempt, ts, host, pid, worker)
                return
            if attempt.started[1:] == (host, pid, worker):
                return
            # the cluster restarted it elsewhere: its worker died; the kernel decides
            retry_in = self._lost_again(attempt, worker)
        self._after(retry_in)

    def _started(self, attempt: Attempt, ts: float, host: str, pid: int, worker: str) -> None:
        attempt.started = (ts, host, pid, worker)
        self.eng.started(ts, host, pid, worker)
        timeout = self.eng.task.timeout_seconds
        if timeout is not None:
            attempt.timer = get_loop_thread().call_later(
                timeout + GRACE, self.session.pool.submit, self._job(self._timed_out, attempt)
            )

    def _lost_again(self, attempt: Attempt, worker: str) -> float | None:
        assert attempt.started is not None
        first = attempt.started[3]
        self.attempt = None
        if attempt.timer is not None:
            attempt.timer.cancel()
        self.session.cancel(attempt)
        exc = CrashedRun(
            f"The worker running task run {self.eng.run.name!r} ({first}) died; the cluster "
            f"restarted the attempt on {worker}, which the kernel cancelled: retries are "
            "decided by the task's own retry options."
        )
        return self.eng.lost(exc)

    def on_outcome(self, attempt: Attempt, data: bytes | None, error: BaseException | None) -> None:
        """The remote future finished: ``data`` is the worker's outcome, or ``error`` why not."""
        eng = self.eng
        outcome: Any = None
        if data is not None:
            try:
                outcome = self.session.loads(data)
            except Exception as exc:
                error = RemoteTaskError(
                    f"The outcome of task run {eng.run.name!r} came back from its worker but "
                    f"cannot be unpickled in the kernel ({describe(exc)}); is every module "
                    "the result uses importable here too?"
                )
                error.__cause__ = exc
        with self.lock:
            current = attempt is self.attempt
            if outcome is not None:
                self._replay(outcome)
            if not current:
                return  # the kernel already moved on (timed out, cancelled, lost)
            self.attempt = None
            if attempt.timer is not None:
                attempt.timer.cancel()
            if eng.run.state.type in TERMINAL_TYPES:  # cancelled from outside meanwhile
                eng.held = None
                eng._release()
                return
            if outcome is None:
                assert error is not None
                retry_in = self._failed_remotely(attempt, error)
                if retry_in is _RESENT:
                    return
            else:
                if attempt.started is None:  # its start report was slower than its outcome
                    self._started(attempt, outcome[3], outcome[5], outcome[6], outcome[7])
                retry_in = self._step(outcome)
        self._after(retry_in)

    def _step(self, outcome: Any) -> float | None:
        eng = self.eng
        kind, payload, tb = outcome[0], outcome[1], outcome[2]
        if kind == "returned":
            return eng.complete(payload)
        if kind == "crashed":
            exc: BaseException = CrashedRun(f"The attempt stopped on its worker: {payload}.")
            exc.__cause__ = RemoteTraceback(tb or "")
            eng.crash(exc)
            return None
        if tb:
            payload.__cause__ = RemoteTraceback(tb)
        return eng.fail(payload, timed_out=kind == "timeout")

    def _failed_remotely(self, attempt: Attempt, error: BaseException) -> Any:
        """The remote future failed without an outcome: lost worker, cancelled, unusable."""
        eng = self.eng
        kind, exc = self.session.classify(attempt, error)
        if kind == "lost" and attempt.started is None and attempt.resends < _MAX_RESENDS:
            attempt.resends += 1  # it never started: no attempt was used up
            key = f"{attempt.call[0].split('~')[0]}~{attempt.resends}"  # a key never used
            attempt.call = (key, *attempt.call[1:])  # type: ignore[assignment]
            attempt.key = key
            self.attempt = attempt
            self.session.send(attempt)
            return _RESENT
        eng.held = None
        if kind == "lost":
            if attempt.started is None:
                eng.crash(exc)
                return None
            return eng.lost(exc)
        return eng.fail(exc, retry=False)

    def _timed_out(self, attempt: Attempt) -> None:
        with self.lock:
            if attempt is not self.attempt:
                return
            self.attempt = None
            self.session.cancel(attempt)
            timeout = self.eng.task.timeout_seconds
            where = attempt.started[3] if attempt.started else "its worker"
            exc = RunTimeoutError(
                f"Run exceeded timeout_seconds={timeout:g}; the kernel stopped waiting for "
                f"{where} and cancelled the attempt."
            )
            retry_in = self.eng.fail(exc, timed_out=True)
        self._after(retry_in)

    def _after(self, retry_in: float | None) -> None:
        if retry_in is None:
            self.eng.done()
        elif retry_in > 0:
            get_loop_thread().call_later(retry_in, self.session.pool.submit, self._job(self._start))
        else:
            self.session.pool.submit(self._job(self._start))

    def _replay(self, outcome: Any) -> None:
        """What the attempt logged, recorded and printed, as if it happened here."""
        records, events, out, err = outcome[8], outcome[9], outcome[10], outcome[11]
        view = self.eng.run.view
        if events:
            for ev in events:
                recorder.emit(ev)
                if view is not None:
                    view.on_event(ev)
        if records:
            run_logging.replay(records, view)
        if out or err:
            import sys

            if out:
                sys.stdout.write(out)
            if err:
                sys.stderr.write(err)

    def cancel(self, reason: str, rule: str | None) -> None:
        """Cancelled from outside: record it and stop the attempt on the cluster."""
        eng = self.eng
        run = eng.run
        with self.lock:
            if run.state.type in TERMINAL_TYPES:
                return
            msg = f"{rule}: {reason}" if rule else reason
            record(run, Cancelled(message=msg, rule=rule, data=CancelledRun(reason)))
            attempt, self.attempt = self.attempt, None
            if attempt is not None:
                if attempt.timer is not None:
                    attempt.timer.cancel()
                self.session.cancel(attempt)
            eng.held = None
            eng._release()
        eng._settle(run.state)


_RESENT: Any = object()
