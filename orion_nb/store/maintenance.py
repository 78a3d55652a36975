"""Looking after a history database: upgrade, info, reset, prune, replay, reconcile.

The functions behind ``orion-nb db ...`` and ``orion-nb runs reconcile``. Each takes a URL,
opens its own engine on the process's loop thread and disposes of it afterwards; each
change runs in one transaction, and each refuses a database that is not orion_nb's (see
:func:`orion_nb.store.database.check_schema`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete, func, inspect, or_, select

from orion_nb._loop import get_loop_thread
from orion_nb.settings import get_settings
from orion_nb.store import database, recovery
from orion_nb.store.journal import Journal, JournalFile
from orion_nb.store.models import Base, FlowRun, Log, StateRow, TaskRun, TaskRunInput, WriteBatch

__all__ = ["info", "prune", "reconcile", "replay", "reset", "upgrade"]

T = TypeVar("T")


def _run(url: str, fn: Callable[[Any], T], *, write: bool = True) -> T:
    """``fn(sync_connection)`` in one transaction on a fresh engine for ``url``."""
    engine = database.create_engine(url)

    async def go() -> T:
        try:
            if database.is_async(engine):
                conn_cm = engine.begin() if write else engine.connect()
                async with conn_cm as conn:
                    return await conn.run_sync(fn)  # type: ignore[no-any-return]
            if write:
                with engine.begin() as conn:
                    return fn(conn)
            with engine.connect() as conn:
                return fn(conn)
        finally:
            if database.is_async(engine):
                await engine.dispose()
            else:
                engine.dispose()

    return get_loop_thread().run(go())


def upgrade(url: str) -> tuple[str | None, str]:
    """Migrate to the newest schema; return (revision before, revision after)."""

    def go(conn: Any) -> tuple[str | None, str]:
        before = database.schema_revision(conn)
        database._migrate_conn(conn)
        return before, database.HEAD_REVISION

    return _run(url, go)


def _columns(conn: Any, table: str) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns(table)}


def info(url: str) -> dict[str, Any]:
    """What the database holds: revision, counts, time span, size, pending journal."""

    def go(conn: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"revision": database.schema_revision(conn)}
        tables = set(inspect(conn).get_table_names())
        for name, model in (
            ("flow runs", FlowRun),
            ("task runs", TaskRun),
            ("states", StateRow),
            ("logs", Log),
            ("write batches", WriteBatch),
        ):
            if model.__tablename__ in tables:
                out[name] = conn.execute(select(func.count()).select_from(model)).scalar_one()
        if "states" in out and "final_state_id" in _columns(conn, "task_runs"):
            # transitions of plain runs are kept on the run (store/state_log.py): three each
            left_out = select(func.count()).where(TaskRun.final_state_id.is_not(None))
            out["states"] += 3 * conn.execute(left_out).scalar_one()
        if "flow_runs" in tables:
            oldest, newest = conn.execute(
                select(func.min(FlowRun.created), func.max(FlowRun.created))
            ).one()
            out["oldest run"], out["newest run"] = oldest, newest
            out["unfinished runs"] = conn.execute(
                select(func.count()).select_from(FlowRun).where(_unfinished(FlowRun))
            ).scalar_one()
        return out

    result = _run(url, go, write=False)
    from sqlalchemy.engine import make_url

    u = make_url(database.driver_url(url))
    if u.get_backend_name() == "sqlite" and u.database:
        path = Path(u.database)
        result["size"] = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    journal = Journal(get_settings().journal_dir, url)
    files = journal.files()
    result["journal"] = f"{len(files)} batches waiting in {journal.dir}" if files else "empty"
    return result


def _unfinished(model: Any) -> Any:
    return or_(model.state_type.in_(recovery.OPEN_TYPES), model.state_type.is_(None))


def reset(url: str) -> None:
    """Drop every orion_nb table and create an empty history (refuses a foreign database)."""

    def go(conn: Any) -> None:
        database.check_schema(conn)  # raises for another application's or a newer database
        Base.metadata.drop_all(conn)
        from sqlalchemy import text

        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        database._create_and_stamp(conn)

    _run(url, go)


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w`` or ``45s`` as a duration."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    if len(t) < 2 or t[-1] not in units or not t[:-1].replace(".", "", 1).isdigit():
        raise ValueError(
            f"{text!r} is not an age; write a number and a unit: 30d, 12h, 90m, 2w or 45s."
        )
    return timedelta(seconds=float(t[:-1]) * units[t[-1]])


def prune(url: str, older_than: timedelta) -> dict[str, int]:
    """Delete finished flow runs created before now - ``older_than``, with everything of theirs.

    Standalone task runs that finished before the cutoff go too, and ``write_batches`` rows
    older than it. Unfinished runs are never deleted.
    """
    cutoff = datetime.now(UTC) - older_than

    def go(conn: Any) -> dict[str, int]:
        database.check_schema(conn)
        flows = [
            r[0]
            for r in conn.execute(
                select(FlowRun.id).where(FlowRun.created < cutoff, ~_unfinished(FlowRun))
            )
        ]
        tasks: list[Any] = []
        for start in range(0, len(flows), 500):
            chunk = flows[start : start + 500]
            tasks += [
                r[0] for r in conn.execute(select(TaskRun.id).where(TaskRun.flow_run_id.in_(chunk)))
            ]
        tasks += [
            r[0]
            for r in conn.execute(
                select(TaskRun.id).where(
                    TaskRun.flow_run_id.is_(None), TaskRun.created < cutoff, ~_unfinished(TaskRun)
                )
            )
        ]
        counts = {"flow runs": len(flows), "task runs": len(tasks), "states": 0, "logs": 0}
        for start in range(0, max(len(flows), len(tasks)), 500):
            f, t = flows[start : start + 500], tasks[start : start + 500]
            ids = f + t
            counts["states"] += conn.execute(
                delete(StateRow).where(StateRow.run_id.in_(ids))
            ).rowcount
            counts["logs"] += conn.execute(
                delete(Log).where(or_(Log.flow_run_id.in_(f), Log.task_run_id.in_(t)))
            ).rowcount
            conn.execute(delete(TaskRunInput).where(TaskRunInput.task_run_id.in_(t)))
            conn.execute(delete(TaskRun).where(TaskRun.id.in_(t)))
            conn.execute(delete(FlowRun).where(FlowRun.id.in_(f)))
        conn.execute(delete(WriteBatch).where(WriteBatch.written_at < cutoff))
        return counts

    return _run(url, go)


def replay(url: str) -> dict[str, Any]:
    """Write this database's journal (exactly once); report what was done and what is left."""
    from orion_nb.store.writer import Writer

    s = get_settings()
    journal = Journal(s.journal_dir, url)
    before = journal.files()
    rows = sum(_rows(f) for f in before)
    w = Writer(url, flush_interval=s.flush_interval).start()  # replays as it opens
    w.close()
    left = journal.files()
    others = list(Journal.other_databases(s.journal_dir, journal.key))
    return {
        "batches": len(before) - len(left),
        "rows": rows - sum(_rows(f) for f in left),
        "left": len(left),
        "others": others,
        "dir": str(journal.dir),
    }


def _rows(file: JournalFile) -> int:
    try:
        return int(file.header().get("rows", 0))
    except (OSError, ValueError):
        return 0


def reconcile(url: str, grace: float | None = None) -> list[str]:
    """Mark the runs whose process is gone as Crashed now; the ids marked."""
    g = get_settings().crash_grace if grace is None else grace

    def go(conn: Any) -> list[str]:
        database.check_schema(conn)
        return recovery.reconcile(conn, g)

    return _run(url, go)
