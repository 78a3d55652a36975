"""Columnar reads: a history query answered as an Arrow table through ADBC.

``sqlite3`` and asyncpg hand out one Python object per cell; for a million task runs that is
sixteen million objects before pandas sees a single column (about 6 s here). The ADBC drivers
(``adbc-driver-sqlite``, ``adbc-driver-postgresql``, with ``pyarrow``; ``pip install
'orion_nb[arrow]'``) fill Arrow columns in C, and :func:`orion_nb.store.frames.from_arrow`
turns them into the same frame without touching a cell from Python.

Everything here is optional: :func:`fetch` returns None when the drivers are not installed or
the database cannot be read this way, and the caller reads rows as before.

- **SQLite**: a read-only connection per query, like the row path. The driver infers each
  column's type from the first batch it reads; with the default 1,024-row batches a column
  that starts with NULLs and holds text later fails to read, so the whole result is read as one
  batch (the types are inferred from every row).
- **Postgres**: ``libpq`` reads the result with ``COPY`` in binary. Ids (``uuid``) and JSON
  (``jsonb``) are cast to text in the query, as the frames hold them. Connecting costs about
  30 ms (the driver loads the server's type catalogue), so one connection per database URL is
  kept for the process, in autocommit mode (a read never holds a snapshot open between
  queries) and used by one thread at a time. URL options that libpq would read differently
  from asyncpg keep that database on the row path.

Statements are compiled by SQLAlchemy with their values inlined (``literal_binds``), exactly
as the SQLite row path already does; ADBC's own parameter binding would need a cast per value
type on Postgres.
"""

from __future__ import annotations

import atexit
import logging
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Text, Uuid, cast

from orion_nb.store.models import JSONType

__all__ = ["available", "close_all", "fetch"]

log = logging.getLogger("orion_nb.store")

# libpq reads these URL options as asyncpg does; any other option keeps the row path
_LIBPQ_OPTIONS = frozenset(
    {"sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "connect_timeout"}
)
# read every row in one batch: the SQLite driver infers column types from the first batch
_ONE_BATCH = str(2**30)

_available: dict[str, bool] = {}
_pg_lock = threading.Lock()
_pg_connections: dict[str, Any] = {}
_atexit_registered = False


_MODULES = {
    "pyarrow": ("pyarrow",),
    "sqlite": ("pyarrow", "adbc_driver_sqlite.dbapi"),
    "postgresql": ("pyarrow", "adbc_driver_postgresql.dbapi"),
}


def available(what: str) -> bool:
    """Whether ``what`` can be used: "pyarrow", or the ADBC reads of "sqlite" / "postgresql"."""
    ok = _available.get(what)
    if ok is None:
        import importlib

        try:
            for module in _MODULES.get(what, ("-",)):
                importlib.import_module(module)
            ok = True
        except ImportError:
            ok = False
        _available[what] = ok
    return ok


def fetch(engine: Any, stmt: Any) -> Any:
    """The result of ``stmt`` as a ``pyarrow.Table``, or None where it cannot be read so.

    Errors of the drivers or of Arrow (a type they cannot hold, a connection refused) return
    None too: the caller reads rows, which either work or raise the error users know.
    """
    dialect = engine.dialect.name
    if not available(dialect):
        return None
    import adbc_driver_manager
    import pyarrow as pa

    try:
        if dialect == "sqlite":
            return _fetch_sqlite(engine, stmt)
        return _fetch_postgres(engine, stmt)
    except (adbc_driver_manager.Error, pa.ArrowException, OSError) as exc:
        log.debug("columnar read not possible (%s: %s); reading rows", type(exc).__name__, exc)
        return None


def _sql(engine: Any, stmt: Any) -> str:
    return str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


def _fetch_sqlite(engine: Any, stmt: Any) -> Any:
    import adbc_driver_sqlite
    import adbc_driver_sqlite.dbapi

    path = Path(engine.url.database or "").expanduser().resolve()
    uri = f"{path.as_uri()}?mode=ro"
    with adbc_driver_sqlite.dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("PRAGMA busy_timeout = 30000")  # as the row path's timeout=30
        cur.adbc_statement.set_options(
            **{adbc_driver_sqlite.StatementOptions.BATCH_ROWS.value: _ONE_BATCH}
        )
        cur.execute(_sql(engine, stmt))
        return cur.fetch_arrow_table()


def _libpq_uri(url: Any) -> str | None:
    """The libpq form of a SQLAlchemy Postgres URL, or None when its options differ."""
    query = dict(url.query)
    if "ssl" in query and "sslmode" not in query:
        query["sslmode"] = query.pop("ssl")  # asyncpg's name for the same modes
    if not set(query) <= _LIBPQ_OPTIONS:
        return None
    plain = url.set(drivername="postgresql", query=query)
    return str(plain.render_as_string(hide_password=False))


def _text_ids_and_json(stmt: Any) -> Any:
    """``stmt`` with uuid and JSON columns selected as text (Arrow has no type for either
    that pandas would turn into the frames' strings and objects)."""
    cols = []
    changed = False
    for col in stmt.selected_columns:
        if isinstance(col.type, (Uuid, JSONType)):
            cols.append(cast(col, Text).label(col.key))
            changed = True
        else:
            cols.append(col)
    return stmt.with_only_columns(*cols, maintain_column_froms=True) if changed else stmt


def _fetch_postgres(engine: Any, stmt: Any) -> Any:
    uri = _libpq_uri(engine.url)
    if uri is None:
        return None
    sql = _sql(engine, _text_ids_and_json(stmt))
    with _pg_lock:
        kept = _pg_connections.pop(uri, None)
        if kept is not None:
            try:
                table = _read(kept, sql)
            except Exception as exc:
                # a kept connection may have died (server restart, database dropped); if the
                # query itself is at fault, the fresh connection below fails the same way
                log.debug("kept columnar connection failed (%s); reconnecting", exc)
                _close(kept)
            else:
                _pg_connections[uri] = kept
                return table
        conn = _pg_connect(uri)
        try:
            table = _read(conn, sql)
        except BaseException:
            _close(conn)
            raise
        _pg_connections[uri] = conn
        return table


def _read(conn: Any, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def _pg_connect(uri: str) -> Any:
    import adbc_driver_postgresql.dbapi

    global _atexit_registered
    if not _atexit_registered:
        atexit.register(close_all)
        _atexit_registered = True
    return adbc_driver_postgresql.dbapi.connect(uri, autocommit=True)


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception as exc:  # closing a broken connection may fail: it is gone either way
        log.debug("closing a columnar connection failed: %s", exc)


def close_all() -> None:
    """Close the kept Postgres connections (at exit, and in tests)."""
    with _pg_lock:
        while _pg_connections:
            _close(_pg_connections.popitem()[1])
