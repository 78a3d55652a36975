"""Crash recovery: finding runs whose process is gone and recording that they crashed.

The facts come from the history (open runs with host, pid, ``pid_start`` and heartbeat) and
from this host's process table; the decision is
:func:`orion_nb.orchestration.recovery_rules.detect_crashed_runs` (pure, tested without I/O);
this module only gathers and writes. It runs when a writer opens the store and from
``orion-nb runs reconcile``, always in one transaction, and only ever changes runs that are
still unfinished in that transaction: a finished run is never rewritten.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select, update

from orion_nb.orchestration.recovery_rules import (
    RULE,
    UNKNOWN_START,
    Crash,
    OpenRun,
    detect_crashed_runs,
)
from orion_nb.store.models import FlowRun, StateRow, TaskRun

__all__ = ["find_crashed", "mark_crashed", "process_start_of", "reconcile"]

OPEN_TYPES = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED")


def process_start_of(pid: int) -> str | None:
    """The start identity of the process with ``pid`` (``None`` if there is none).

    The process's creation time, which differs for every process that ever held the pid;
    :data:`UNKNOWN_START` when it is alive but cannot be inspected.
    """
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return UNKNOWN_START
        return UNKNOWN_START
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"{proc.create_time():.2f}"
    except psutil.NoSuchProcess:
        return None
    except (psutil.AccessDenied, OSError):
        return UNKNOWN_START


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


def _open(table: Any) -> Any:
    return or_(table.c.state_type.in_(OPEN_TYPES), table.c.state_type.is_(None))


def find_crashed(conn: Any, grace: float, now: float | None = None) -> list[Crash]:
    """Open flow runs and standalone task runs whose process is gone (sync connection)."""
    now = time.time() if now is None else now
    runs: list[OpenRun] = []
    for kind, model in (("flow", FlowRun), ("task", TaskRun)):
        t = model.__table__  # type: ignore[attr-defined]
        stmt = select(
            t.c.id,
            t.c.state_type,
            t.c.host,
            t.c.pid,
            t.c.pid_start,
            t.c.heartbeat_at,
            t.c.start_time,
            t.c.created,
        ).where(_open(t))
        if kind == "task":
            stmt = stmt.where(t.c.flow_run_id.is_(None))
        for rid, st, host, pid, pid_start, hb, start, created in conn.execute(stmt).all():
            last = _ts(hb) or _ts(start) or _ts(created)
            runs.append(OpenRun(str(rid), kind, st, host, pid, pid_start, last))
    if not runs:
        return []
    host = socket.gethostname()
    pids = {r.pid for r in runs if r.host == host and r.pid is not None}
    me = os.getpid()
    return detect_crashed_runs(
        runs,
        host=host,
        pid=me,
        pid_start=process_start_of(me),
        processes={p: process_start_of(p) for p in pids},
        now=now,
        grace=grace,
    )


def mark_crashed(conn: Any, crashes: list[Crash], now: float | None = None) -> list[str]:
    """Record ``crashes`` (and the open task runs of crashed flow runs); return the run ids.

    Each update is guarded by "still unfinished", in the same transaction, so a run that
    finished meanwhile keeps its real end.
    """
    if not crashes:
        return []
    ts = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    flows: Any = FlowRun.__table__
    tasks: Any = TaskRun.__table__
    by_id = {c.run_id: c for c in crashes}
    flow_ids = [c.run_id for c in crashes if c.kind == "flow"]
    # task runs inside a crashed flow run crashed with it
    if flow_ids:
        for (tid,) in conn.execute(
            select(tasks.c.id).where(tasks.c.flow_run_id.in_(flow_ids), _open(tasks))
        ).all():
            tid = str(tid)
            if tid not in by_id:
                by_id[tid] = Crash(tid, "task", f"{RULE}: its flow run crashed.")
    marked = []
    for kind, table in (("flow", flows), ("task", tasks)):
        ids = [c.run_id for c in by_id.values() if c.kind == kind]
        if not ids:
            continue
        still_open = [
            str(r[0])
            for r in conn.execute(select(table.c.id).where(table.c.id.in_(ids), _open(table)))
        ]
        by_message: dict[str, list[str]] = {}
        for rid in still_open:
            by_message.setdefault(by_id[rid].message, []).append(rid)
        for msg, group in by_message.items():
            for start in range(0, len(group), 500):
                conn.execute(
                    update(table)
                    .where(table.c.id.in_(group[start : start + 500]), _open(table))
                    .values(state_type="CRASHED", state_name="Crashed", end_time=ts, message=msg)
                )
        if still_open:
            conn.execute(
                StateRow.__table__.insert(),  # type: ignore[attr-defined]
                [
                    {
                        "run_id": rid,
                        "run_kind": kind,
                        "type": "CRASHED",
                        "name": "Crashed",
                        "timestamp": ts,
                        "message": by_id[rid].message,
                        "rule": RULE,
                    }
                    for rid in still_open
                ],
            )
        marked.extend(still_open)
    return marked


def reconcile(conn: Any, grace: float) -> list[str]:
    """Find and mark crashed runs in one go (sync connection); the ids marked."""
    return mark_crashed(conn, find_crashed(conn, grace))
