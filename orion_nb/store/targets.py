"""Writing one :class:`~orion_nb.store.batches.Batch` in one transaction, exactly once.

Two targets share one contract: :meth:`write` commits the batch's rows together with its row
in ``write_batches`` and returns ``True``, or returns ``False`` when that batch id is already
there (a commit whose acknowledgement was lost, a journal replayed twice), or raises. What it
raises is sorted by :func:`classify`:

- ``"data"``: the database refused a *row* (a value out of range, an id that is not a UUID, a
  timestamp that is no date); the writer splits the batch to find it;
- ``"replaced"``: the SQLite file was deleted or replaced under this process;
- ``"outage"``: anything else (server down, disk full, a lock held too long); the batch is
  kept, retried, and past a memory bound journaled.

SQLite is written through the standard ``sqlite3`` driver on one long-lived connection held
by the writer thread, in multi-row statements (see :meth:`SQLiteTarget._insert_many`);
Postgres through SQLAlchemy Core ``executemany`` on the async engine (asyncpg). Statements
are compiled once from the SQLAlchemy tables, so no SQL text is written by hand.
"""

from __future__ import annotations

import itertools
import json
import operator
import os
import sqlite3
import sys
import time
from datetime import UTC, datetime
from typing import Any

from orion_nb.store import database
from orion_nb.store.batches import LEFT_OUT_COLS, ORPHAN_COLS, RESULT_COLS, STATE_COLS, Batch

__all__ = ["PostgresTarget", "RowError", "SQLiteTarget", "classify"]

_UPDATABLE = ("state_type", "state_name", "start_time", "end_time", "run_count", "message")
_TASK_UPDATABLE = (
    *_UPDATABLE,
    "cache_key",
    "cache_expiration",
    "result_ref",
    # where it ran: a "ran" event (task runners' workers) may come after the row's insert
    "host",
    "pid",
    "worker",
    *LEFT_OUT_COLS,
)
# a flow run may take over a row created ahead of time (a deployment's scheduled slot, see
# store/deployments.py): the engine's own record of who runs it and with what wins, while the
# row keeps its deployment id and slot (not in this list)
_FLOW_UPDATABLE = (
    *_UPDATABLE,
    "flow_name",
    "name",
    "parameters",
    "source",
    "host",
    "pid",
    "pid_start",
)
_EDGE_COLS = ("task_run_id", "upstream_task_run_id", "parameter")
_LOG_COLS = ("flow_run_id", "task_run_id", "level", "timestamp", "message")
# SQLite's limit on bound parameters per statement (3.32 and later)
_SQLITE_MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_TIME_COLS = frozenset(
    {"created", "start_time", "end_time", "heartbeat_at", "cache_expiration", "timestamp"}
)
_JSON_COLS = frozenset({"parameters", "tags"})


class RowError(ValueError):
    """A row could not even be turned into statement parameters (a bad timestamp, say)."""


class FileReplaced(Exception):
    """The SQLite file this process writes was deleted or replaced by another file."""


