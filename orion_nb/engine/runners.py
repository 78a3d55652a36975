"""Task runners: where ``.submit()`` and ``.map()`` execute task runs.

The runner only *executes*; states, retries and records stay with the engine in the calling
process. :class:`ThreadPoolTaskRunner` is the default; :class:`SequentialTaskRunner` runs each
submitted task at once in the calling thread, which makes debugging and tracebacks simple.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from orion_nb.errors import DefinitionError

__all__ = ["SequentialTaskRunner", "TaskRunner", "ThreadPoolTaskRunner", "resolve_task_runner"]


class TaskRunner:
    """Base class: ``submit(fn)`` runs ``fn()`` somewhere and returns nothing."""

    name = "base"

    def submit(self, fn: Callable[[], Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def shutdown(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ThreadPoolTaskRunner(TaskRunner):
    """Runs task runs on a pool of threads (created lazily).

    Submitted runs go to one queue that at most ``max_workers`` worker jobs drain. A burst of
    10,000 ``.map()`` runs therefore costs a queue append each, not a thread hand-off each,
    while up to ``max_workers`` runs still execute at the same time (blocking I/O overlaps).
    """

    name = "threads"

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._queue: deque[Callable[[], Any]] = deque()
        self._drainers = 0

    def _get_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        self.max_workers, thread_name_prefix="orion-nb-task"
                    )
                pool = self._pool
        return pool

    def submit(self, fn: Callable[[], Any]) -> None:
        # the engine hands over a callable that already runs in the submitter's context
        self._queue.append(fn)
        if self._drainers < self.max_workers:
            with self._lock:
                spawn = self._drainers < self.max_workers
                if spawn:
                    self._drainers += 1
            if spawn:
                self._get_pool().submit(self._drain)

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

    def _drain(self) -> None:
        _worker.runner = self
        queue = self._queue
        while True:
            try:
                fn = queue.popleft()
            except IndexError:
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


_worker = threading.local()


def current_worker_runner() -> ThreadPoolTaskRunner | None:
    """The thread pool runner whose worker is the calling thread, if any."""
    return getattr(_worker, "runner", None)


def help_until_done(cf: concurrent.futures.Future[Any], timeout: float | None = None) -> None:
    """On a worker thread, run queued task runs until ``cf`` is done (or ``timeout``).

    The awaited run may be queued behind this very worker; elsewhere this returns at once
    and the caller simply waits.
    """
    runner = current_worker_runner()
    if runner is None or cf.done():
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    while not cf.done():
        if deadline is not None and time.monotonic() >= deadline:
            return
        if not runner.help_once():
            try:
                cf.result(0.005)
            except concurrent.futures.TimeoutError:
                pass


class SequentialTaskRunner(TaskRunner):
    """Runs each submitted task run immediately in the calling thread."""

    name = "sequential"

    def submit(self, fn: Callable[[], Any]) -> None:
        fn()


_RUNNERS: dict[str, type[TaskRunner]] = {
    "threads": ThreadPoolTaskRunner,
    "thread": ThreadPoolTaskRunner,
    "sequential": SequentialTaskRunner,
}

_default_runner: ThreadPoolTaskRunner | None = None


def default_runner() -> TaskRunner:
    """The shared thread pool used when a flow names no runner (and outside flows)."""
    global _default_runner
    if _default_runner is None:
        _default_runner = ThreadPoolTaskRunner()
    return _default_runner


def resolve_task_runner(value: Any) -> TaskRunner | None:
    """Accept a runner instance, a runner class, or a name (``"threads"``, ``"sequential"``)."""
    if value is None:
        return None
    if isinstance(value, TaskRunner):
        return value
    if isinstance(value, type) and issubclass(value, TaskRunner):
        return value()
    if isinstance(value, str):
        key = value.lower()
        if key == "dask":
            raise DefinitionError(
                "task_runner='dask' needs the Dask runner, which is not available in this version; "
                "use 'threads' or 'sequential'."
            )
        if key in _RUNNERS:
            return _RUNNERS[key]()
        raise DefinitionError(
            f"Unknown task_runner {value!r}; use 'threads', 'sequential' or a TaskRunner instance."
        )
    raise DefinitionError(
        f"task_runner must be a TaskRunner, a TaskRunner class or a name, not {type(value).__name__}."
    )
