"""Engines for SQLite (the standard sqlite3 driver) and Postgres (asyncpg), and schema set-up.

A database is created and migrated to the newest schema on first use. When the schema is
already current, Alembic is not even imported: one query of ``alembic_version`` decides. A
plain SQLite file is set up by :func:`open_sqlite` through ``sqlite3`` alone, with the schema
Alembic produces compiled ahead of time (:mod:`orion_nb.store.gen_sql`), so the first run
imports no SQLAlchemy; only an older schema goes through Alembic (:func:`migrate`).

Set-up is careful with what it finds:

- it initialises only an empty database or its own (an ``alembic_version`` with a revision
  it knows); another application's database is refused, with nothing touched;
- a database written by a newer orion_nb is refused with an error that says so;
- set-up and migrations run in one transaction, under a lock (a transaction-scoped advisory
  lock on Postgres, ``BEGIN IMMEDIATE`` on SQLite), so eight processes starting at once on a
  fresh database create the schema once and a failed migration leaves nothing half-done.
  (Python's ``sqlite3`` module would otherwise commit before every DDL statement: the engine
  takes over transaction control so that SQLite's transactional DDL actually applies.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from orion_nb.errors import ConfigurationError
from orion_nb.settings import mask_url

__all__ = [
    "HEAD_REVISION",
    "KNOWN_REVISIONS",
    "create_engine",
    "driver_url",
    "is_async",
    "migrate",
    "open_sqlite",
    "schema_revision",
    "sqlite_path",
]

HEAD_REVISION = "0003"
KNOWN_REVISIONS = ("0001", "0002", "0003")
# the advisory lock key orion_nb's schema set-up takes on Postgres ("orionnb" in ASCII)
_PG_LOCK_KEY = 0x6F72696F6E6E62
# the tables orion_nb creates (a database holding other tables is not ours)
OUR_TABLES = frozenset(
    {
        "flow_runs",
        "task_runs",
        "task_run_inputs",
        "states",
        "logs",
        "deployments",
        "write_batches",
        "alembic_version",
    }
)
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def driver_url(url: str) -> str:
    """Translate a user-facing URL to the driver orion_nb uses.

    ``sqlite:///x.db`` (any SQLite driver) becomes ``sqlite:///x.db`` on the standard driver;
    ``postgresql://`` and ``postgres://`` become ``postgresql+asyncpg://``.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(
            f"Database URL {mask_url(url)!r} cannot be parsed; use e.g. 'sqlite:///runs.db' "
            "or 'postgresql://user@host:5432/dbname'."
        ) from exc
    backend = u.get_backend_name()
    if backend == "sqlite":
        u = u.set(drivername="sqlite")
    elif backend in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+asyncpg")
    else:
        raise ConfigurationError(
            f"Database URL {mask_url(url)!r} uses {backend!r}; orion_nb supports SQLite "
            "('sqlite:///path.db') and PostgreSQL ('postgresql://user@host/db')."
        )
    return u.render_as_string(hide_password=False)


def _prepare_sqlite_path(url: str, database: str | None) -> None:
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot create the directory for the SQLite database {mask_url(url)!r}: {exc}. "
                "Set ORION_NB_HOME or configure(database_url=...) to a writable place."
            ) from exc


