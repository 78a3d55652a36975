"""What runs on a process-pool or Dask worker: one attempt of a task's function, nothing more.

The kernel orchestrates (:mod:`orion_nb.engine.remote`); a worker only executes. It receives
three things, all as cloudpickle bytes or plain values, so the user's functions and classes
defined in a notebook (``__main__``) travel by value:

- the task's function (pickled once per flow run and cached here by its digest);
- the flow run's context: ids, names, tags, parameters (once per flow run);
- the attempt: a :data:`Call` with the task run's id, name, attempt number, tags,
  ``log_prints``, ``timeout_seconds`` and the pickled arguments.

:func:`run_attempt` sets up a run context that looks like the kernel's (``get_run_logger``,
``orion_nb.runtime``, ``log_prints``, ``get_dask_client`` and nested task calls work), says
that the attempt started (:data:`Notify`), calls the function under its own deadline (SIGALRM
on a process pool's main thread, an asynchronous exception on a Dask worker thread; an
``async def`` function runs to completion on the thread's event loop), and returns the
:data:`Outcome` as bytes:

``(kind, payload, traceback text, started, ended, host, pid, worker, records, events,
stdout, stderr)`` where ``kind`` is ``"returned"`` (payload: the value), ``"raised"`` (the
exception), ``"timeout"`` (the :class:`~orion_nb.errors.RunTimeoutError`) or ``"crashed"`` (a
description of a ``BaseException`` such as ``SystemExit``). What the attempt printed,
logged (``records``, see :mod:`orion_nb.engine.run_logging`) and recorded (``events`` of task
runs it called itself) comes back with it; the kernel replays all of it under the right run
ids, with the worker's timestamps.

A value or exception that cannot be pickled is replaced here by an error that says so
(the worker has the traceback; the kernel could only report a failure to unpickle).
When a Dask cluster runs tasks in the kernel's own process (``processes=False``), output and
nested runs go straight to the kernel's streams and writer; only log records are captured,
so that they reach the live view.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from orion_nb.engine import recorder, run_logging
from orion_nb.engine.context import FlowRunContext, TaskRunContext, _flow_ctx, _task_ctx
from orion_nb.engine.runners import SequentialTaskRunner, run_coroutine_in_worker
from orion_nb.engine.runs import TaskRun
from orion_nb.engine.timeouts import deadline, raise_in_thread
from orion_nb.errors import (
    CancelledRun,
    ParameterError,
    RemoteTaskError,
    RunTimeoutError,
    describe,
)

__all__ = [
    "Call",
    "FlowInfo",
    "Notify",
    "Outcome",
    "ParametersNotSent",
    "RemoteCall",
    "RemoteTraceback",
    "blob",
    "digest",
    "function_blob",
    "interrupt",
    "run_attempt",
]

#: (key, task_run_id, run_name, run_count, tags, log_prints, timeout_seconds, is_async,
#: task_name, pickled (args, kwargs))
Call = tuple[str, str, str, int, tuple[str, ...], bool, float | None, bool, str, bytes]

#: (flow_run_id, name, flow_name, parameters, tags, parent_task_run_id, log_prints,
#: kernel host, kernel pid)
FlowInfo = tuple[str, str, str, Any, tuple[str, ...], str | None, bool, str, int]

#: ``notify(key, started, host, pid, worker)``: tells the kernel an attempt started
Notify = Callable[[str, float, str, int, str], None]

Outcome = tuple[str, Any, str | None, float, float, str, int, str, list[Any], list[Any], str, str]

_HOST = socket.gethostname()
_MAX_CACHED = 256


def blob(obj: Any) -> bytes:
    """``obj`` as pickle bytes; what only exists here (``__main__``, local) goes by value.

    The standard pickler (in C) takes plain data several times faster than cloudpickle (a
    Python subclass); anything it would send by a reference the other side cannot resolve
    (a name in ``__main__``) or cannot pickle at all goes through cloudpickle, by value.
    """
    import pickle

    try:
        data = pickle.dumps(obj, protocol=5)
    except Exception:
        pass
    else:
        if b"__main__" not in data:
            return data
    import cloudpickle  # with the first remote run, not with orion_nb

    return cloudpickle.dumps(obj, protocol=5)


def _loads(data: bytes) -> Any:
    import pickle

    return pickle.loads(data)


def function_blob(fn: Any) -> bytes:
    """A task's function for workers, with where its source is (cloudpickle drops it).

    cloudpickle names the code of a function sent by value ``<dynamic-code>``, so a worker's
    traceback would say neither file nor line. The file name and the source lines travel
    along, and :func:`_function` puts them back.
    """
    import inspect

    code = getattr(fn, "__code__", None)
    filename = getattr(code, "co_filename", None)
    try:
        lines, start = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        lines, start = [], 0
    import cloudpickle

    return cloudpickle.dumps((fn, filename, start, lines), protocol=5)


def _function(data: bytes) -> Any:
    import linecache

    fn, filename, start, lines = _loads(data)
    code = getattr(fn, "__code__", None)
    if code is not None and filename and code.co_filename != filename:
        try:
            fn.__code__ = _renamed(code, filename)
        except (AttributeError, TypeError, ValueError):  # pragma: no cover - exotic callables
            return fn
        if lines and not os.path.exists(filename):  # a notebook cell: its source came along
            text = ["\n"] * max(0, start - 1) + list(lines)
            linecache.cache[filename] = (sum(map(len, text)), None, text, filename)
    return fn


def _renamed(code: Any, filename: str) -> Any:
    consts = tuple(
        _renamed(c, filename) if hasattr(c, "co_filename") else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


class RemoteTraceback(Exception):
    """The traceback of an exception raised on a worker, as text (set as its ``__cause__``).

    Tracebacks cannot be pickled; as ``concurrent.futures`` does, the worker formats it and
    the kernel chains it, so notebooks, logs and views show where the worker failed.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb.rstrip()}\n"""'


class ParametersNotSent(dict):  # type: ignore[type-arg]
    """A flow run's parameters on a worker, when they were too large or could not be pickled.

    Reading them raises an error that says why and what to do, instead of an empty dict.
    """

    def __init__(self, why: str) -> None:
        super().__init__()
        self.why = why

    def _refuse(self, *args: Any) -> Any:
        raise ParameterError(
            f"The flow run's parameters were not sent to the workers ({self.why}); pass what "
            "the task needs as its own arguments."
        )

    __getitem__ = keys = items = values = get = __iter__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        return (ParametersNotSent, (self.why,))


class RemoteCall:
    """The callable a runner sends to its workers: the function and flow context of a batch.

    Pickling it pickles two byte strings (by reference to this class); the worker unpickles
    each once per process (:func:`_cached`), however many attempts use it.
    """

    __slots__ = ("flow_blob", "flow_key", "fn_blob", "fn_key", "notify")

    def __init__(
        self,
        fn_key: str,
        fn_blob: bytes,
        flow_key: str,
        flow_blob: bytes,
        notify: Notify | None = None,
    ) -> None:
        self.fn_key = fn_key
        self.fn_blob = fn_blob
        self.flow_key = flow_key
        self.flow_blob = flow_blob
        self.notify = notify

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.fn_key, self.fn_blob, self.flow_key, self.flow_blob, self.notify)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.fn_key, self.fn_blob, self.flow_key, self.flow_blob, self.notify = state

    def __call__(self, call: Call) -> bytes:
        fn = _cached(self.fn_key, self.fn_blob, _function)
        flow = _cached(self.flow_key, self.flow_blob)
        return run_attempt(fn, flow, call, self.notify or _notify_default)


_cache: OrderedDict[str, Any] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: str, data: bytes, load: Callable[[bytes], Any] | None = None) -> Any:
    with _cache_lock:
        hit = _cache.get(key, _cache)
        if hit is not _cache:
            _cache.move_to_end(key)
            return hit
    value = (load or _loads)(data)
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > _MAX_CACHED:
            _cache.popitem(last=False)
    return value


# -- the worker process: captured streams and events --------------------------------------------


class _Capture:
    """What one attempt printed, logged and recorded."""

    __slots__ = ("events", "records", "stderr", "stdout", "worker")

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.records: list[Any] = []
        self.events: list[Any] = []


_local = threading.local()


class _Routed(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` of a worker: a capturing thread's writes are kept for
    the kernel; every other thread writes to the original stream."""

    def __init__(self, original: Any, attr: str) -> None:
        self._original = original
        self._attr = attr

    def write(self, s: str) -> int:
        cap = getattr(_local, "capture", None)
        if cap is None:
            return int(self._original.write(s) or 0)
        getattr(cap, self._attr).append(s)
        return len(s)

    def flush(self) -> None:
        if getattr(_local, "capture", None) is None:
            self._original.flush()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def _route_event(ev: tuple[Any, ...]) -> None:
    cap = getattr(_local, "capture", None)
    if cap is None:
        return  # outside an attempt a worker has nothing to record and nowhere to write it
    if ev[0] == "state" and ev[2] == "task" and ev[3] == "RUNNING" and ev[8] == 1:
        # a task run this attempt called runs here: say so, or the kernel's writer would
        # take it for one of its own
        cap.events.append(("ran", ev[1], _HOST, os.getpid(), cap.worker))
    cap.events.append(ev)


