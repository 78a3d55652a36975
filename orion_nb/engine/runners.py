"""Task runners: where ``.submit()`` and ``.map()`` execute task runs.

The runner only *executes*; states, retries and records stay with the engine in the calling
process. :class:`ThreadPoolTaskRunner` is the default; :class:`SequentialTaskRunner` runs each
submitted task at once in the calling thread, which makes debugging and tracebacks simple.
The process-pool and Dask runners (:mod:`orion_nb.engine.process_runner`,
:mod:`orion_nb.engine.dask_runner`) run only the user's function of each attempt in another
process, while the kernel drives the run (:mod:`orion_nb.engine.remote`).

A runner given to ``@flow(task_runner=...)`` (or ``configure(task_runner=...)``) is a
configuration: each flow run calls :meth:`TaskRunner.open` for the runner it actually uses
(the thread runners: themselves; a remote runner: a new session with its own pool or
cluster connection) and :meth:`TaskRunner.close` when it ends.

Waiting inside a worker
-----------------------
A task run that waits for a run it submitted itself (``child.submit(...).result()`` inside a
task) would hold a worker while its child waits for one; with every worker waiting, nothing
would ever run. So a waiting worker *helps*: it runs queued runs in the meantime
(:func:`help_until_done`). A worker that cannot help, because its thread is inside an async
task's event loop (a queued async run cannot start on a loop that is already running), instead
lets the pool start one more worker for as long as it waits (:func:`blocking`), so the queue
always drains.

Submitted async tasks run in a worker thread on that thread's own event loop (one per thread,
created on first use), never on the caller's loop and never on orion_nb's I/O loop: a blocking
``.result()`` inside such a task blocks only its own worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from orion_nb.engine.outcome import Outcome
from orion_nb.errors import DefinitionError

__all__ = [
    "RUNNER_NAMES",
    "SequentialTaskRunner",
    "TaskRunner",
    "ThreadPoolTaskRunner",
    "blocking",
    "check_max_workers",
    "configured_runner",
    "help_until_done",
    "resolve_task_runner",
    "run_coroutine_in_worker",
]

T = TypeVar("T")


class TaskRunner:
    """Base class: ``submit(fn)`` runs ``fn()`` somewhere and returns nothing."""

    name = "base"
    #: True when workers run only the user's function and the kernel drives each run
    remote = False
    #: True when ``submit`` only queues its job and never runs the user's function in the
    #: calling thread: a ``.map()`` may then pause the garbage collector while it submits
    #: (:mod:`orion_nb._collector`); a runner that runs jobs inline must say False
    queues = False

    def submit(self, fn: Callable[[], Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def open(self) -> TaskRunner:
        """The runner one flow run uses, started (thread runners: this one)."""
        return self

    def close(self) -> None:
        """The flow run that opened this runner ended."""

    def shutdown(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_max_workers(runner: TaskRunner, value: Any) -> None:
    """``max_workers`` of a pool runner: a whole number >= 1, or None for the default."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise DefinitionError(
            f"{type(runner).__name__}(max_workers={value!r}): max_workers must be a whole "
            "number >= 1 (or None for the default)."
        )


class ThreadPoolTaskRunner(TaskRunner):
    """Runs task runs on a pool of threads (created lazily).

    Submitted runs go to one queue that at most ``max_workers`` worker jobs drain. A burst of
    10,000 ``.map()`` runs therefore costs a queue append each, not a thread hand-off each,
    while up to ``max_workers`` runs still execute at the same time (blocking I/O overlaps).
    Workers blocked in :func:`blocking` do not count against ``max_workers``.
    """

    name = "threads"
    queues = True

    def __init__(self, max_workers: int | None = None) -> None:
        check_max_workers(self, max_workers)
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._queue: deque[Callable[[], Any]] = deque()
        self._drainers = 0
        self._blocked = 0  # workers waiting without helping: each lets one more worker run

    def _get_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    # threads are capped by the drainer count, not by the executor
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        self.max_workers + _MAX_EXTRA_WORKERS, thread_name_prefix="orion-nb-task"
                    )
                pool = self._pool
        return pool

    def submit(self, fn: Callable[[], Any]) -> None:
        # the engine hands over a callable that already runs in the submitter's context
        self._queue.append(fn)
        if self._drainers < self.max_workers + self._blocked:
            self._spawn()

    def _spawn(self) -> None:
        with self._lock:
            spawn = self._drainers < self.max_workers + self._blocked
            if spawn:
                self._drainers += 1
        if spawn:
            self._get_pool().submit(self._drain)

    def block(self) -> None:
        """The calling worker waits without helping: let one more worker drain the queue."""
        with self._lock:
            self._blocked += 1
        if self._queue:
            self._spawn()

    def unblock(self) -> None:
        with self._lock:
            self._blocked -= 1

    def help_once(self) -> bool:
        """Run one queued task run in the calling thread; False when nothing is queued.

        A task run that waits for a run it submitted itself (``child.submit(...).result()``
        inside a task) would otherwise hold a worker while its child waits for one: with every
        worker waiting, nothing would ever run. Waiting workers help instead.
        """
        try:
            fn = self._queue.popleft()
        except IndexError:
            return False
        try:
            fn()
        except BaseException:
            pass
        return True

    def _linger(self) -> bool:
        """The queue is empty: True when this worker waited and may find work now."""
        return False

    def _drain(self) -> None:
        _worker.runner = self
        queue = self._queue
        while True:
            try:
                fn = queue.popleft()
            except IndexError:
                if self._linger():
                    continue
                with self._lock:
                    if not queue:
                        self._drainers -= 1
                        return
                continue
            try:
                fn()
            except BaseException:  # the engine records failures itself; keep draining
                pass

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self.max_workers})"