def create_engine(url: str) -> Any:
    """The engine for ``url``.

    SQLite gets a plain (sync) engine on the standard ``sqlite3`` driver: the writer and the
    history reads use the driver from their own threads, so nothing needs asyncio, and the
    first run does not import SQLAlchemy's asyncio layer. Postgres gets an async engine on
    asyncpg, used from the writer's event loop.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import make_url

    durl = driver_url(url)
    u = make_url(durl)
    if u.get_backend_name() == "sqlite":
        from sqlalchemy import create_engine as create_sync_engine

        _prepare_sqlite_path(url, u.database)
        if u.database:
            precheck_sqlite(u.database)
        engine = create_sync_engine(u, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    from sqlalchemy.ext.asyncio import create_async_engine

    # a server that does not answer must not hang a run or the exit: fail fast, retry later
    return create_async_engine(
        durl, pool_pre_ping=True, connect_args={"timeout": 10, "command_timeout": 60}
    )


def _sqlite_connect(dbapi_conn: Any, record: Any) -> None:
    # take transaction control from the sqlite3 module (which commits before DDL) ...
    dbapi_conn.isolation_level = None
    _sqlite_pragmas(dbapi_conn, record)


def _sqlite_begin(conn: Any) -> None:
    # ... and begin every transaction as a writer: schema set-up and recovery are writes, and
    # taking the lock up front serialises them instead of failing half-way with "locked"
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_async(engine: Any) -> bool:
    return hasattr(engine, "sync_engine")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # Several kernels and scheduled scripts share one file: wait for a lock instead of failing
    # (first, so that even switching to WAL waits for a busy database).
    cur.execute("PRAGMA busy_timeout=30000")
    # WAL lets readers in other processes (history queries, a second kernel) read while the
    # writer writes, and makes commits cheap.
    cur.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL is durable against application crashes and skips an fsync per commit.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def schema_revision(sync_conn: Any) -> str | None:
    """The revision in ``alembic_version`` (``None`` when there is no such table or row)."""
    from sqlalchemy import inspect, text

    if not inspect(sync_conn).has_table("alembic_version"):
        return None
    row = sync_conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def _where(sync_conn: Any) -> str:
    u = sync_conn.engine.url
    if u.get_backend_name() == "sqlite":
        return f"The SQLite file {u.database}"
    return f"The database {mask_url(u.render_as_string(hide_password=True))!r}"


def check_schema(sync_conn: Any) -> str:
    """What set-up would do: ``"current"``, ``"create"`` or ``"upgrade"``; refuses the rest.

    Raises
    ------
    ConfigurationError
        For a database of another application or of a newer orion_nb.
    """
    from sqlalchemy import inspect

    tables = set(inspect(sync_conn).get_table_names())
    revision = schema_revision(sync_conn) if "alembic_version" in tables else None
    return judge(tables, revision, _where(sync_conn))


def judge(tables: set[str], revision: str | None, where: str) -> str:
    """The set-up decision from what a database holds (see :func:`check_schema`)."""
    if revision == HEAD_REVISION:
        return "current"
    if revision in KNOWN_REVISIONS:
        return "upgrade"
    if revision is not None and revision.isdigit() and revision > HEAD_REVISION:
        raise ConfigurationError(
            f"{where} was written by a newer orion_nb (schema revision {revision}; "
            f"this orion_nb knows revisions up to {HEAD_REVISION}). Upgrade orion_nb "
            "(pip install -U orion_nb), or set ORION_NB_DATABASE_URL to another database. "
            "Nothing was changed."
        )
    if not tables:
        return "create"
    foreign = sorted(tables - OUR_TABLES)
    shown = ", ".join(foreign[:5] or sorted(tables)[:5])
    raise ConfigurationError(
        f"{where} is not an orion_nb history: it holds other tables ({shown}"
        f"{', ...' if len(foreign) > 5 else ''}"
        f"{f'; alembic revision {revision!r}' if revision else ''}). orion_nb only sets up an "
        "empty database or its own, and changed nothing. Point ORION_NB_DATABASE_URL (or "
        "configure(database_url=...)) at a new file or an empty database."
    )


def precheck_sqlite(path: str) -> None:
    """Refuse a foreign or newer SQLite file before any connection changes it.

    Opening a connection sets PRAGMAs (WAL changes the file's header): another application's
    file must be refused before that, through a read-only look.
    """
    import sqlite3

    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return
    for query in ("mode=ro", "mode=ro&immutable=1"):
        try:
            con = sqlite3.connect(f"{p.absolute().as_uri()}?{query}", uri=True, timeout=30)
            try:
                tables = {
                    r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                revision = None
                if "alembic_version" in tables:
                    row = con.execute("SELECT version_num FROM alembic_version").fetchone()
                    revision = None if row is None else str(row[0])
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise ConfigurationError(
                    f"The SQLite file {path} is not a database orion_nb can use ({exc}); it "
                    "was left untouched. Point ORION_NB_DATABASE_URL at another file."
                ) from None
            continue
        judge(
            {t for t in tables if not t.startswith("sqlite_")}, revision, f"The SQLite file {path}"
        )
        return


# a plain SQLite URL as settings.sqlite_url writes it (SQLAlchemy's form: the path after
# "sqlite:///", percent-encoded); anything else goes through SQLAlchemy's URL parser
_SQLITE_URL = re.compile(r"sqlite(?:\+pysqlite)?:///(?P<path>[^?#]+)")


def sqlite_path(url: str) -> str | None:
    """The file a plain ``sqlite:///path`` URL names, without importing SQLAlchemy.

    ``None`` for every other URL (Postgres, query options, ``file:`` URIs, in-memory): those
    take the SQLAlchemy path (:func:`create_engine` and :func:`migrate`).
    """
    m = _SQLITE_URL.fullmatch(url)
    if m is None:
        return None
    path = unquote(m["path"])
    if path == ":memory:" or path.startswith("file:"):
        return None
    return path


def open_sqlite(url: str, path: str) -> str | None:
    """Set up the SQLite file ``path`` with ``sqlite3`` alone, as :func:`migrate` would.

    A new (empty) database gets the head revision's schema and its ``alembic_version`` stamp
    in one ``BEGIN IMMEDIATE`` transaction (the statements Alembic produced, generated into
    :mod:`orion_nb.store._sqlite_sql`); eight processes creating one file at once create it
    once. Returns ``"created"``, ``"current"`` (already at head: nothing changed), or
    ``None`` when the schema is older and needs Alembic's migrations (nothing changed here;
    the caller takes :func:`migrate`).

    Raises
    ------
    ConfigurationError
        For a foreign or newer database, or when set-up fails (rolled back).
    """
    import sqlite3

    from orion_nb.store import _sqlite_sql as generated

    if generated.HEAD_REVISION != HEAD_REVISION:  # pragma: no cover - a test keeps them equal
        return None
    _prepare_sqlite_path(url, path)
    precheck_sqlite(path)
    try:
        con = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            _sqlite_pragmas(con, None)
            action = _set_up_sqlite(con, path, generated)
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise ConfigurationError(
            f"Setting up the history database {mask_url(url)!r} failed and was rolled "
            f"back, so nothing was changed: {explain(exc, url)}"
        ) from None
    return {"create": "created", "current": "current"}.get(action)


def _set_up_sqlite(con: Any, path: str, generated: Any) -> str:
    """What :func:`judge` decides for ``con``'s database, done in one transaction."""
    con.execute("BEGIN IMMEDIATE")
    try:
        tables = {
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if not r[0].startswith("sqlite_")
        }
        revision = None
        if "alembic_version" in tables:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = None if row is None else str(row[0])
        action = judge(tables, revision, f"The SQLite file {path}")
        if action == "create":
            for statement in generated.SCHEMA:
                con.execute(statement)
            con.execute(generated.STAMP, (generated.HEAD_REVISION,))
            con.execute("COMMIT")
        else:
            con.execute("ROLLBACK")
        return action
    except BaseException:
        if con.in_transaction:
            try:
                con.execute("ROLLBACK")
            except Exception:  # pragma: no cover - SQLite rolled back itself (disk full)
                pass
        raise


