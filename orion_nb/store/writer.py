"""The one background, batched writer of a process.

The engine never waits for the database on the hot path: it appends small tuples to
:attr:`Writer.queue` (a ``collections.deque``; ``append`` is atomic and takes ~50 ns). A
coroutine on the engine's loop thread drains the queue every ``flush_interval`` seconds,
coalesces what happened to each run within that window (three transitions of a short task
become three ``states`` rows but one ``task_runs`` row), and writes each table with one
``executemany`` in one transaction.

:meth:`Writer.flush` blocks until everything queued before the call is committed; the engine
calls it when a top-level flow run ends so that its history is visible at once, also to other
processes. At interpreter exit pending records are flushed.

The writer has a thread and event loop of its own, so a large batch never delays the engine's
timers. Postgres is written through SQLAlchemy Core ``executemany`` on the async engine
(asyncpg). SQLite is written through the standard ``sqlite3`` driver on one long-lived
connection held by that thread, in multi-row statements: an async driver (aiosqlite) would
cost two thread hops per statement, most of a flow run's budget, and nothing here runs on the
caller's event loop anyway. Statements are compiled once from the SQLAlchemy tables, so no SQL
text is written by hand.

Event tuples (first item is the kind)::

    ("flow",  id, flow_name, name, parameters, tags, parent_task_run_id, source, host, pid, created)
    ("task",  id, flow_run_id, task_name, task_key, dynamic_key, name, tags, created)
    ("state", run_id, kind, state_type, state_name, ts, message, rule, run_count, error)
    ("edge",  task_run_id, upstream_task_run_id, parameter)
    ("log",   flow_run_id, task_run_id, level, ts, message, run_name)
    ("cache", task_run_id, cache_key, expires_at, result_ref)
    ("ran",   task_run_id, host, pid, worker)
    ("flush", concurrent.futures.Future)

(declared, with their field types, in :mod:`orion_nb._events`).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import json
import operator
import os
import socket
import sqlite3
import threading
import time
import warnings
from collections import deque
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from orion_nb._loop import LoopThread
from orion_nb.errors import ConfigurationError, OrionNBWarning
from orion_nb.settings import mask_url
from orion_nb.store import database
from orion_nb.store.models import FlowRun, Log, StateRow, TaskRun, TaskRunInput

__all__ = ["Writer"]

_TERMINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
_HOST, _PID = socket.gethostname(), os.getpid()  # issue 9: where thread task runs ran
_UPDATABLE = (
    "state_type",
    "state_name",
    "start_time",
    "end_time",
    "run_count",
    "message",
)
# issue 9: where a task run executed ("ran" events, host/pid/worker) may come after its insert
_TASK_UPDATABLE = (
    *_UPDATABLE,
    "cache_key",
    "cache_expiration",
    "result_ref",
    "host",
    "pid",
    "worker",
)
# a state for a run whose row was already written as finished updates only these columns
_ORPHAN_COLS = ("state_type", "state_name", "run_count", "end_time", "message")


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


_STATE_COLS = ("run_id", "run_kind", "type", "name", "timestamp", "message", "rule")
_EDGE_COLS = ("task_run_id", "upstream_task_run_id", "parameter")
_LOG_COLS = ("flow_run_id", "task_run_id", "level", "timestamp", "message")
# SQLite's limit on bound parameters per statement (3.32 and later)
_SQLITE_MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_TIME_COLS = frozenset(
    {"created", "start_time", "end_time", "heartbeat_at", "cache_expiration", "timestamp"}
)
_JSON_COLS = frozenset({"parameters", "tags"})


def _sqlite_rows(rows: list[dict[str, Any]], cols: list[str]) -> list[tuple[Any, ...]]:
    """Rows as parameter tuples in the form SQLAlchemy's SQLite types store them.

    Timestamps become naive-UTC DATETIME text and JSON columns JSON text, so that reads through
    the ORM types see exactly what a Core insert would have written.
    """
    get = operator.itemgetter(*cols)
    times = [i for i, c in enumerate(cols) if c in _TIME_COLS]
    jsons = [i for i, c in enumerate(cols) if c in _JSON_COLS]
    if not times and not jsons:
        return [get(r) for r in rows]
    out = []
    ts = _sqlite_ts
    for r in rows:
        t = list(get(r))
        for i in times:
            v = t[i]
            if v is not None:
                t[i] = ts(v)
        for i in jsons:
            v = t[i]
            t[i] = "[]" if not v and not isinstance(v, dict) else json.dumps(v)
        out.append(tuple(t))
    return out


_ts_cache: list[Any] = [-1, ""]


def _sqlite_ts(ts: float) -> str:
    """Epoch seconds as SQLAlchemy's SQLite DATETIME text, formatting the seconds once."""
    sec = int(ts)
    if sec != _ts_cache[0]:
        _ts_cache[0] = sec
        _ts_cache[1] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{_ts_cache[1]}.{int((ts - sec) * 1e6):06d}"


