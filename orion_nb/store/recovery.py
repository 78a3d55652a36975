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
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

from orion_nb.orchestration.recovery_rules import (
    RULE,
    UNKNOWN_START,
    Crash,
    OpenRun,
    detect_crashed_runs,
)

__all__ = ["find_crashed", "mark_crashed", "process_start_of", "reconcile", "stored_epoch"]

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


def stored_epoch(value: Any) -> float | None:
    """A stored timestamp (SQLite text, or a datetime from Postgres) as epoch seconds (UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


_SELECTED = (
    "id",
    "state_type",
    "host",
    "pid",
    "pid_start",
    "heartbeat_at",
    "start_time",
    "created",
)
STATE_KEYS = ("run_id", "run_kind", "type", "name", "timestamp", "message", "rule")


def _open(table: Any) -> Any:
    from sqlalchemy import or_

    return or_(table.c.state_type.in_(OPEN_TYPES), table.c.state_type.is_(None))


class _Alchemy:
    """The history through a SQLAlchemy connection (Postgres, the CLI, an SQLite engine)."""

    def __init__(self, conn: Any) -> None:
        from orion_nb.store.models import FlowRun, TaskRun

        self.conn = conn
        self.tables: dict[str, Any] = {"flow": FlowRun.__table__, "task": TaskRun.__table__}

    def open_runs(self, kind: str) -> list[Any]:
        from sqlalchemy import select

        t = self.tables[kind]
        stmt = select(*(t.c[c] for c in _SELECTED)).where(_open(t))
        if kind == "task":
            stmt = stmt.where(t.c.flow_run_id.is_(None))
        return list(self.conn.execute(stmt).all())

    def open_tasks_of(self, flow_ids: list[str]) -> list[str]:
        from sqlalchemy import select

        t = self.tables["task"]
        stmt = select(t.c.id).where(t.c.flow_run_id.in_(flow_ids), _open(t))
        return [str(r[0]) for r in self.conn.execute(stmt).all()]

    def still_open(self, kind: str, ids: list[str]) -> list[str]:
        from sqlalchemy import select

        t = self.tables[kind]
        stmt = select(t.c.id).where(t.c.id.in_(ids), _open(t))
        return [str(r[0]) for r in self.conn.execute(stmt)]

    def crash(self, kind: str, ids: list[str], message: str, ts: datetime) -> None:
        from sqlalchemy import update

        t = self.tables[kind]
        for start in range(0, len(ids), 500):
            self.conn.execute(
                update(t)
                .where(t.c.id.in_(ids[start : start + 500]), _open(t))
                .values(state_type="CRASHED", state_name="Crashed", end_time=ts, message=message)
            )

    def insert_states(self, rows: list[dict[str, Any]]) -> None:
        from orion_nb.store.models import StateRow

        self.conn.execute(StateRow.__table__.insert(), rows)  # type: ignore[attr-defined]


class _Sqlite:
    """The history through a plain ``sqlite3`` connection, with SQL compiled ahead of time.

    The writer's first run uses it: no SQLAlchemy import before that run's history is
    committed. Statements take one run id each (``executemany``), which selects and changes
    exactly what :class:`_Alchemy`'s ``IN`` lists do.
    """

    def __init__(self, conn: Any) -> None:
        from orion_nb.store._sqlite_sql import RECOVERY

        self.conn = conn
        self.sql = RECOVERY

    def _args(self, key: str, **values: Any) -> tuple[str, list[Any]]:
        sql, names, consts = self.sql[key]
        return sql, [values[n] if n in values else consts[n] for n in names]

    def open_runs(self, kind: str) -> list[Any]:
        sql, args = self._args(f"open_{kind}")
        return self.conn.execute(sql, args).fetchall()

    def _each(self, key: str, ids: list[str]) -> list[str]:
        found: list[str] = []
        for rid in ids:
            sql, args = self._args(key, _id=rid)
            found.extend(str(r[0]) for r in self.conn.execute(sql, args))
        return found

    def open_tasks_of(self, flow_ids: list[str]) -> list[str]:
        return self._each("open_tasks_of_flow", flow_ids)

    def still_open(self, kind: str, ids: list[str]) -> list[str]:
        return self._each(f"still_open_{kind}", ids)

    def crash(self, kind: str, ids: list[str], message: str, ts: datetime) -> None:
        end = _sqlite_dt(ts)
        sql = self.sql[f"crash_{kind}"][0]
        self.conn.executemany(
            sql, [self._args(f"crash_{kind}", _id=rid, _end=end, _msg=message)[1] for rid in ids]
        )

    def insert_states(self, rows: list[dict[str, Any]]) -> None:
        sql = self.sql["insert_state"][0]
        params = []
        for row in rows:
            values = dict(row, timestamp=_sqlite_dt(row["timestamp"]))
            params.append(self._args("insert_state", **values)[1])
        self.conn.executemany(sql, params)


def _sqlite_dt(value: datetime) -> str:
    """A UTC datetime as SQLAlchemy's SQLite ``DATETIME`` stores it."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _db(conn: Any) -> Any:
    return _Sqlite(conn) if isinstance(conn, sqlite3.Connection) else _Alchemy(conn)


def find_crashed(conn: Any, grace: float, now: float | None = None) -> list[Crash]:
    """Open flow runs and standalone task runs whose process is gone.

    ``conn`` is a sync SQLAlchemy connection or a ``sqlite3`` connection.
    """
    now = time.time() if now is None else now
    db = _db(conn)
    runs: list[OpenRun] = []
    for kind in ("flow", "task"):
        for rid, st, host, pid, pid_start, hb, start, created in db.open_runs(kind):
            last = stored_epoch(hb) or stored_epoch(start) or stored_epoch(created)
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
    finished meanwhile keeps its real end. ``conn`` as for :func:`find_crashed`.
    """
    if not crashes:
        return []
    db = _db(conn)
    ts = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    by_id = {c.run_id: c for c in crashes}
    flow_ids = [c.run_id for c in crashes if c.kind == "flow"]
    # task runs inside a crashed flow run crashed with it
    if flow_ids:
        for tid in db.open_tasks_of(flow_ids):
            if tid not in by_id:
                by_id[tid] = Crash(tid, "task", f"{RULE}: its flow run crashed.")
    marked = []
    for kind in ("flow", "task"):
        ids = [c.run_id for c in by_id.values() if c.kind == kind]
        if not ids:
            continue
        still_open = db.still_open(kind, ids)
        by_message: dict[str, list[str]] = {}
        for rid in still_open:
            by_message.setdefault(by_id[rid].message, []).append(rid)
        for msg, group in by_message.items():
            db.crash(kind, group, msg, ts)
        if still_open:
            db.insert_states(
                [
                    dict(
                        zip(
                            STATE_KEYS,
                            (rid, kind, "CRASHED", "Crashed", ts, by_id[rid].message, RULE),
                            strict=True,
                        )
                    )
                    for rid in still_open
                ]
            )
        marked.extend(still_open)
    return marked


def reconcile(conn: Any, grace: float) -> list[str]:
    """Find and mark crashed runs in one go (as :func:`find_crashed`); the ids marked."""
    return mark_crashed(conn, find_crashed(conn, grace))