_installed: bool | None = None  # True: a separate process; False: the kernel's own process
_install_lock = threading.Lock()


def _install(flow: FlowInfo) -> bool:
    """Prepare this process once; True when it is a separate worker process."""
    global _installed
    if _installed is not None:
        return _installed
    with _install_lock:
        if _installed is None:
            run_logging._base_logger()  # its console handler keeps the real stderr
            separate = not (flow[8] == os.getpid() and flow[7] == _HOST)
            if separate:
                sys.stdout = _Routed(sys.stdout, "stdout")
                sys.stderr = _Routed(sys.stderr, "stderr")
                recorder.route(_route_event)
            _installed = separate
    return bool(_installed)


def _notify_default(key: str, started: float, host: str, pid: int, worker: str) -> None:
    pass


# -- one attempt -------------------------------------------------------------------------------

_running: dict[str, int] = {}  # attempt key -> the thread running it
_running_lock = threading.Lock()


def interrupt(keys: list[str]) -> int:
    """Stop the attempts ``keys`` running in this worker process; returns how many.

    The kernel calls it (``Client.run``) after cancelling their futures: Dask forgets a
    cancelled task but cannot stop its thread. :class:`~orion_nb.errors.CancelledRun` is
    raised in the thread at its next bytecode. The lock is held while raising and the
    attempt leaves the registry under it, so the exception always lands inside that attempt.
    """
    n = 0
    with _running_lock:
        for key in keys:
            ident = _running.get(key)
            if ident is not None:
                n += raise_in_thread(ident, CancelledRun)
    return n


