"""``ProcessPoolTaskRunner``: task runs' functions on a pool of local processes.

For CPU-bound Python that the GIL would serialise on threads. Each flow run that uses the
runner gets its own ``concurrent.futures.ProcessPoolExecutor``, closed when the flow run
ends, so a changed module is never run from a stale worker. Workers are started by the
``forkserver`` method where the platform has it (a clean, single-threaded server forks them
in milliseconds, with orion_nb already imported) and by ``spawn`` elsewhere; never by a plain
``fork`` of a kernel full of threads. As with every ``multiprocessing`` start method but
``fork``, children import the main script; workers here are started with it set aside
(:func:`~orion_nb.engine.remote_session.main_hidden`), so a script that runs flows at import time
(an exported notebook) does not run them again in every worker.

Attempts go to the pool in chunks (:func:`_run_chunk`, one pool call for several attempts)
once the runner has seen how long an attempt of the task's function takes: the executor's
per-call cost in the kernel (a work item, a future, a callback, the function sent again) is
then paid once per chunk, which is what made trivial tasks cost the kernel more than the
raw pool. A chunk aims at :data:`_CHUNK_SECONDS` of work, so a chunk's outcomes, which come
back together, are never held for long: an attempt that takes longer than that is sent
alone, as is every attempt of a function not seen yet, every attempt with a
``timeout_seconds`` or ``on_running`` hooks (the kernel arms its deadline and runs the hooks
when the attempt starts) and every attempt sent again. Attempts in a chunk do not report
their start separately; their outcome carries it, and the kernel records it then.

Each worker reports the start of an attempt through a queue read by one kernel thread.
``ProcessPoolExecutor`` cannot stop a call that is running: the worker stops it itself at
``timeout_seconds`` (SIGALRM on its main thread), and a cancelled flow run terminates the
pool's processes when it ends. When a worker process dies, the executor fails every call it
had in flight ("broken pool"): attempts that had started are lost (retried or Crashed),
the others are sent again to a new pool.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import signal
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from orion_nb.engine.remote import Attempt
from orion_nb.engine.remote_session import RemoteSession, RemoteTaskRunner, main_hidden
from orion_nb.engine.runners import check_max_workers
from orion_nb.engine.worker import Call, RemoteCall
from orion_nb.errors import CrashedRun, RemoteTaskError, describe

if TYPE_CHECKING:  # multiprocessing is imported when a pool starts, not with orion_nb
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["ProcessPoolTaskRunner"]

#: a chunk of attempts (one pool call) aims to take about this long on its worker
_CHUNK_SECONDS = 0.02
#: at most this many attempts in one pool call
_MAX_CHUNK = 64
#: a chunk takes no further attempt once it has run this long: the rest are sent again alone
#: (a function learned quick that turns slow for some inputs holds outcomes back this long)
_CHUNK_LIMIT = 0.2
#: functions whose attempt durations are remembered (least recently used ones are forgotten)
_MAX_REMEMBERED = 1024


class ProcessPoolTaskRunner(RemoteTaskRunner):
    """Runs each task run's function in a pool of worker processes (one pool per flow run).

    Parameters
    ----------
    max_workers
        Number of worker processes; ``None`` means one per CPU.
    """

    name = "processes"
    worker_kind = "process-pool"

    def __init__(self, max_workers: int | None = None) -> None:
        check_max_workers(self, max_workers)
        self.max_workers = max_workers or os.cpu_count() or 1

    def open(self) -> RemoteSession:
        return _ProcessSession(self).start()

    def __repr__(self) -> str:
        return f"ProcessPoolTaskRunner(max_workers={self.max_workers})"


# -- in the worker processes -------------------------------------------------------------------

_events: Any = None


def _init_worker(events: Any) -> None:
    global _events
    _events = events
    # a Ctrl-C in a terminal reaches the whole process group: the kernel decides what stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _notify(key: str, started: float, host: str, pid: int, worker: str) -> None:
    if _events is not None:
        _events.put((key, started, host, pid, worker))


def _run_chunk(call: RemoteCall, calls: list[Call]) -> tuple[list[Any], float]:
    """Several attempts in one pool call: the outcome (bytes) of each attempt it ran, in
    order, and the seconds they took together.

    An attempt of a chunk of several does not report its start (its outcome carries it).
    Past :data:`_CHUNK_LIMIT` seconds the chunk stops: the attempts it did not start get no
    outcome, and the kernel sends them again. An error that escapes an attempt (never the
    user's: :func:`run_attempt` returns those as its outcome) is returned in that attempt's
    place, so it fails that attempt alone.
    """
    if len(calls) > 1:
        call = RemoteCall(call.fn_key, call.fn_blob, call.flow_key, call.flow_blob, None)
    t0 = time.perf_counter()
    stop = t0 + _CHUNK_LIMIT
    out: list[Any] = []
    for c in calls:
        if out and time.perf_counter() > stop:
            break
        try:
            out.append(call(c))
        except Exception as exc:
            out.append(RemoteTaskError(f"The worker could not run the attempt: {describe(exc)}"))
    return out, time.perf_counter() - t0


# -- in the kernel ---------------------------------------------------------------------------


def _context() -> Any:
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["orion_nb.engine.worker"])
        return ctx
    return multiprocessing.get_context("spawn")


# seconds an attempt of a function took on a worker, by the function's digest (process-wide:
# a task mapped again in the next flow run is chunked from its first call)
_durations: OrderedDict[str, float] = OrderedDict()
_durations_lock = threading.Lock()


def _learn(fn_key: str, seconds: float) -> None:
    with _durations_lock:
        old = _durations.pop(fn_key, None)
        _durations[fn_key] = seconds if old is None else 0.7 * old + 0.3 * seconds
        while len(_durations) > _MAX_REMEMBERED:
            _durations.popitem(last=False)


def _chunk_sizes(count: int, per_attempt: float | None, workers: int) -> list[int]:
    """How ``count`` attempts of one function are split into pool calls.

    Unknown or slow functions: one attempt per call. Quick ones: chunks of up to
    :data:`_CHUNK_SECONDS` of work, never more than :data:`_MAX_CHUNK` attempts, and never
    more than a ``2 * workers``-th of what is left, so the last chunks are small and every
    worker stays busy to the end.
    """
    if per_attempt is None:
        return [1] * count
    size = max(1, min(_MAX_CHUNK, int(_CHUNK_SECONDS / max(per_attempt, 1e-7))))
    sizes = []
    left = count
    while left:
        k = max(1, min(size, left // (2 * workers)))
        sizes.append(k)
        left -= k
    return sizes


class _NotRun(Exception):
    """An attempt its chunk did not start (the chunk ran past :data:`_CHUNK_LIMIT`)."""

    def __init__(self) -> None:
        super().__init__("its chunk of attempts stopped before it; it is sent again alone")


class _Chunk:
    """One pool call: its future and the attempts it runs (each attempt's ``handle``)."""

    __slots__ = ("attempts", "fn_key", "fut")

    def __init__(self, fn_key: str, attempts: list[Attempt]) -> None:
        self.fn_key = fn_key
        self.attempts = attempts
        self.fut: concurrent.futures.Future[Any] | None = None


class _ProcessSession(RemoteSession):
    worker_kind = "process-pool"

    def __init__(self, config: ProcessPoolTaskRunner) -> None:
        super().__init__(config)
        self.max_workers = config.max_workers
        self._executor: ProcessPoolExecutor | None = None
        self._events: Any = None
        self._generation = 0

    def _connect(self) -> None:
        self._new_pool()

    def _new_pool(self) -> None:
        from concurrent.futures import ProcessPoolExecutor

        ctx = _context()
        events = ctx.SimpleQueue()
        self._executor = ProcessPoolExecutor(
            self.max_workers, mp_context=ctx, initializer=_init_worker, initargs=(events,)
        )
        self._events = events
        self._generation += 1
        threading.Thread(
            target=self._listen,
            args=(events,),
            name=f"orion-nb-processes-events-{self._generation}",
            daemon=True,
        ).start()

    def _listen(self, events: Any) -> None:
        while True:
            try:
                msg = events.get()
            except (OSError, EOFError, ValueError):
                return  # the queue was closed with its pool
            if msg is None:
                return
            self.started(*msg)

    def _notify(self) -> Any:
        return _notify

    def _send(self, call: RemoteCall, attempts: list[Attempt]) -> None:
        from concurrent.futures.process import BrokenProcessPool

        # only the session's submitter thread sends
        with main_hidden():  # a submission may start a worker process
            for chunk in self._chunks(call, attempts):
                calls = [attempt.call for attempt in chunk.attempts]
                try:
                    fut = self._pool().submit(_run_chunk, call, calls)
                except BrokenProcessPool:  # a worker died since the last batch: a new pool
                    self._retire(broken=True)
                    fut = self._pool().submit(_run_chunk, call, calls)
                chunk.fut = fut
                for attempt in chunk.attempts:
                    attempt.handle = chunk
                fut.add_done_callback(functools.partial(self._done, chunk))

    def _chunks(self, call: RemoteCall, attempts: list[Attempt]) -> list[_Chunk]:
        """``attempts`` (of one function) grouped into pool calls (see the module docstring)."""
        shared: list[Attempt] = []
        chunks: list[_Chunk] = []
        for a in attempts:
            if _may_share(a):
                shared.append(a)
            else:
                chunks.append(_Chunk(call.fn_key, [a]))
        with _durations_lock:
            per_attempt = _durations.get(call.fn_key)
        start = 0
        for k in _chunk_sizes(len(shared), per_attempt, self.max_workers):
            chunks.append(_Chunk(call.fn_key, shared[start : start + k]))
            start += k
        return chunks

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._new_pool()
        assert self._executor is not None
        return self._executor

    def _done(self, chunk: _Chunk, fut: concurrent.futures.Future[Any]) -> None:
        if fut.cancelled():
            for attempt in chunk.attempts:
                self.finished(attempt, None, concurrent.futures.CancelledError())
            return
        exc = fut.exception()
        if exc is not None:
            for attempt in chunk.attempts:
                self.finished(attempt, None, exc)
            return
        outcomes, seconds = fut.result()
        _learn(chunk.fn_key, seconds / max(1, len(outcomes)))
        for attempt, outcome in zip(chunk.attempts, outcomes, strict=False):
            if isinstance(outcome, bytes):
                self.finished(attempt, outcome, None)
            else:
                self.finished(attempt, None, outcome)
        for attempt in chunk.attempts[len(outcomes) :]:  # the chunk stopped before them
            self.finished(attempt, None, _NotRun())

    def _cancel(self, attempts: list[Attempt]) -> None:
        for attempt in attempts:
            chunk = attempt.handle
            # a queued call is cancelled once every attempt in it is; a running one stops at
            # its own deadline, and an attempt cancelled inside a running chunk has its late
            # outcome ignored (the kernel recorded it Cancelled already)
            if (
                isinstance(chunk, _Chunk)
                and chunk.fut is not None
                and all(a.cancelled for a in chunk.attempts)
            ):
                chunk.fut.cancel()

    def classify(self, attempt: Attempt, error: BaseException) -> tuple[str, BaseException]:
        from concurrent.futures.process import BrokenProcessPool

        if isinstance(error, _NotRun):
            return "lost", error  # never started: sent again, alone, without using a retry
        if isinstance(error, BrokenProcessPool):
            where = f" (pid {attempt.started[2]})" if attempt.started else ""
            exc = CrashedRun(
                f"A worker process of the process pool died while task run "
                f"{attempt.remote.eng.run.name!r} was in progress{where}; the pool stopped "
                "every call it was running."
            )
            exc.__cause__ = error
            return "lost", exc
        return super().classify(attempt, error)

    def _retire(self, broken: bool = False) -> None:
        """Stop the current pool: its processes, its start-report queue and listener."""
        executor, self._executor = self._executor, None
        events, self._events = self._events, None
        if executor is not None:
            busy = broken or bool(self.inflight)
            if busy:  # calls still running were given up: do not let them run on
                procs = getattr(executor, "_processes", None) or {}
                for proc in list(procs.values()):
                    proc.terminate()
            executor.shutdown(wait=not busy, cancel_futures=True)
        if events is not None:
            if broken:
                # a killed worker may hold the queue's lock: only close the kernel's end;
                # the listener sees the end of the pipe once the pool's processes are gone
                events._writer.close()
            else:
                events.put(None)

    def _disconnect(self) -> None:
        self._retire()


def _may_share(attempt: Attempt) -> bool:
    """Whether ``attempt`` may share a pool call with others (see the module docstring)."""
    timeout = attempt.call[6]
    return timeout is None and attempt.resends == 0 and not attempt.remote.eng.task.on_running_hooks