def _pg_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (_dt(v) if k in _TIME_COLS and isinstance(v, float) else v) for k, v in row.items()}


_OPEN_TYPES = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED")


def _mark_crashed_runs(conn: Any) -> None:
    """Runs left unfinished by a process of this host that no longer exists crashed.

    A kernel that is restarted or killed mid-flow cannot record the end of its runs; the next
    process that opens the history says what happened instead of leaving them Running forever.
    Runs on a sync connection (SQLite) or through ``run_sync`` (Postgres).
    """
    me = os.getpid()
    flows = _table(FlowRun)
    stmt = select(flows.c.id, flows.c.pid).where(
        flows.c.host == socket.gethostname(), flows.c.state_type.in_(_OPEN_TYPES)
    )
    dead = [str(rid) for rid, pid in conn.execute(stmt).all() if pid != me and not _alive(pid)]
    if not dead:
        return
    now = _dt(time.time())
    msg = "the process that ran it exited before the run finished (kernel restarted or killed)"
    tasks = _table(TaskRun)
    for kind, table, key in (("flow", flows, flows.c.id), ("task", tasks, tasks.c.flow_run_id)):
        ids = [
            r[0]
            for r in conn.execute(
                select(table.c.id).where(key.in_(dead), table.c.state_type.in_(_OPEN_TYPES))
            ).all()
        ]
        if not ids:
            continue
        conn.execute(
            update(table)
            .where(table.c.id.in_(ids))
            .values(state_type="CRASHED", state_name="Crashed", end_time=now, message=msg)
        )
        conn.execute(
            _table(StateRow).insert(),
            [
                {
                    "run_id": i,
                    "run_kind": kind,
                    "type": "CRASHED",
                    "name": "Crashed",
                    "timestamp": now,
                    "message": msg,
                    "rule": None,
                }
                for i in ids
            ],
        )


def _table(model: Any) -> Any:
    return model.__table__