def _migrate_conn(sync_conn: Any) -> None:
    """Bring the schema to the newest revision (creating it if the database is empty).

    Runs inside the caller's transaction, after taking the set-up lock. An empty database
    gets the models' schema directly and is stamped with the head revision, as Alembic
    recommends for new databases; that skips importing Alembic on a fresh machine's first
    run. A test checks that the migrations produce the same schema. When the schema is
    current, one query of ``alembic_version`` decides and Alembic is not imported either.
    """
    from sqlalchemy import text

    if sync_conn.dialect.name == "postgresql":
        # serialise set-up across processes: without it, eight processes creating the schema
        # of a fresh database at once collide on Postgres's catalog (pg_type) keys
        sync_conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})"))
    action = check_schema(sync_conn)
    if action == "create":
        _create_and_stamp(sync_conn)
    elif action == "upgrade":
        _upgrade(sync_conn)


async def migrate(engine: Any) -> None:
    """Run :func:`_migrate_conn` in one transaction, on either kind of engine.

    Raises
    ------
    ConfigurationError
        For a foreign or newer database, or when set-up fails (nothing is left half-done).
    """
    import asyncio
    import time

    # a server that is starting up or shutting down (a restart) gets a few seconds
    deadline = time.monotonic() + 15
    while True:
        try:
            if is_async(engine):
                async with engine.begin() as conn:
                    await conn.run_sync(_migrate_conn)
            else:
                with engine.begin() as conn:
                    _migrate_conn(conn)
            return
        except ConfigurationError:
            raise
        except Exception as exc:
            if _restarting(exc) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                continue
            url = engine.url.render_as_string(hide_password=True)
            raise ConfigurationError(
                f"Setting up the history database {mask_url(url)!r} failed and was rolled "
                f"back, so nothing was changed: {explain(exc, url)}"
            ) from None