class _FlowStub:
    """What a worker knows of the flow definition (its name)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _TaskStub:
    """What a worker knows of the task definition: its name and function."""

    __slots__ = ("_signature", "fn", "name", "tags")

    def __init__(self, name: str, fn: Any, tags: frozenset[str]) -> None:
        self.name = name
        self.fn = fn
        self.tags = tags
        self._signature: Any = None

    @property
    def signature(self) -> Any:
        if self._signature is None:
            from orion_nb.engine.signature import Signature

            self._signature = Signature(self.fn, "task", self.name)
        return self._signature


def _contexts(fn: Any, flow: FlowInfo, call: Call) -> tuple[FlowRunContext, TaskRunContext]:
    flow_run_id, name, flow_name, parameters, ftags, parent, flow_log_prints, _h, _p = flow
    flow_ctx = FlowRunContext(
        flow=_FlowStub(flow_name),  # type: ignore[arg-type]
        run_id=flow_run_id,
        name=name,
        parameters=parameters,
        parent=None,
        task_runner=SequentialTaskRunner(),  # tasks it submits run here, in this attempt
        view=None,
        log_prints=flow_log_prints,
        is_async=False,
        parent_task_run_id=parent,
        tags=frozenset(ftags),
    )
    _key, run_id, run_name, run_count, tags, log_prints, _t, _a, task_name, _args = call
    task = _TaskStub(task_name, fn, frozenset(tags))
    run = TaskRun(run_id, run_name, task, flow_ctx, None)  # type: ignore[arg-type]
    run.run_count = run_count
    args, kwargs = _args_of(call)
    return flow_ctx, TaskRunContext(task, run, flow_ctx, args, kwargs, log_prints)  # type: ignore[arg-type]


def _args_of(call: Call) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args, kwargs = _loads(call[9])
    return args, kwargs


def _worker_name() -> str:
    # a Dask worker has imported distributed; a process-pool worker must not pay for it
    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            return str(get_worker().address)
        except ValueError:
            pass
    return f"process {os.getpid()}"


def run_attempt(fn: Any, flow: FlowInfo, call: Call, notify: Notify) -> bytes:
    """Run one attempt of ``fn`` for the kernel; returns the pickled :data:`Outcome`."""
    separate = _install(flow)
    key, _rid, _name, _count, _tags, log_prints, timeout, is_async = call[:8]
    if log_prints or flow[6]:
        run_logging.install_print_hook()
    host, pid, worker = _HOST, os.getpid(), _worker_name()
    cap = _Capture(worker)
    flow_ctx, task_ctx = _contexts(fn, flow, call)
    args, kwargs = task_ctx._args, task_ctx._kwargs
    if separate:
        _local.capture = cap
    run_logging.capture.records = cap.records
    tokens = (_flow_ctx.set(flow_ctx), _task_ctx.set(task_ctx))
    with _running_lock:
        _running[key] = threading.get_ident()
    started = time.time()
    notify(key, started, host, pid, worker)
    kind: str
    payload: Any
    tb: str | None = None
    fired = _Fired()
    try:
        if is_async:
            payload = run_coroutine_in_worker(_awaited(fn(*args, **kwargs), timeout, fired))
        else:
            with deadline(timeout) as d:
                fired.deadline = d
                payload = fn(*args, **kwargs)
        kind = "returned"
    except RunTimeoutError as exc:
        kind = "timeout" if fired.fired else "raised"  # else: the user's code raised it
        payload, tb = exc, _format(exc)
    except Exception as exc:
        kind, payload, tb = "raised", exc, _format(exc)
    except BaseException as exc:  # SystemExit and the like: the attempt crashed
        kind, payload, tb = "crashed", describe(exc), _format(exc)
    finally:
        ended = time.time()
        with _running_lock:
            _running.pop(key, None)
        _task_ctx.reset(tokens[1])
        _flow_ctx.reset(tokens[0])
        run_logging.capture.records = None
        _local.capture = None
    del args, kwargs, task_ctx
    outcome = [
        kind,
        payload,
        tb,
        started,
        ended,
        host,
        pid,
        worker,
        cap.records,
        cap.events,
        "".join(cap.stdout),
        "".join(cap.stderr),
    ]
    return _dumps(outcome, call)


class _Fired:
    """Whether this attempt's own deadline fired (a RunTimeoutError may be the user's)."""

    __slots__ = ("deadline", "expired")

    def __init__(self) -> None:
        self.deadline: Any = None
        self.expired = False

    @property
    def fired(self) -> bool:
        return self.expired or bool(self.deadline is not None and self.deadline.fired)


async def _awaited(coro: Any, timeout: float | None, fired: _Fired) -> Any:
    import asyncio

    if timeout is None:
        return await coro
    timer = asyncio.timeout(timeout)
    try:
        async with timer:
            return await coro
    except TimeoutError as exc:
        if not timer.expired():
            raise  # the user's own TimeoutError
        fired.expired = True
        raise RunTimeoutError(f"Run exceeded timeout_seconds={timeout:g}.") from exc


def _format(exc: BaseException) -> str:
    """The traceback as text, starting at the user's code (this module's frames dropped)."""
    tb = exc.__traceback__
    while tb is not None and "/orion_nb/engine/" in tb.tb_frame.f_code.co_filename.replace(
        "\\", "/"
    ):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def _dumps(outcome: list[Any], call: Call) -> bytes:
    """The outcome as bytes; a payload that cannot travel becomes an error that says why."""
    try:
        return blob(tuple(outcome))
    except Exception as exc:
        kind, payload = outcome[0], outcome[1]
        what = type(payload).__name__
        if kind == "returned":
            err: BaseException = RemoteTaskError(
                f"Task run {call[2]!r} returned a {what}, which cannot be pickled to send it "
                f"back to the kernel ({describe(exc)}); return plain data (or write the "
                "object to storage inside the task and return where it is)."
            )
            outcome[2] = _format(exc)
        else:
            err = RemoteTaskError(
                f"{describe(payload)} (the {what} could not be pickled to send it back to "
                f"the kernel: {describe(exc)})"
            )
        outcome[0] = "raised"
        outcome[1] = err
        try:
            return blob(tuple(outcome))
        except Exception:  # the captured events or records cannot travel either
            outcome[8], outcome[9] = [], []
            return blob(tuple(outcome))