_DATA_ERRORS: tuple[type[BaseException], ...] = (
    RowError,
    UnicodeError,
    OverflowError,
    ValueError,
    TypeError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, the driver error it wraps (``.orig``) and their causes, outermost first."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 8:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
    return seen


def classify(exc: BaseException) -> str:
    """``"data"``, ``"replaced"`` or ``"outage"`` (see the module docstring).

    A Postgres SQLSTATE of class 22 (data exception) or 23 (integrity) means the row; 08
    (connection), 53 (resources: disk full), 57 (operator intervention: shutdown) and 58
    (system) mean the server. Otherwise the driver's exception types decide; anything not
    recognised as the row's fault is an outage, so nothing is dropped by mistake.
    """
    if isinstance(exc, FileReplaced):
        return "replaced"
    chain = _chain(exc)
    for e in chain:
        code = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return "data" if code[:2] in ("22", "23") else "outage"
    # SQLAlchemy's errors can only be raised once it is loaded (the SQLite bulk path runs
    # without it): classifying a sqlite3 error must not import it
    sa_exc = sys.modules.get("sqlalchemy.exc")
    for e in chain:
        if sa_exc is not None and isinstance(e, (sa_exc.DataError, sa_exc.IntegrityError)):
            return "data"
        if (
            sa_exc is not None
            and isinstance(e, sa_exc.StatementError)
            and not isinstance(e, sa_exc.DBAPIError)
        ):
            return "data"  # a type processor refused a value before it reached the database
        if isinstance(e, sqlite3.OperationalError | OSError | ConnectionError | TimeoutError):
            return "outage"
        if isinstance(e, _DATA_ERRORS):
            return "data"
    return "outage"


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


_ts_cache: list[Any] = [-1, ""]


def _sqlite_ts(ts: float) -> str:
    """Epoch seconds as SQLAlchemy's SQLite DATETIME text, formatting the seconds once."""
    sec = int(ts)
    if sec != _ts_cache[0]:
        text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%d %H:%M:%S")
        _ts_cache[0] = sec
        _ts_cache[1] = text
    return "%s.%06d" % (_ts_cache[1], (ts - sec) * 1e6)  # noqa: UP031 - %d truncates the float in one step


def _sqlite_rows(
    rows: list[dict[str, Any]], cols: list[str], ids: dict[str, dict[str, int]] | None = None
) -> list[Any]:
    """Rows as parameter tuples in the form SQLAlchemy's SQLite types store them.

    Timestamps become naive-UTC DATETIME text and JSON columns JSON text, so that reads through
    the ORM types see exactly what a Core insert would have written. ``ids``: the ids of
    left-out transitions by run id and column (task runs), which fill those columns.
    """
    get = operator.itemgetter(*cols)
    times = [i for i, c in enumerate(cols) if c in _TIME_COLS]
    jsons = [i for i, c in enumerate(cols) if c in _JSON_COLS]
    if not times and not jsons and not ids:
        return [get(r) if len(cols) > 1 else (get(r),) for r in rows]
    at = {c: i for i, c in enumerate(cols)} if ids else {}
    id_at = at.get("id", 0)
    out = []
    ts = _sqlite_ts
    cache = _ts_cache
    for r in rows:
        t = list(get(r))
        for i in times:
            v = t[i]
            if v is not None:
                sec = int(v)
                # _sqlite_ts inlined: the seconds' text is almost always the cached one
                t[i] = (
                    "%s.%06d" % (cache[1], (v - sec) * 1e6)  # noqa: UP031 - see _sqlite_ts
                    if sec == cache[0]
                    else ts(v)
                )
        for i in jsons:
            v = t[i]
            t[i] = "[]" if not v and not isinstance(v, dict) else json.dumps(v)
        if ids:
            left_out = ids.get(t[id_at])
            if left_out is not None:
                for c, state_id in left_out.items():
                    t[at[c]] = state_id
        out.append(t)
    return out


# a batch's state rows numbered for SQLite: the rows with ids, the ids of left-out transitions
# by task run and column, the last id taken
_Numbered = tuple[list[tuple[Any, ...]], dict[str, dict[str, int]], int]


def _pg_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (_dt(v) if k in _TIME_COLS and isinstance(v, float) else v) for k, v in row.items()}


def _statements(dialect_name: str) -> dict[str, Any]:
    """The batch keys' statements, compiled from the models (SQLite's ahead of time)."""
    from sqlalchemy import bindparam, update

    from orion_nb.store.models import FlowRun, Log, StateRow, TaskRun, TaskRunInput

    ins: Any
    if dialect_name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as ins
    else:
        from sqlalchemy.dialects.postgresql import insert as ins
    stmts: dict[str, Any] = {}
    table: Any
    cols: tuple[str, ...]
    for key, table, cols in (
        ("flow", FlowRun.__table__, _FLOW_UPDATABLE),
        ("task", TaskRun.__table__, _TASK_UPDATABLE),
    ):
        stmt = ins(table)
        stmts[f"upsert_{key}"] = stmt.on_conflict_do_update(
            index_elements=["id"], set_={c: stmt.excluded[c] for c in cols}
        )
        stmts[f"update_{key}"] = (
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values({c: bindparam(c) for c in ORPHAN_COLS})
        )
        stmts[f"heartbeat_{key}"] = (
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values(heartbeat_at=bindparam("_hb"))
        )
    tasks: Any = TaskRun.__table__
    stmts["update_task_result"] = (
        update(tasks)
        .where(tasks.c.id == bindparam("_id"))
        .values({c: bindparam(c) for c in RESULT_COLS})
    )
    stmts["states"] = StateRow.__table__.insert()  # type: ignore[attr-defined]
    stmts["edges"] = TaskRunInput.__table__.insert()  # type: ignore[attr-defined]
    stmts["logs"] = Log.__table__.insert()  # type: ignore[attr-defined]
    return stmts