def _restarting(exc: BaseException) -> bool:
    """Whether ``exc`` says the server is starting up or shutting down (SQLSTATE 57P0x)."""
    e: BaseException | None = exc
    for _ in range(6):
        if e is None:
            return False
        code = getattr(e, "sqlstate", None)
        text = str(e).lower()
        if code in ("57P01", "57P03") or "starting up" in text or "shutting down" in text:
            return True
        e = getattr(e, "orig", None) or e.__cause__
    return False


def explain(exc: BaseException, url: str) -> str:
    """A database error as a sentence naming the likely cause and the fix (secrets removed)."""
    from orion_nb.settings import redact

    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0][:300]
    text = redact(f"{type(orig).__name__}: {first}", url)
    low = first.lower()
    target = _target(url)
    if "readonly" in low or "read-only" in low or "permission denied" in low or _read_only(url):
        return (
            f"{text}. {target} cannot be written (read-only file or directory). Make it "
            "writable, or set ORION_NB_HOME / ORION_NB_DATABASE_URL to a writable place; "
            "reading this history still works."
        )
    if "disk is full" in low or "no space left" in low or "disk full" in low:
        return f"{text}. The disk holding {target} is full: free some space."
    if "unable to open database file" in low:
        return (
            f"{text}. {target} cannot be opened or created: check that its directory exists "
            "and is writable, or set ORION_NB_HOME to a writable directory."
        )
    if "locked" in low or "busy" in low:
        return f"{text}. Another process holds a write lock on {target}; it is retried."
    if isinstance(orig, (OSError, ConnectionError, TimeoutError)) or "connect" in low:
        return (
            f"{text}. Check that the server is running and the URL is right, or unset "
            "ORION_NB_DATABASE_URL to use the default SQLite file."
        )
    return f"{text}."


def _read_only(url: str) -> bool:
    """Whether ``url`` is a SQLite file (or directory) this process cannot write."""
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:
        return False
    if u.get_backend_name() != "sqlite" or not u.database:
        return False
    path = Path(u.database)
    if path.exists() and not os.access(path, os.W_OK):
        return True
    return path.parent.exists() and not os.access(path.parent, os.W_OK)


def _target(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:
        return "the database"
    if u.get_backend_name() == "sqlite":
        return f"the SQLite file {u.database}"
    return f"the database {mask_url(url)!r}"


def _create_and_stamp(sync_conn: Any) -> None:
    from sqlalchemy import Column, MetaData, String, Table, insert

    from orion_nb.store.models import Base

    Base.metadata.create_all(sync_conn)
    # the table Alembic keeps its revision in, declared as Alembic does
    version = Table(
        "alembic_version", MetaData(), Column("version_num", String(32), primary_key=True)
    )
    version.create(sync_conn)
    sync_conn.execute(insert(version).values(version_num=HEAD_REVISION))


def _upgrade(sync_conn: Any) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", os.fspath(MIGRATIONS_DIR))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")
