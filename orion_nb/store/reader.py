"""History reads, without the writer.

Reading the history needs no writer thread, no write access and no heartbeat: a read-only
history (a shared directory, a backup, a mounted volume) must be readable. The reader owns a
read engine for one URL and runs the query functions of :mod:`orion_nb.store.queries` on the
process's shared loop thread. ``history._query`` flushes this process's own writer first (if
there is one), so what was just run is there.

On first use the reader checks the schema without writing: a current schema is simply read;
a missing or older one is set up (that needs write access, and says so clearly when it is
missing); another application's database or a newer orion_nb's is refused.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from orion_nb._loop import get_loop_thread
from orion_nb.errors import ConfigurationError
from orion_nb.settings import mask_url
from orion_nb.store import database

__all__ = ["Reader", "reader_for"]


def _sqlite_revision(path: Path) -> str | None:
    """``alembic_version`` of a SQLite file, read without writing (``""`` if not ours)."""
    for query in ("mode=ro", "mode=ro&immutable=1"):
        try:
            con = sqlite3.connect(f"{path.as_uri()}?{query}", uri=True, timeout=30)
        except sqlite3.Error:
            continue
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            if "alembic_version" not in tables:
                return "" if tables else None
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            return "" if row is None else str(row[0])
        except sqlite3.Error:
            continue
        finally:
            con.close()
    return None


class Reader:
    """A read engine for one database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Any = None
        self._lock = threading.Lock()

    def _open(self) -> Any:
        with self._lock:
            if self.engine is not None:
                return self.engine
            lt = get_loop_thread()
            engine = database.create_engine(self.url)
            try:
                if engine.dialect.name == "sqlite":
                    path = Path(engine.url.database).expanduser()
                    if not path.exists() or _sqlite_revision(path) != database.HEAD_REVISION:
                        lt.run(database.migrate(engine))
                else:
                    lt.run(database.migrate(engine))
            except ConfigurationError:
                lt.run(_dispose(engine))
                raise
            _replay(self.url)
            lt.run(_reconcile(engine))
            self.engine = engine
            return engine

    def query(self, name: str, **kwargs: Any) -> Any:
        """Run ``orion_nb.store.queries.<name>(engine, **kwargs)`` and return its result."""
        from orion_nb.store import queries

        return self.run(getattr(queries, name), **kwargs)

    def run(self, fn: Any, **kwargs: Any) -> Any:
        """Run the store read ``fn(engine, **kwargs)`` (a coroutine function of ``store/``)."""
        engine = self._open()
        try:
            return get_loop_thread().run(fn(engine, **kwargs))
        except (ConfigurationError, ValueError, TypeError):
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"Cannot read the history in {mask_url(self.url)!r}: "
                f"{database.explain(exc, self.url)}"
            ) from None

    def close(self) -> None:
        with self._lock:
            engine, self.engine = self.engine, None
        if engine is not None:
            get_loop_thread().run(_dispose(engine))


def _replay(url: str) -> None:
    """Write records another process left in the journal, before reading (best effort)."""
    from orion_nb.settings import get_settings
    from orion_nb.store.journal import Journal

    if not Journal(get_settings().journal_dir, url).files():
        return
    from orion_nb.store.writer import Writer

    try:
        Writer(url).start().close()
    except ConfigurationError:
        pass  # a read-only history: read what is there


async def _reconcile(engine: Any) -> None:
    """Mark runs whose process is gone, when this history can be written (best effort)."""
    from orion_nb.settings import get_settings
    from orion_nb.store import recovery

    grace = get_settings().crash_grace
    try:
        if database.is_async(engine):
            async with engine.begin() as conn:
                await conn.run_sync(recovery.reconcile, grace)
        else:
            with engine.begin() as conn:
                recovery.reconcile(conn, grace)
    except Exception:
        pass  # a read-only history is read as it is


async def _dispose(engine: Any) -> None:
    if database.is_async(engine):
        await engine.dispose()
    else:
        engine.dispose()


_readers: dict[str, Reader] = {}
_readers_lock = threading.Lock()


def reader_for(url: str) -> Reader:
    """The process's reader for ``url`` (one per URL, created on first use)."""
    with _readers_lock:
        r = _readers.get(url)
        if r is None:
            r = _readers[url] = Reader(url)
        return r