# the last id of the ``states`` sequence (AUTOINCREMENT: its sqlite_sequence entry, which
# SQLite creates on the table's first insert, is never below the largest id in the table)
_LAST_STATE_ID_SQL = (
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'states'), 0), "
    "coalesce((SELECT max(id) FROM states), 0))"
)
# move the sequence past ids taken for left-out transitions, after the batch's inserts (which
# create the entry if the table had none; else it is created: sqlite_sequence has no key, so
# no UPSERT)
_MOVE_STATE_SEQUENCE_SQL = "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'states'"
_START_STATE_SEQUENCE_SQL = "INSERT INTO sqlite_sequence (name, seq) VALUES ('states', ?)"


class SQLiteTarget:
    """The bulk path for SQLite: its own driver connection, multi-row statements."""

    def __init__(self, engine: Any, path: str) -> None:
        # the statements were compiled from the models by `python -m orion_nb.store.gen_sql`
        # (``engine`` is not needed for them: the first run imports no SQLAlchemy)
        from orion_nb.store._sqlite_sql import WRITER

        self.path = path
        self.raw_sql: dict[str, tuple[str, list[str]]] = {
            k: (sql, list(cols)) for k, (sql, cols) in WRITER.items()
        }
        self._multi_sql: dict[tuple[str, int], str] = {}
        self.conn = sqlite3.connect(path, timeout=2, check_same_thread=False, isolation_level=None)
        database._sqlite_pragmas(self.conn, None)
        # a lock held by another process is waited out by the writer's retries, in short
        # steps, so that exit and SIGTERM are never stuck behind one long driver call
        self.conn.execute("PRAGMA busy_timeout=2000")
        # the writer touches the same index pages over and over: keep 64 MB of them in memory
        self.conn.execute("PRAGMA cache_size=-65536")
        self.identity = self._identity()

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # pragma: no cover - closing a broken connection
            pass

    def in_transaction(self, fn: Any, *args: Any) -> Any:
        """``fn(self.conn, *args)`` in one ``BEGIN IMMEDIATE`` transaction.

        The lock is waited for as long as set-up waits (30 s), as on the SQLAlchemy path: many
        processes opening one history at once each take it briefly.
        """
        conn = self.conn
        self.set_busy_timeout(30)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            self.set_busy_timeout(2)
        return result

    def set_busy_timeout(self, seconds: float) -> None:
        self.conn.execute(f"PRAGMA busy_timeout={max(0, int(seconds * 1000))}")

    def write(self, batch: Batch) -> bool:
        if self._identity() != self.identity:
            raise FileReplaced(self.path)
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM write_batches WHERE id = ?", (batch.id,)).fetchone():
                conn.execute("ROLLBACK")
                return False
            n = 0
            try:
                numbered = self._number_states(batch)
            except sqlite3.OperationalError:
                raise
            except Exception as exc:
                raise RowError(f"{type(exc).__name__}: {exc}") from exc
            for key, rows in batch.items():
                self._write_part(key, rows, numbered)
                n += len(rows)
            if numbered[1]:
                self._move_state_sequence(numbered[2])
            conn.execute(
                "INSERT INTO write_batches (id, written_at, rows) VALUES (?, ?, ?)",
                (batch.id, _sqlite_ts(time.time()), n),
            )
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back (a full disk does): never let a second
            # error ("cannot rollback - no transaction is active") hide the real one
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        return True

    def _write_part(self, key: str, rows: list[Any], numbered: _Numbered) -> None:
        """Write one statement key's rows (the states and task runs as numbered)."""
        sql, cols = self.raw_sql[key]
        try:
            if key == "states":
                params = numbered[0]
            elif key == "upsert_task" and numbered[1]:
                params = _sqlite_rows(rows, cols, numbered[1])
            else:
                params = self._params(key, rows, cols)
        except Exception as exc:
            raise RowError(f"{type(exc).__name__}: {exc}") from exc
        if key.startswith(("update_", "heartbeat_")):
            self.conn.executemany(sql, params)
        else:
            self._insert_many(key, sql, len(cols), params)

    def _number_states(self, batch: Batch) -> _Numbered:
        """The batch's state rows with ids, the left-out ids by task run, and the last id
        taken.

        Ids continue the ``states`` sequence in the order the transitions happened. A state
        marked as left out (:meth:`Coalescer.leave_out_plain`) gets no row: its id goes into
        its run's row as that row's statement parameters are made (a marked batch always
        holds the run's row: :meth:`Batch.split` unmarks what it parts). The batch itself is
        never changed, so a retry starts from the same rows. The sequence is moved past the
        last id taken (:meth:`_move_state_sequence`), so no later insert, from any process,
        reuses an id left out here.
        """
        states = batch.parts.get("states")
        if not states:
            return [], {}, 0
        conn = self.conn
        (last,) = conn.execute(_LAST_STATE_ID_SQL).fetchone()
        out: list[tuple[Any, ...]] = []
        taken: dict[str, dict[str, int]] = {}
        ts = _sqlite_ts
        for i, r in enumerate(states, last + 1):
            if len(r) == 7:
                out.append((i, r[0], r[1], r[2], r[3], ts(r[4]), r[5], r[6]))
            else:
                ids = taken.get(r[0])
                if ids is None:
                    taken[r[0]] = {r[7]: i}
                else:
                    ids[r[7]] = i
        return out, taken, last + len(states)

    def _move_state_sequence(self, top: int) -> None:
        """Move the ``states`` sequence to ``top``, the last id this batch took."""
        if not self.conn.execute(_MOVE_STATE_SEQUENCE_SQL, (top,)).rowcount:
            self.conn.execute(_START_STATE_SEQUENCE_SQL, (top,))

    @staticmethod
    def _params(key: str, rows: list[Any], cols: list[str]) -> list[Any]:
        if key.startswith("heartbeat_"):
            return [tuple(_sqlite_ts(hb) if c == "_hb" else rid for c in cols) for rid, hb in rows]
        return _sqlite_rows(rows, cols)

    def _insert_many(self, key: str, sql: str, ncols: int, params: list[Any]) -> None:
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
            self.conn.execute(multi, list(itertools.chain.from_iterable(chunk)))