_MAX_EXTRA_WORKERS = 256
_worker = threading.local()


def current_worker_runner() -> ThreadPoolTaskRunner | None:
    """The thread pool runner whose worker is the calling thread, if any."""
    return getattr(_worker, "runner", None)


@contextmanager
def blocking() -> Iterator[None]:
    """Around a wait that cannot help (see the module docstring): keep the pool draining."""
    runner = current_worker_runner()
    if runner is None:
        yield
        return
    runner.block()
    try:
        yield
    finally:
        runner.unblock()


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def help_until_done(cf: Outcome, timeout: float | None = None) -> None:
    """On a worker thread, run queued task runs until ``cf`` is done (or ``timeout``).

    The awaited run may be queued behind this very worker; elsewhere this returns at once
    and the caller simply waits. Inside a running event loop the worker cannot run queued
    async runs, so it waits and lets another worker take its place (:func:`blocking`).
    """
    if cf.done():
        return
    runner = current_worker_runner()
    if runner is None:
        return
    if _in_running_loop():
        with blocking():
            cf.wait(timeout)
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    while not cf.done():
        if deadline is not None and time.monotonic() >= deadline:
            return
        if not runner.help_once():
            cf.wait(0.005)


def run_coroutine_in_worker(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on the calling thread's own event loop.

    Each thread keeps one loop (created on first use) so a thousand submitted async runs do not
    create a thousand loops. A thread whose loop is already running (an async task waiting
    for another one) runs the coroutine on a fresh loop in a helper thread instead.
    """
    if _in_running_loop():
        with blocking(), concurrent.futures.ThreadPoolExecutor(1) as helper:
            return helper.submit(asyncio.run, coro).result()
    loop: asyncio.AbstractEventLoop | None = getattr(_worker, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _worker.loop = loop
    return loop.run_until_complete(coro)


class SequentialTaskRunner(TaskRunner):
    """Runs each submitted task run immediately in the calling thread."""

    name = "sequential"

    def submit(self, fn: Callable[[], Any]) -> None:
        fn()


def _process_pool() -> TaskRunner:
    from orion_nb.engine.process_runner import ProcessPoolTaskRunner

    return ProcessPoolTaskRunner()


def _dask() -> TaskRunner:
    from orion_nb.engine.dask_runner import DaskTaskRunner

    return DaskTaskRunner()


_RUNNERS: dict[str, Callable[[], TaskRunner]] = {
    "threads": ThreadPoolTaskRunner,
    "thread": ThreadPoolTaskRunner,
    "sequential": SequentialTaskRunner,
    "processes": _process_pool,
    "process": _process_pool,
    "dask": _dask,
}
#: the names ``task_runner=`` accepts (``%%flow --task-runner``, ``configure``)
RUNNER_NAMES = ("threads", "sequential", "processes", "dask")

_default_runner: ThreadPoolTaskRunner | None = None


def default_runner() -> TaskRunner:
    """The shared thread pool used when a flow names no runner (and outside flows)."""
    global _default_runner
    if _default_runner is None:
        _default_runner = ThreadPoolTaskRunner()
    return _default_runner


def resolve_task_runner(value: Any) -> TaskRunner | None:
    """Accept a runner instance, a runner class, or a name (``"threads"``, ``"sequential"``,
    ``"processes"``, ``"dask"``)."""
    if value is None:
        return None
    if isinstance(value, TaskRunner):
        return value
    if isinstance(value, type) and issubclass(value, TaskRunner):
        return value()
    if isinstance(value, str):
        key = value.lower()
        if key in _RUNNERS:
            return _RUNNERS[key]()
        raise DefinitionError(
            f"Unknown task_runner {value!r}; use one of {', '.join(map(repr, RUNNER_NAMES))} "
            "or a TaskRunner instance such as DaskTaskRunner(address='tcp://...')."
        )
    raise DefinitionError(
        f"task_runner must be a TaskRunner, a TaskRunner class or a name, not {type(value).__name__}."
    )


_configured: tuple[Any, TaskRunner | None] = (None, None)


def configured_runner() -> TaskRunner | None:
    """The runner ``configure(task_runner=...)`` (or ``ORION_NB_TASK_RUNNER``) names for flows
    that name none; ``None`` for the shared thread pool."""
    global _configured
    from orion_nb.settings import get_settings

    value = get_settings().task_runner
    if value is None:
        return None
    seen, runner = _configured
    if seen is not value:
        runner = resolve_task_runner(value)
        _configured = (value, runner)
    return runner
