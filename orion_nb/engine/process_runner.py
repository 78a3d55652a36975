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
from typing import TYPE_CHECKING, Any

from orion_nb.engine.remote import Attempt
from orion_nb.engine.remote_session import RemoteSession, RemoteTaskRunner, main_hidden
from orion_nb.engine.runners import check_max_workers
from orion_nb.engine.worker import RemoteCall
from orion_nb.errors import CrashedRun

if TYPE_CHECKING:  # multiprocessing is imported when a pool starts, not with orion_nb
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["ProcessPoolTaskRunner"]


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


# -- in the kernel ---------------------------------------------------------------------------


def _context() -> Any:
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["orion_nb.engine.worker"])
        return ctx
    return multiprocessing.get_context("spawn")


class _ProcessSession(RemoteSession):
    worker_kind = "process-pool"
    batches = False  # ProcessPoolExecutor takes calls one by one: no submitter thread hop

    def __init__(self, config: ProcessPoolTaskRunner) -> None:
        super().__init__(config)
        self.max_workers = config.max_workers
        self._executor: ProcessPoolExecutor | None = None
        self._events: Any = None
        self._generation = 0
        self._send_lock = threading.Lock()  # attempts are sent from several threads

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

        done = self._done
        with self._send_lock, main_hidden():  # a submission may start a worker process
            for attempt in attempts:
                try:
                    fut = self._pool().submit(call, attempt.call)
                except BrokenProcessPool:  # a worker died since the last batch: a new pool
                    self._retire(broken=True)
                    fut = self._pool().submit(call, attempt.call)
                attempt.handle = fut
                fut.add_done_callback(functools.partial(done, attempt))

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._new_pool()
        assert self._executor is not None
        return self._executor

    def _done(self, attempt: Attempt, fut: concurrent.futures.Future[bytes]) -> None:
        if fut.cancelled():
            self.finished(attempt, None, concurrent.futures.CancelledError())
            return
        exc = fut.exception()
        if exc is None:
            self.finished(attempt, fut.result(), None)
        else:
            self.finished(attempt, None, exc)

    def _cancel(self, attempts: list[Attempt]) -> None:
        for attempt in attempts:
            handle = attempt.handle
            if handle is not None:
                handle.cancel()  # a queued call; a running one stops at its own deadline

    def classify(self, attempt: Attempt, error: BaseException) -> tuple[str, BaseException]:
        from concurrent.futures.process import BrokenProcessPool

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
