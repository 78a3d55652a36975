"""Where run events go: the store's batched writer (started on first use) and live views.

The store is imported only when the first run is recorded, so ``import orion_nb`` stays free of
SQLAlchemy. ``configure(database_url=...)`` flushes and closes the current writer; the next
run opens a writer for the new URL.

A process-pool or Dask worker process has no writer: the kernel that submitted the task run
records everything. There :func:`route` sends every event to a router (which collects the
events of the attempt in progress, to be shipped back with its outcome), and no writer is
ever opened.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from orion_nb import settings

if TYPE_CHECKING:
    from orion_nb.store.writer import Writer

__all__ = ["emit", "flush", "get_writer", "route"]

_lock = threading.Lock()
_writer: Writer | None = None
_put: Any = None
_router: Any = None


def get_writer(start: bool = True) -> Writer | None:
    """The process's writer for the configured database (``None`` when persistence is off)."""
    global _writer, _put
    w = _writer
    if w is not None or not start or _router is not None:
        return w
    s = settings.get_settings()
    if not s.persist:
        return None
    with _lock:
        if _writer is None:
            from orion_nb.store.writer import Writer

            w = Writer(s.effective_database_url, flush_interval=s.flush_interval).start()
            _writer = w
            _put = w.put
        return _writer


def route(router: Any) -> None:
    """Send every event of this process to ``router(event)`` instead of a writer (workers)."""
    global _router, _put
    with _lock:
        _router = router
        _put = router


def emit(event: tuple[Any, ...]) -> None:
    """Queue one event for the store (no-op when persistence is off)."""
    put = _put
    if put is not None:
        put(event)


def flush() -> None:
    """Block until all recorded events are committed."""
    w = _writer
    if w is not None:
        w.flush()


async def aflush() -> None:
    w = _writer
    if w is not None:
        await w.aflush()


def _on_settings_change(old: settings.Settings, new: settings.Settings) -> None:
    global _writer, _put
    if (old.effective_database_url, old.persist) == (new.effective_database_url, new.persist):
        if _writer is not None:
            _writer.flush_interval = new.flush_interval
        return
    with _lock:
        w, _writer, _put = _writer, None, _router
    if w is not None:
        w.flush()
        w.close()


settings.on_change(_on_settings_change)
