"""The kernel side of a remote runner for one flow run: batches, reports, cancellations.

A :class:`RemoteTaskRunner` (``ProcessPoolTaskRunner``, ``DaskTaskRunner``) is a reusable
configuration; each flow run that uses it opens a :class:`RemoteSession`, which its subflows
share and which is closed when the flow run ends. A session starts its pool, client or
temporary cluster at the first submission (a flow run that submits nothing costs nothing),
and owns the threads that keep orchestration cheap per task:

- a **submitter** thread that sends queued attempts in batches, one per task function and
  flow run (a ``Client.map`` for Dask, chunks of pool calls for a process pool), and sends
  cancellations in batches;
- the **orchestration pool** (:class:`_OrchestrationPool`), a few threads that run the jobs
  of :class:`~orion_nb.engine.remote.RemoteRun` (outcomes, retries, hooks), never one thread
  per task run.

What a session sends is prepared here: the attempt's arguments pickled (naming the parameter
that cannot be), the task's function and the flow run's context pickled once per flow run.
Subclasses provide ``_connect``, ``_send``, ``_cancel``, ``_disconnect``, the start-report
channel (``_notify``) and ``classify`` (what a failed remote future means).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from orion_nb.engine.remote import Attempt
from orion_nb.engine.runners import TaskRunner, ThreadPoolTaskRunner
from orion_nb.engine.task_engine import TaskRunEngine
from orion_nb.engine.worker import (
    Call,
    ParametersNotSent,
    RemoteCall,
    blob,
    digest,
    function_blob,
)
from orion_nb.errors import CancelledRun, DefinitionError, ParameterError, describe

__all__ = ["RemoteSession", "RemoteTaskRunner", "main_hidden"]

#: flow parameters larger than this (pickled) are not sent to workers
_MAX_PARAMETERS = 1 << 20
#: seconds the submitter waits after a wake-up, so that a burst goes out as one batch
_GATHER = 0.002
#: seconds an idle orchestration worker waits for the next job before it exits
_LINGER = 0.05
_HOST = socket.gethostname()


class RemoteTaskRunner(TaskRunner):
    """Base of runners whose workers are other processes (configuration, reusable).

    Each flow run that uses it opens its own :class:`RemoteSession` (a process pool, a Dask
    client) and closes it when it ends; subflows share their parent's.
    """

    remote = True
    queues = True  # the kernel's steps may run inline, the user's function never does
    #: "process-pool" or "Dask": how messages name the workers
    worker_kind = "remote"

    def open(self) -> RemoteSession:  # pragma: no cover - abstract
        raise NotImplementedError


class RemoteSession(TaskRunner):
    """A started remote runner, used by one flow run (and its subflows)."""

    remote = True
    queues = True  # the kernel's steps may run inline, the user's function never does
    worker_kind = "remote"

    def __init__(self, config: RemoteTaskRunner) -> None:
        self.config = config
        self.name = config.name
        self.pool = _OrchestrationPool(4)  # orchestration jobs: never a thread per task run
        self._attempts: dict[str, Attempt] = {}  # by key: sent, not cancelled, not finished
        self.inflight: set[Attempt] = set()  # sent and not finished (cancelled ones too)
        self._sendq: deque[Attempt] = deque()
        self._cancelq: deque[Attempt] = deque()
        self._wake = threading.Event()
        self._closing = False
        self._submitter: threading.Thread | None = None
        self._fns: dict[int, tuple[Any, str, bytes]] = {}
        self._flows: dict[str, tuple[str, bytes]] = {}
        self._connected = False
        self._connect_error: Exception | None = None
        self._connect_lock = threading.Lock()

    def __repr__(self) -> str:
        return repr(self.config)

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> RemoteSession:
        """Ready for the flow run; the pool or cluster connection waits for the first task."""
        self._submitter = threading.Thread(
            target=self._submit_loop, name=f"orion-nb-{self.name}-submit", daemon=True
        )
        self._submitter.start()
        return self

    def connect(self) -> None:
        """Start the pool or connect to the cluster, once (a flow run that submits no task
        never pays for it).

        Raises
        ------
        ConfigurationError
            When the cluster cannot be reached or started (again on every later call).
        """
        if self._connected:
            return
        with self._connect_lock:
            if self._connect_error is not None:
                raise self._connect_error
            if not self._connected:
                try:
                    self._connect()
                except Exception as exc:
                    self._connect_error = exc
                    raise
                self._connected = True

    def close(self) -> None:
        """End of the flow run: cancel what is left, stop the workers (or disconnect)."""
        if self._closing:
            return
        self._closing = True
        for attempt in self.inflight.copy():
            self.cancel(attempt)
        self._wake.set()
        if self._submitter is not None:
            self._submitter.join(30)
        try:
            if self._connected:
                self._disconnect()
        finally:
            self.pool.shutdown()

    # -- what subclasses provide ------------------------------------------------------------
    def _connect(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _disconnect(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _send(self, call: RemoteCall, attempts: list[Attempt]) -> None:
        """Submit ``call(attempt.call)`` for each attempt; set ``attempt.handle`` and arrange
        for :meth:`finished` to be called when it is done."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _cancel(self, attempts: list[Attempt]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _notify(self) -> Any:
        """The picklable callable a worker uses to report that an attempt started."""
        return None

    def classify(self, attempt: Attempt, error: BaseException) -> tuple[str, BaseException]:
        """Why a remote future failed without an outcome: ``("lost", CrashedRun)`` when its
        worker died, else ``("failed", error)`` with an error that says what to do."""
        return "failed", error

    # -- the kernel side of one attempt -------------------------------------------------------
    def prepare(self, eng: TaskRunEngine) -> Call:
        """The attempt's :data:`~orion_nb.engine.worker.Call` (pickles its arguments)."""
        task, run = eng.task, eng.run
        return (
            f"{_key_name(task.name)}-{run.id}-{run.run_count}",
            run.id,
            run.name,
            run.run_count,
            tuple(run.tags),
            eng.task_ctx.log_prints,
            task.timeout_seconds,
            task.is_async,
            task.name,
            self._args_blob(task, eng.args, eng.kwargs),
        )

    def _args_blob(self, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        try:
            return blob((args, kwargs))
        except Exception as exc:
            try:
                params = task.signature.bind(args, kwargs)
            except Exception:
                params = {}
            for name, value in params.items():
                try:
                    blob(value)
                except Exception as err:
                    t = type(value)
                    raise ParameterError(
                        f"Task {task.name!r}: parameter {name!r} (a {t.__module__}."
                        f"{t.__qualname__}) cannot be pickled to send it to a "
                        f"{self.worker_kind} worker ({describe(err)}). Create it inside the "
                        "task, pass what it is made from (a path, a URL, plain data), or run "
                        "this task on the thread runner."
                    ) from err
            raise ParameterError(
                f"Task {task.name!r}: its arguments cannot be pickled to send them to a "
                f"{self.worker_kind} worker ({describe(exc)})."
            ) from exc

    def _call_for(self, eng: TaskRunEngine) -> RemoteCall:
        task = eng.task
        fn = task.fn
        hit = self._fns.get(id(fn))
        if hit is None or hit[0] is not fn:
            try:
                data = function_blob(fn)
            except Exception as exc:
                raise DefinitionError(
                    f"Task {task.name!r}: its function cannot be pickled to send it to a "
                    f"{self.worker_kind} worker ({describe(exc)}). A function that uses a "
                    "lock, an open file or a connection must create it inside its body."
                ) from exc
            hit = (fn, digest(data), data)
            self._fns[id(fn)] = hit
        flow_key, flow_data = self._flow_blob(eng.run.flow_ctx)
        return RemoteCall(hit[1], hit[2], flow_key, flow_data, self._notify())

    def _flow_blob(self, flow_ctx: Any) -> tuple[str, bytes]:
        fid = flow_ctx.run_id if flow_ctx is not None else ""
        hit = self._flows.get(fid)
        if hit is not None:
            return hit
        if flow_ctx is None:
            info: Any = ("", "", "", {}, (), None, False, _HOST, os.getpid())
        else:
            params: Any = flow_ctx.parameters
            try:
                if len(blob(params)) > _MAX_PARAMETERS:
                    params = ParametersNotSent("they are larger than 1 MB pickled")
            except Exception as exc:
                params = ParametersNotSent(f"they cannot be pickled: {describe(exc)}")
            info = (
                flow_ctx.run_id,
                flow_ctx.name,
                getattr(flow_ctx.flow, "name", ""),
                params,
                tuple(sorted(flow_ctx.tags)),
                flow_ctx.parent_task_run_id,
                flow_ctx.log_prints,
                _HOST,
                os.getpid(),
            )
        data = blob(info)
        hit = (digest(data), data)
        self._flows[fid] = hit
        return hit

    def loads(self, data: bytes) -> Any:
        import pickle

        return pickle.loads(data)

    def send(self, attempt: Attempt) -> None:
        """Queue ``attempt`` for the submitter's next batch."""
        self._sendq.append(attempt)
        if not self._wake.is_set():  # one wake-up per burst, not one per attempt
            self._wake.set()

    def cancel(self, attempt: Attempt) -> None:
        """Stop ``attempt`` on the cluster (batched with other cancellations)."""
        attempt.cancelled = True
        self._attempts.pop(attempt.key, None)
        if attempt.handle is not None:
            self._cancelq.append(attempt)
            self._wake.set()

    def started(self, key: str, ts: float, host: str, pid: int, worker: str) -> None:
        """A worker reports that attempt ``key`` started (any thread).

        Recorded at once in the reporting thread, unless the task has ``on_running`` hooks:
        user code runs on the orchestration pool, never in a runner's own thread.
        """
        attempt = self._attempts.get(key)
        if attempt is None:
            return
        remote = attempt.remote
        job = remote._job(remote.on_started, attempt, ts, host, pid, worker)
        if remote.eng.task.on_running_hooks:
            self.pool.submit(job)
        else:
            job()

    def finished(self, attempt: Attempt, data: bytes | None, error: BaseException | None) -> None:
        """The remote future of ``attempt`` is done (any thread): hand it to the pool."""
        if not attempt.cancelled:
            self._attempts.pop(attempt.key, None)
        self.inflight.discard(attempt)
        attempt.handle = None  # let the executor release the result
        self.pool.submit(attempt.remote._job(attempt.remote.on_outcome, attempt, data, error))

    def _dispatch(self, batch: list[Attempt]) -> None:
        """Submit ``batch``, one :meth:`_send` per task function and flow run."""
        if batch and not self._closing:
            try:
                self.connect()
            except Exception as exc:  # every attempt fails with the reason, none is lost
                for attempt in batch:
                    self.finished(attempt, None, exc)
                return
        groups: dict[tuple[str, str], tuple[RemoteCall, list[Attempt]]] = {}
        for attempt in batch:
            if attempt.cancelled:
                continue
            if self._closing:
                self.finished(attempt, None, CancelledRun("the flow run ended"))
                continue
            try:
                call = self._call_for(attempt.remote.eng)
            except DefinitionError as exc:
                self.finished(attempt, None, exc)
                continue
            key = (call.fn_key, call.flow_key)
            if key not in groups:
                groups[key] = (call, [])
            groups[key][1].append(attempt)
            self._attempts[attempt.key] = attempt
            self.inflight.add(attempt)
        for call, attempts in groups.values():
            try:
                self._send(call, attempts)
            except Exception as exc:
                for attempt in attempts:
                    if attempt.handle is None:
                        self.finished(attempt, None, exc)

    def _submit_loop(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(_GATHER)  # let a burst (a .map()) finish queueing: fewer, larger batches
            self._wake.clear()
            cancels = [self._cancelq.popleft() for _ in range(len(self._cancelq))]
            if cancels:
                try:
                    self._cancel([a for a in cancels if a.handle is not None])
                except Exception:  # pragma: no cover - the cluster went away: nothing to stop
                    pass
            self._dispatch([self._sendq.popleft() for _ in range(len(self._sendq))])
            if self._closing and not self._sendq and not self._cancelq:
                return


class _OrchestrationPool(ThreadPoolTaskRunner):
    """The thread pool that runs a session's orchestration jobs (starts, outcomes, retries).

    A :class:`ThreadPoolTaskRunner` (waiting workers help, blocked ones are compensated)
    whose idle workers wait a moment for the next job instead of exiting: outcomes arrive
    one at a time, and starting a worker for each would cost more than the job itself.
    """

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers)
        self._idle = threading.Condition()
        self._waiting = 0

    def submit(self, fn: Callable[[], Any]) -> None:
        self._queue.append(fn)
        with self._idle:
            if self._waiting:
                self._idle.notify()
                return
        if self._drainers < self.max_workers + self._blocked:
            self._spawn()

    def _linger(self) -> bool:
        with self._idle:
            if self._queue:
                return True
            self._waiting += 1
            self._idle.wait(_LINGER)
            self._waiting -= 1
        return bool(self._queue)


_main_lock = threading.Lock()


@contextmanager
def main_hidden() -> Iterator[None]:
    """Start worker processes without them re-running the main script.

    ``spawn`` and ``forkserver`` children import the parent's ``__main__`` (by path or module
    name), so a script that runs flows at import time would run them again in every worker
    unless guarded by ``if __name__ == "__main__":``. Workers get notebook and script
    functions by value and never need ``__main__``: while processes start, the two
    attributes that tell ``multiprocessing`` where it is are set aside.
    """
    main = sys.modules.get("__main__")
    if main is None or not ("__file__" in vars(main) or getattr(main, "__spec__", None)):
        yield  # a notebook kernel: nothing to hide
        return
    with _main_lock:
        saved: dict[str, Any] = {
            k: vars(main)[k] for k in ("__file__", "__spec__") if k in vars(main)
        }
        try:
            vars(main).pop("__file__", None)
            if "__spec__" in saved:
                main.__spec__ = None
            yield
        finally:
            vars(main).update(saved)


def _key_name(name: str) -> str:
    """A task name as the readable prefix of a cluster task key (Dask groups by it)."""
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in name)[:60]
    return cleaned or "task"
