"""The event contract between the engine, the store's writer and live views.

The engine describes everything that happens to a run as an *event*: a plain tuple whose first
item names its kind. The same tuple goes to the store (one batched writer per process) and to
the live view of the flow run, so neither can see something the other does not. Tuples, not
objects, because the hot path builds about six of them per task run: a factory call costs
~60 ns, a ``NamedTuple`` construction ~380 ns. The ``NamedTuple`` classes below are the
documentation and the type checker's view of each kind; consumers read fields through the
index constants, never through bare numbers.

Kinds and their fields (in tuple order, after the kind)::

    flow   id, flow_name, name, parameters (JSON-ready), tags, parent_task_run_id, source,
           host, pid, created (epoch s)
    task   id, flow_run_id, task_name, task_key, dynamic_key, name, tags, created (epoch s)
    state  run_id, run_kind ("task" | "flow"), state_type, state_name, ts (epoch s), message,
           rule, run_count, error (formatted exception text for failed states, else None)
    edge   task_run_id, upstream_task_run_id, parameter
    log    flow_run_id, task_run_id, level, ts (epoch s), message, run_name
    cache  task_run_id, cache_key, expires_at (epoch s | None), result_ref
    ran    task_run_id, host, pid, worker: where an attempt of a task run executes, sent by a
           process-pool or Dask attempt (the worker's host and pid, and its name, e.g.
           ``tcp://10.0.0.5:40123`` or ``process 4242``) just before that attempt's RUNNING
           state, so the latest attempt's place wins. A task run that reaches RUNNING with
           no ``ran`` event ran in the recording process (thread and sequential runners):
           the writer fills in its own host and pid, so those runs cost no extra event
    flush  a ``concurrent.futures.Future`` set when everything queued before it is committed
           (writer only)

An event never holds a result or an exception object: a queued event must not keep a result
alive, and the store and the view get text.
"""

from __future__ import annotations

import traceback
from typing import Any, NamedTuple

__all__ = [
    "CacheStored",
    "Edge",
    "FlowCreated",
    "LogRecord",
    "RanAt",
    "StateChanged",
    "TaskCreated",
    "cache_event",
    "edge_event",
    "error_text",
    "flow_event",
    "log_event",
    "ran_event",
    "state_event",
    "task_event",
]


class FlowCreated(NamedTuple):
    kind: str
    id: str
    flow_name: str
    name: str
    parameters: Any
    tags: Any
    parent_task_run_id: str | None
    source: str | None
    host: str | None
    pid: int | None
    created: float


class TaskCreated(NamedTuple):
    kind: str
    id: str
    flow_run_id: str | None
    task_name: str
    task_key: str
    dynamic_key: str
    name: str
    tags: Any
    created: float


class StateChanged(NamedTuple):
    kind: str
    run_id: str
    run_kind: str
    state_type: str
    state_name: str
    ts: float
    message: str | None
    rule: str | None
    run_count: int
    error: str | None


class Edge(NamedTuple):
    kind: str
    task_run_id: str
    upstream_task_run_id: str
    parameter: str


class LogRecord(NamedTuple):
    kind: str
    flow_run_id: str | None
    task_run_id: str | None
    level: str
    ts: float
    message: str
    run_name: str


class CacheStored(NamedTuple):
    kind: str
    task_run_id: str
    cache_key: str | None
    expires_at: float | None
    result_ref: str | None


class RanAt(NamedTuple):
    kind: str
    task_run_id: str
    host: str | None
    pid: int | None
    worker: str | None


# -- factories: what producers call on the hot path (plain tuples in the order above) --------


def flow_event(
    id: str,
    flow_name: str,
    name: str,
    parameters: Any,
    tags: Any,
    parent_task_run_id: str | None,
    source: str | None,
    host: str | None,
    pid: int | None,
    created: float,
) -> tuple[Any, ...]:
    return (
        "flow",
        id,
        flow_name,
        name,
        parameters,
        tags,
        parent_task_run_id,
        source,
        host,
        pid,
        created,
    )


def task_event(
    id: str,
    flow_run_id: str | None,
    task_name: str,
    task_key: str,
    dynamic_key: str,
    name: str,
    tags: Any,
    created: float,
) -> tuple[Any, ...]:
    return ("task", id, flow_run_id, task_name, task_key, dynamic_key, name, tags, created)


def state_event(
    run_id: str,
    run_kind: str,
    state_type: str,
    state_name: str,
    ts: float,
    message: str | None,
    rule: str | None,
    run_count: int,
    error: str | None = None,
) -> tuple[Any, ...]:
    return ("state", run_id, run_kind, state_type, state_name, ts, message, rule, run_count, error)


def edge_event(task_run_id: str, upstream_task_run_id: str, parameter: str) -> tuple[Any, ...]:
    return ("edge", task_run_id, upstream_task_run_id, parameter)


def log_event(
    flow_run_id: str | None,
    task_run_id: str | None,
    level: str,
    ts: float,
    message: str,
    run_name: str = "",
) -> tuple[Any, ...]:
    return ("log", flow_run_id, task_run_id, level, ts, message, run_name)


def cache_event(
    task_run_id: str, cache_key: str | None, expires_at: float | None, result_ref: str | None
) -> tuple[Any, ...]:
    return ("cache", task_run_id, cache_key, expires_at, result_ref)


def ran_event(
    task_run_id: str, host: str | None, pid: int | None, worker: str | None
) -> tuple[Any, ...]:
    return ("ran", task_run_id, host, pid, worker)


def error_text(exc: object, limit: int = 4000) -> str | None:
    """``Type: message`` and the user's traceback, trimmed to ``limit`` characters, for views.

    Called only for failed states, never on the success path.
    """
    if exc is None:
        return None
    if not isinstance(exc, BaseException):
        return str(exc)[:limit]
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(text) > limit:
        text = "…\n" + text[-limit:]
    return text
