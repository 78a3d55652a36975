"""Engines for SQLite (the standard sqlite3 driver) and Postgres (asyncpg), and schema set-up.

A database is created and migrated to the newest schema on first use. When the schema is
already current, Alembic is not even imported: one query of ``alembic_version`` decides.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from orion_nb.errors import ConfigurationError
from orion_nb.settings import mask_url

__all__ = ["HEAD_REVISION", "create_engine", "driver_url", "is_async", "migrate"]

HEAD_REVISION = "0002"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def driver_url(url: str) -> str:
    """Translate a user-facing URL to the driver orion_nb uses.

    ``sqlite:///x.db`` (any SQLite driver) becomes ``sqlite:///x.db`` on the standard driver;
    ``postgresql://`` and ``postgres://`` become ``postgresql+asyncpg://``.
    """
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
    durl = driver_url(url)
    u = make_url(durl)
    if u.get_backend_name() == "sqlite":
        from sqlalchemy import create_engine as create_sync_engine

        _prepare_sqlite_path(url, u.database)
        engine = create_sync_engine(u, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(durl, pool_pre_ping=True)


def is_async(engine: Any) -> bool:
    return hasattr(engine, "sync_engine")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers in other processes (history queries, a second kernel) read while the
    # writer writes, and makes commits cheap.
    cur.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL is durable against application crashes and skips an fsync per commit.
    cur.execute("PRAGMA synchronous=NORMAL")
    # Several kernels and scheduled scripts share one file: wait for a lock instead of failing.
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _migrate_conn(sync_conn: Any) -> None:
    """Bring the schema to the newest revision (creating it if the database is empty).

    An empty database gets the models' schema directly and is stamped with the head
    revision, as Alembic recommends for new databases; that skips importing Alembic on a
    fresh machine's first run. A test checks that the migrations produce the same schema.
    When the schema is current, one query of ``alembic_version`` decides and Alembic is not
    imported either.
    """
    from sqlalchemy import inspect

    if inspect(sync_conn).has_table("alembic_version"):
        row = sync_conn.execute(text("SELECT version_num FROM alembic_version")).first()
        if row is not None and str(row[0]) == HEAD_REVISION:
            return
        _upgrade(sync_conn)
    elif _is_empty(sync_conn):
        _create_and_stamp(sync_conn)
    else:
        _upgrade(sync_conn)


async def migrate(engine: Any) -> None:
    """Run :func:`_migrate_conn` in one transaction, on either kind of engine."""
    if is_async(engine):
        async with engine.begin() as conn:
            await conn.run_sync(_migrate_conn)
    else:
        with engine.begin() as conn:
            _migrate_conn(conn)


def _is_empty(sync_conn: Any) -> bool:
    from sqlalchemy import inspect

    return not inspect(sync_conn).get_table_names()


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