class PostgresTarget:
    """Postgres through SQLAlchemy Core on the async engine (asyncpg)."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import bindparam, insert, select

        from orion_nb.store.models import WriteBatch

        self.engine = engine
        self.stmts = _statements("postgresql")
        self.batch_insert = insert(WriteBatch.__table__)  # type: ignore[arg-type]
        self.batch_exists = select(WriteBatch.id).where(WriteBatch.id == bindparam("bid"))

    async def write(self, batch: Batch) -> bool:
        from sqlalchemy.exc import IntegrityError

        stage = "claim"
        try:
            async with self.engine.begin() as conn:
                # claiming the id first makes a concurrent writer of the same batch (a second
                # process replaying one journal) wait for this transaction, then fail on the key
                await conn.execute(
                    self.batch_insert,
                    {"id": batch.id, "written_at": datetime.now(UTC), "rows": len(batch)},
                )
                stage = "rows"
                for key, rows in batch.items():
                    try:
                        params = self._params(key, rows)
                    except Exception as exc:
                        raise RowError(f"{type(exc).__name__}: {exc}") from exc
                    await conn.execute(self.stmts[key], params)
        except IntegrityError:
            if stage == "claim":
                return False
            raise
        return True

    @staticmethod
    def _params(key: str, rows: list[Any]) -> list[dict[str, Any]]:
        if key == "states":
            # every transition gets its row here (a left-out mark, r[7], is not honoured)
            return [_pg_row(dict(zip(STATE_COLS, r[:7], strict=True))) for r in rows]
        if key.startswith("heartbeat_"):
            return [{"_id": rid, "_hb": _dt(hb)} for rid, hb in rows]
        return [_pg_row(r) for r in rows]