def _alive(pid: int | None) -> bool:
    if not pid:
        return True  # unknown: leave it alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _open_sqlite(url: str) -> Any:
    """The bulk path's own driver connection, with the same PRAGMAs as the engine's."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = sqlite3.connect(
        u.database or ":memory:", timeout=30, check_same_thread=False, isolation_level=None
    )
    database._sqlite_pragmas(conn, None)
    # the writer touches the same index pages over and over: keep 64 MB of them in memory
    conn.execute("PRAGMA cache_size=-65536")
    return conn


class Writer:
    """Batched writer bound to one database URL.

    Parameters
    ----------
    url
        The database URL (user form; the async driver is chosen by ``store.database``).
    flush_interval
        Seconds between writes while records are arriving.
    loop_thread
        The loop thread to run on (the process's shared one by default).
    """

    def __init__(
        self, url: str, *, flush_interval: float = 0.05, loop_thread: LoopThread | None = None
    ) -> None:
        self.url = url
        self.flush_interval = flush_interval
        self.queue: deque[tuple[Any, ...]] = deque()
        self.engine: Any = None  # sync Engine (SQLite) or AsyncEngine (Postgres)
        self._lt = loop_thread or LoopThread("orion-nb-writer").start()
        self._raw: Any = None  # the SQLite driver connection of the bulk path
        self._raw_sql: dict[str, tuple[str, list[str]]] = {}
        self._multi_sql: dict[tuple[str, int], str] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._sleeping = False
        self._closed = False
        self._flow_rows: dict[str, dict[str, Any]] = {}
        self._task_rows: dict[str, dict[str, Any]] = {}
        self._stmts: dict[str, Any] = {}
        self._pending_batch: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self.last_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"Writer(url={mask_url(self.url)!r}, queued={len(self.queue)})"

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> Writer:
        """Connect, migrate the schema, and start the background flushing coroutine.

        Raises
        ------
        ConfigurationError
            When the database cannot be used; the message masks any password.
        """
        try:
            self._lt.run(self._start())
        except ConfigurationError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"Cannot use the database {mask_url(self.url)!r}: {type(exc).__name__}: "
                f"{mask_url(str(exc)).splitlines()[0] if str(exc) else ''}. Check that the server "
                "is running and the URL is right, or unset ORION_NB_DATABASE_URL to use the "
                "default SQLite file."
            ) from None
        atexit.register(self.close)
        return self

    async def _start(self) -> None:
        self.engine = database.create_engine(self.url)
        try:
            await database.migrate(self.engine)
        except BaseException:
            await self._dispose()
            raise
        self._build_statements()
        if database.is_async(self.engine):
            async with self.engine.begin() as conn:
                await conn.run_sync(_mark_crashed_runs)
        else:
            with self.engine.begin() as conn:
                _mark_crashed_runs(conn)
            self._raw = _open_sqlite(self.url)
        self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    def _build_statements(self) -> None:
        assert self.engine is not None
        dialect = self.engine.dialect.name
        insert: Any
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        table: Any
        cols: tuple[str, ...]
        for key, table, cols in (
            ("flow", FlowRun.__table__, _UPDATABLE),
            ("task", TaskRun.__table__, _TASK_UPDATABLE),
        ):
            stmt = insert(table)
            self._stmts[f"upsert_{key}"] = stmt.on_conflict_do_update(
                index_elements=["id"], set_={c: stmt.excluded[c] for c in cols}
            )
            self._stmts[f"update_{key}"] = (
                update(table)
                .where(table.c.id == bindparam("_id"))
                .values({c: bindparam(c) for c in _ORPHAN_COLS})
            )
        tables: dict[str, Any] = {
            "states": StateRow.__table__,
            "edges": TaskRunInput.__table__,
            "logs": Log.__table__,
        }
        for key, table in tables.items():
            self._stmts[key] = table.insert()
        if dialect == "sqlite":
            sq = self.engine.dialect
            for key in ("upsert_flow", "upsert_task", "update_flow", "update_task"):
                compiled = self._stmts[key].compile(dialect=sq)
                self._raw_sql[key] = (str(compiled), list(compiled.positiontup or []))
            for key, cols in (("states", _STATE_COLS), ("edges", _EDGE_COLS), ("logs", _LOG_COLS)):
                table = tables[key]
                compiled = (
                    table.insert().values({c: bindparam(c) for c in cols}).compile(dialect=sq)
                )
                self._raw_sql[key] = (str(compiled), list(compiled.positiontup or []))

    def put(self, event: tuple[Any, ...]) -> None:
        """Queue one event (thread-safe, non-blocking)."""
        self.queue.append(event)
        if self._sleeping:
            self._sleeping = False
            wake = self._wake
            if wake is not None:
                self._lt.call_soon(wake.set)

    def flush(self, timeout: float | None = 60) -> None:
        """Block until everything queued so far is committed.

        A database failure is reported as an :class:`OrionNBWarning` (the records stay queued
        and are retried); it never turns a user's successful run into an error.
        """
        if self._task is None:
            return
        if self._lt.in_thread:
            raise RuntimeError("Writer.flush() cannot block the loop thread; use aflush().")
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.put(("flush", fut))
        self._lt.call_soon(self._wake_now)
        try:
            fut.result(timeout)
        except concurrent.futures.TimeoutError:
            warnings.warn(
                f"History writes to {mask_url(self.url)} did not finish within {timeout} s; "
                "they stay queued and are retried in the background.",
                OrionNBWarning,
                stacklevel=2,
            )
        except Exception as exc:
            warnings.warn(
                f"Could not write run history to {mask_url(self.url)}: {type(exc).__name__}: "
                f"{mask_url(str(exc)).splitlines()[0] if str(exc) else ''}. Records are kept in "
                "memory and retried; check the database.",
                OrionNBWarning,
                stacklevel=2,
            )

    async def aflush(self) -> None:
        """Await (from any loop) until everything queued so far is committed."""
        if self._task is None:
            return
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.put(("flush", fut))
        self._lt.call_soon(self._wake_now)
        await asyncio.wrap_future(fut)

    def _wake_now(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def close(self) -> None:
        """Flush what is pending and dispose of the engine (idempotent; runs at exit)."""
        if self._closed or self._task is None:
            return
        self._closed = True
        try:
            if self._lt.thread is not None and self._lt.thread.is_alive():
                self._lt.run(self._close(), timeout=30)
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass
        self._lt.stop()
        atexit.unregister(self.close)

    async def _close(self) -> None:
        self._wake_now()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 30)  # type: ignore[arg-type]
            except Exception:
                pass
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        await self._dispose()

    async def _dispose(self) -> None:
        engine, self.engine = self.engine, None
        if engine is None:
            return
        if database.is_async(engine):
            await engine.dispose()
        else:
            engine.dispose()

    # -- the background coroutine -----------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake is not None
        idle = 0
        while True:
            if not self.queue and not self._pending_batch:
                if self._closed:
                    return
                idle += 1
                if idle > 20:
                    # nothing for a second: sleep until a producer wakes us
                    self._sleeping = True
                    if self.queue:
                        self._sleeping = False
                    else:
                        self._wake.clear()
                        if not self.queue:
                            await self._wake.wait()
                        self._sleeping = False
                    idle = 0
                    continue
            else:
                idle = 0
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            await self._drain()

    async def _drain(self) -> None:
        batch = self._pending_batch
        q = self.queue
        n = len(q)
        for _ in range(n):
            batch.append(q.popleft())
        if not batch:
            return
        flushes = [ev[1] for ev in batch if ev[0] == "flush"]
        try:
            await self._write([ev for ev in batch if ev[0] != "flush"])
        except Exception as exc:
            self.last_error = exc
            # keep the records for the next attempt, fail the waiters now
            self._pending_batch = [ev for ev in batch if ev[0] != "flush"]
            for fut in flushes:
                if not fut.done():
                    fut.set_exception(exc)
            await asyncio.sleep(min(1.0, self.flush_interval * 10))
            return
        self._pending_batch = []
        self.last_error = None
        for fut in flushes:
            if not fut.done():
                fut.set_result(None)

    def _write_sqlite(self, batches: tuple[tuple[str, list[Any]], ...]) -> None:
        conn = self._raw
        conn.execute("BEGIN IMMEDIATE")
        try:
            for key, rows in batches:
                if not rows:
                    continue
                sql, cols = self._raw_sql[key]
                if key == "states":
                    ts = _sqlite_ts
                    params: list[Any] = [
                        (r[0], r[1], r[2], r[3], ts(r[4]), r[5], r[6]) for r in rows
                    ]
                else:
                    params = _sqlite_rows(rows, cols)
                if key.startswith("update_"):
                    conn.executemany(sql, params)
                else:
                    self._insert_many(conn, key, sql, len(cols), params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _insert_many(self, conn: Any, key: str, sql: str, ncols: int, params: list[Any]) -> None:
        """Insert with multi-row ``VALUES`` statements instead of ``executemany``.

        The sqlite3 module releases the GIL around every row it steps, and getting it back
        while the engine's thread is busy can take the interpreter's whole switch interval:
        row by row, a batch written during a busy flow crawls. One statement per chunk of
        rows releases it once per chunk. The statement is the SQLAlchemy-compiled single-row
        one with its ``VALUES`` group repeated.
        """
        per = max(1, min(500, _SQLITE_MAX_VARIABLES // ncols))
        for start in range(0, len(params), per):
            chunk = params[start : start + per]
            n = len(chunk)
            multi = self._multi_sql.get((key, n))
            if multi is None:
                head, rest = sql.split(" VALUES ", 1)
                group = rest[: rest.index(")") + 1]
                multi = f"{head} VALUES {', '.join([group] * n)}{rest[len(group) :]}"
                self._multi_sql[(key, n)] = multi
            conn.execute(multi, [v for row in chunk for v in row])

    async def _write(self, events: list[tuple[Any, ...]]) -> None:
        if not events:
            return
        flow_rows = self._flow_rows
        task_rows = self._task_rows
        dirty_flows: dict[str, dict[str, Any]] = {}
        dirty_tasks: dict[str, dict[str, Any]] = {}
        orphan_updates: dict[str, dict[str, dict[str, Any]]] = {"flow": {}, "task": {}}
        states: list[Any] = []
        edges: list[dict[str, Any]] = []
        logs: list[dict[str, Any]] = []
        for ev in events:
            kind = ev[0]
            if kind == "state":
                _, run_id, run_kind, t, state_name, ts, message, rule, run_count, _error = ev
                rows = task_rows if run_kind == "task" else flow_rows
                row = rows.get(run_id)
                if row is None:
                    row = orphan_updates[run_kind].setdefault(run_id, {"_id": run_id})
                    for c in _ORPHAN_COLS:
                        row.setdefault(c, None)
                else:
                    (dirty_tasks if run_kind == "task" else dirty_flows)[run_id] = row
                row["state_type"] = t
                row["state_name"] = state_name
                row["run_count"] = run_count
                if t == "RUNNING" and "start_time" in row and row["start_time"] is None:
                    row["start_time"] = ts
                    if run_kind == "task" and row["host"] is None:  # issue 9: no "ran" event:
                        row["host"], row["pid"] = _HOST, _PID  # it ran in this process
                if t in _TERMINAL:
                    row["end_time"] = ts
                    if "start_time" in row and row["start_time"] is None:
                        # never ran (cached, upstream failed, cancelled while pending)
                        row["start_time"] = ts
                    row["message"] = message
                # a plain tuple in _STATE_COLS order: the bulk path binds it as it is
                states.append((run_id, run_kind, t, state_name, ts, message, rule))
            elif kind == "task":
                _, rid, flow_run_id, task_name, task_key, dyn, name, tags, created = ev
                row = {
                    "id": rid,
                    "flow_run_id": flow_run_id,
                    "task_name": task_name,
                    "task_key": task_key,
                    "dynamic_key": dyn,
                    "name": name,
                    "tags": list(tags),
                    "created": created,
                    "state_type": None,
                    "state_name": None,
                    "start_time": None,
                    "end_time": None,
                    "run_count": 0,
                    "message": None,
                    "cache_key": None,
                    "cache_expiration": None,
                    "result_ref": None,
                    "host": None,
                    "pid": None,
                    "pid_start": None,
                    "worker": None,
                    "heartbeat_at": None,
                }
                task_rows[rid] = row
                dirty_tasks[rid] = row
            elif kind == "flow":
                _, rid, flow_name, name, params, tags, parent, source, host, pid, created = ev
                row = {
                    "id": rid,
                    "flow_name": flow_name,
                    "name": name,
                    "parameters": params,
                    "tags": list(tags),
                    "parent_task_run_id": parent,
                    "deployment_id": None,
                    "source": source,
                    "host": host,
                    "pid": pid,
                    "created": created,
                    "heartbeat_at": None,
                    "pid_start": None,
                    "expected_start_time": None,
                    "output_path": None,
                    "state_type": None,
                    "state_name": None,
                    "start_time": None,
                    "end_time": None,
                    "run_count": 0,
                    "message": None,
                }
                flow_rows[rid] = row
                dirty_flows[rid] = row
            elif kind == "edge":
                edges.append(
                    {"task_run_id": ev[1], "upstream_task_run_id": ev[2], "parameter": ev[3]}
                )
            elif kind == "log":
                logs.append(
                    {
                        "flow_run_id": ev[1],
                        "task_run_id": ev[2],
                        "level": ev[3],
                        "timestamp": ev[4],
                        "message": ev[5],
                    }
                )
            elif kind == "ran":  # issue 9: where the task run executed
                row = task_rows.get(ev[1])
                if row is not None:
                    row["host"], row["pid"], row["worker"] = ev[2], ev[3], ev[4]
                    dirty_tasks[ev[1]] = row
            elif kind == "cache":
                row = task_rows.get(ev[1])
                if row is not None:
                    row["cache_key"] = ev[2]
                    row["cache_expiration"] = ev[3]
                    row["result_ref"] = ev[4]
                    dirty_tasks[ev[1]] = row
        batches: tuple[tuple[str, list[Any]], ...] = (
            ("upsert_flow", list(dirty_flows.values())),
            ("upsert_task", list(dirty_tasks.values())),
            ("states", states),
            ("edges", edges),
            ("logs", logs),
            ("update_flow", list(orphan_updates["flow"].values())),
            ("update_task", list(orphan_updates["task"].values())),
        )
        if self._raw is not None:
            self._write_sqlite(batches)
        else:
            assert self.engine is not None
            async with self.engine.begin() as conn:
                for key, batch_rows in batches:
                    if batch_rows:
                        if key == "states":
                            batch_rows = [
                                dict(zip(_STATE_COLS, r, strict=True)) for r in batch_rows
                            ]
                        await conn.execute(self._stmts[key], [_pg_row(r) for r in batch_rows])
        # finished runs need no further upserts: forget them
        for rows, dirty in ((flow_rows, dirty_flows), (task_rows, dirty_tasks)):
            for rid, row in dirty.items():
                if row["state_type"] in _TERMINAL:
                    rows.pop(rid, None)
