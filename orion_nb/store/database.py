"""Engines for SQLite (aiosqlite) and Postgres (asyncpg), and schema set-up.

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
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from orion_nb.errors import ConfigurationError
from orion_nb.settings import mask_url

__all__ = ["HEAD_REVISION", "async_url", "create_engine", "migrate"]

HEAD_REVISION = "0001"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def async_url(url: str) -> str:
    """Translate a user-facing URL to the async driver orion_nb uses.

    ``sqlite:///x.db`` becomes ``sqlite+aiosqlite:///x.db``; ``postgresql://`` and
    ``postgres://`` become ``postgresql+asyncpg://``. An explicit async driver is kept.
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
        u = u.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+asyncpg")
    else:
        raise ConfigurationError(
            f"Database URL {mask_url(url)!r} uses {backend!r}; orion_nb supports SQLite "
            "('sqlite:///path.db') and PostgreSQL ('postgresql://user@host/db')."
        )
    return u.render_as_string(hide_password=False)


def create_engine(url: str) -> AsyncEngine:
    """Create the async engine for ``url``; SQLite files get their directory and PRAGMAs."""
    aurl = async_url(url)
    u = make_url(aurl)
    kwargs: dict[str, Any] = {}
    if u.get_backend_name() == "sqlite":
        db = u.database
        if db and db != ":memory:" and not db.startswith("file:"):
            path = Path(db).expanduser()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(
                    f"Cannot create the directory for the SQLite database {mask_url(url)!r}: {exc}. "
                    "Set ORION_NB_HOME or configure(database_url=...) to a writable place."
                ) from exc
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(aurl, **kwargs)
    if u.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


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


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        try:
            row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
        except Exception:
            return None
        return None if row is None else str(row[0])


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (creating it if the database is empty).

    An empty database gets the models' schema directly and is stamped with the head
    revision, as Alembic recommends for new databases; that skips importing Alembic on a
    fresh machine's first run. A test checks that the migrations produce the same schema.
    """
    revision = await current_revision(engine)
    if revision == HEAD_REVISION:
        return
    async with engine.begin() as conn:
        if revision is None and await conn.run_sync(_is_empty):
            await conn.run_sync(_create_and_stamp)
        else:
            await conn.run_sync(_upgrade)


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
