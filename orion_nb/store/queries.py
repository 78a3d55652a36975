"""Read queries that return pandas DataFrames.

Timestamps are selected as raw values and converted in one vectorised step (not row by row),
which is what lets a million task runs load in seconds. Every frame is newest first, has
timezone-aware UTC datetimes, a ``duration`` column for runs, and state names as a categorical.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Integer, String, Uuid, desc, literal_column, select, type_coerce

from orion_nb._collector import collector_paused
from orion_nb.errors import QueryError
from orion_nb.orchestration.states import STATE_NAMES as _NAMES
from orion_nb.store import columnar, frames, state_log
from orion_nb.store.frames import Kinds
from orion_nb.store.models import (
    Deployment,
    FlowRun,
    FlowRunTag,
    JSONType,
    Log,
    StateRow,
    TaskRun,
    TaskRunInput,
    UTCDateTime,
)

# a sync Engine for SQLite (read through the driver), an AsyncEngine for Postgres
AnyEngine = Any

__all__ = ["STATE_NAMES", "flow_runs", "logs", "run_tree", "states", "task_inputs", "task_runs"]

log = logging.getLogger("orion_nb.store")

STATE_NAMES = list(_NAMES)
_STATE_TYPES = [
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "PAUSED",
    "COMPLETED",
    "FAILED",
    "CRASHED",
    "CANCELLED",
]


def kinds(model: Any, names: list[str]) -> Kinds:
    """What each selected column holds, from the model's column types (see ``frames``)."""
    out: Kinds = {}
    for n in names:
        t = getattr(model, n).type
        if isinstance(t, UTCDateTime):
            out[n] = "time"
        elif isinstance(t, JSONType):
            out[n] = "json"
        elif isinstance(t, Uuid):
            out[n] = "id"
        elif isinstance(t, Integer):
            out[n] = "int"
        else:
            out[n] = "text"
    return out


def _cols(engine: AnyEngine, model: Any, names: list[str]) -> list[Any]:
    """Columns to select, raw where converting row by row would be slow.

    On SQLite timestamps come back as their stored text (converted in one vectorised step).
    JSON columns come back as text everywhere and are decoded once per distinct value: tags
    and parameters repeat a lot across runs.
    """
    sqlite = engine.dialect.name == "sqlite"
    cols = []
    for n in names:
        col = getattr(model, n)
        if sqlite and isinstance(col.type, (UTCDateTime, JSONType)):
            col = type_coerce(col, String).label(n)
        cols.append(col)
    return cols


async def _fetch(engine: AnyEngine, stmt: Any) -> tuple[list[str], list[Any]]:
    """Run a SELECT and return its column names and plain row tuples.

    SQLite is read through the driver in a worker thread, with the statement compiled by
    SQLAlchemy (literal parameters): for a million rows this skips building a million Row
    objects and a thread hop per batch. Postgres goes through the async engine.
    """
    if engine.dialect.name == "sqlite":
        sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        path = Path(engine.url.database or "").expanduser().resolve()

        def fetch() -> tuple[list[str], list[Any]]:
            try:
                con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)
                con.execute("SELECT 1 FROM sqlite_master LIMIT 1")
            except sqlite3.OperationalError:
                # a WAL database in a read-only directory without its -shm file can only be
                # opened as immutable (nobody can be writing it there)
                con = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True)
            try:
                cur = con.execute(sql)
                return [d[0] for d in cur.description], cur.fetchall()
            finally:
                con.close()

        return await asyncio.to_thread(fetch)
    async with engine.connect() as conn:
        result = await conn.execute(stmt)
        keys = list(result.keys())
        return keys, [tuple(r) for r in result.all()]


# -- issue 11: columnar reads ----------------------------------------------------------------
# Results bigger than this many rows are read as Arrow when the ADBC drivers are installed
# (orion_nb[arrow]); smaller ones (a page of runs) are quicker through the row path, which
# on Postgres reuses the engine's pooled connection.
COLUMNAR_MIN_LIMIT = 5_000
# tests switch the columnar path off to compare it with the row path on the same database
columnar_enabled = True
DTYPE_BACKENDS = (None, "pyarrow")


def _check_dtype_backend(dtype_backend: str | None) -> None:
    if dtype_backend not in DTYPE_BACKENDS:
        raise QueryError(
            f"dtype_backend={dtype_backend!r} is not supported; use None (NumPy-backed "
            "columns, the default) or 'pyarrow' (pandas ArrowDtype columns)."
        )
    if dtype_backend == "pyarrow" and not columnar.available("pyarrow"):
        raise QueryError(
            "dtype_backend='pyarrow' needs the pyarrow package; install it with "
            "pip install 'orion_nb[arrow]' (which also makes large reads faster)."
        )


async def _frame(
    engine: AnyEngine,
    stmt: Any,
    kinds: Kinds,
    *,
    categories: frames.Categories | None = None,
    limit: int | None = None,
    newest_first: frames.Arrival | None = None,
    dtype_backend: str | None = None,
) -> pd.DataFrame:
    """The frame of ``stmt``: columnar when it may be large and the drivers are there,
    else from rows (the reference conversion, also the fallback of the columnar path).

    ``newest_first``: sort the rows here, newest ``created`` first (see
    :func:`frames.newest_first` for what ``"read"`` and ``"reversed"`` mean).
    """
    sqlite = engine.dialect.name == "sqlite"
    pyarrow_backend = dtype_backend == "pyarrow"
    if columnar_enabled and (limit is None or limit > COLUMNAR_MIN_LIMIT):
        table = await asyncio.to_thread(columnar.fetch, engine, stmt)
        if table is not None:
            try:
                with collector_paused():  # a million strings and lists, none in a cycle
                    df = frames.from_arrow(
                        table,
                        kinds,
                        sqlite=sqlite,
                        categories=categories,
                        newest_first=newest_first,
                        pyarrow_backend=pyarrow_backend,
                    )
                log.debug("read %d rows as Arrow", len(df))
                return df
            except frames.Unrepresentable as exc:
                log.debug("columnar frame not possible (%s); reading rows", exc)
    # millions of small tuples would trigger the cyclic GC again and again; none are cycles
    with collector_paused():
        _keys, rows = await _fetch(engine, stmt)
        df = frames.from_rows(rows, kinds, sqlite=sqlite, categories=categories)
    if newest_first is not None:
        df = frames.newest_first(df, newest_first)
    return frames.to_pyarrow_backend(df, kinds) if pyarrow_backend else df


_RUN_CATEGORIES: frames.Categories = {"state_type": _STATE_TYPES, "state_name": STATE_NAMES}


def _newest_first_query(engine: AnyEngine, stmt: Any, model: Any, limit: int | None) -> Any:
    """Runs newest first; among runs created in the same microsecond, the one recorded last
    comes first.

    With a limit the database sorts and stops early, along an index whose last column is
    ``created``. Without one the rows are read last-recorded first (SQLite walks its table
    backwards; Postgres rows are reversed after reading, see :func:`_runs`) and sorted by
    ``created`` in memory, which costs nothing when they already are in that order, as in
    most histories, and is much cheaper than the database's sort on ``created, id``.
    """
    if limit is not None:
        return stmt.order_by(desc(model.created), desc(model.id)).limit(limit)
    if engine.dialect.name == "sqlite":
        return stmt.order_by(desc(literal_column(f"{model.__tablename__}.rowid")))
    return stmt


async def _runs(
    engine: AnyEngine,
    stmt: Any,
    model: Any,
    names: list[str],
    limit: int | None,
    dtype_backend: str | None,
) -> pd.DataFrame:
    """The runs of a :func:`_newest_first_query`, newest first, with their ``duration``."""
    sqlite = engine.dialect.name == "sqlite"
    df = await _frame(
        engine,
        stmt,
        kinds(model, names),
        categories=_RUN_CATEGORIES,
        limit=limit,
        newest_first=None if limit is not None else "read" if sqlite else "reversed",
        dtype_backend=dtype_backend,
    )
    return _with_duration(df)


def _with_duration(df: pd.DataFrame) -> pd.DataFrame:
    df["duration"] = df["end_time"] - df["start_time"]
    return df


def _since(engine: AnyEngine, col: Any, since: datetime) -> Any:
    """``col >= since`` (the history browser's filters use it too)."""
    return _at_or_after(engine, col, since)


def _at_or_after(engine: AnyEngine, col: Any, when: datetime, *, before: bool = False) -> Any:
    """``col >= when`` (or ``col < when`` with ``before``), usable by an index on ``col``."""
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    if engine.dialect.name == "sqlite":
        # stored as naive-UTC text, which sorts chronologically
        text_col = type_coerce(col, String)
        bound = aware.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return text_col < bound if before else text_col >= bound
    return col < aware if before else col >= aware


_FLOW_COLS = [
    "id",
    "flow_name",
    "name",
    "state_type",
    "state_name",
    "start_time",
    "end_time",
    "run_count",
    "parameters",
    "tags",
    "parent_task_run_id",
    "deployment_id",
    "source",
    "host",
    "pid",
    "created",
    "heartbeat_at",
    "message",
    "expected_start_time",  # the scheduled slot of a deployment's run
    "output_path",  # the executed notebook a scheduled run left behind
]
_TASK_COLS = [
    "id",
    "flow_run_id",
    "task_name",
    "name",
    "state_type",
    "state_name",
    "start_time",
    "end_time",
    "run_count",
    "task_key",
    "dynamic_key",
    "cache_key",
    "cache_expiration",
    "tags",
    "created",
    "message",
    # issue 9: where each task run executed (host, pid, and the task runner's worker)
    "host",
    "pid",
    "worker",
]
_STATE_COLS = ["id", "run_id", "run_kind", "type", "name", "timestamp", "message", "rule"]
_LOG_COLS = ["id", "flow_run_id", "task_run_id", "level", "timestamp", "message"]
_INPUT_COLS = ["task_run_id", "upstream_task_run_id", "parameter"]
_LOG_CATEGORIES: frames.Categories = {"level": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]}


def _state_filter(stmt: Any, model: Any, state: Any) -> Any:
    """Runs in any of the given state types (upper case) or state names.

    A filter of types only, or of names only, that leaves out the completed ones also says so
    explicitly (``state_type <> 'COMPLETED'`` / ``state_name <> 'Completed'``): always true
    for the rows it selects, it lets the database use the partial state indexes, which leave
    out the completed runs that make up most of a history (see ``models.py``, issue 11).
    """
    if state is None:
        return stmt
    values = [state] if isinstance(state, str) else list(state)
    upper = [v for v in values if v.upper() == v]
    named = [v for v in values if v.upper() != v]
    if upper and named:
        return stmt.where(model.state_type.in_(upper) | model.state_name.in_(named))
    if upper:
        stmt = stmt.where(model.state_type.in_(upper))
        return stmt if "COMPLETED" in upper else stmt.where(model.state_type != "COMPLETED")
    stmt = stmt.where(model.state_name.in_(named))
    return stmt if "Completed" in named else stmt.where(model.state_name != "Completed")


def _created_between(
    engine: AnyEngine, stmt: Any, model: Any, since: datetime | None, until: datetime | None
) -> Any:
    """Runs created at or after ``since`` and before ``until`` (naive times are UTC)."""
    if since is not None:
        stmt = stmt.where(_at_or_after(engine, model.created, since))
    if until is not None:
        stmt = stmt.where(_at_or_after(engine, model.created, until, before=True))
    return stmt


def _tags_filter(stmt: Any, tags: str | list[str] | None) -> Any:
    """Flow runs that carry every one of ``tags`` (through the indexed ``flow_run_tags``)."""
    if tags is None:
        return stmt
    for tag in [tags] if isinstance(tags, str) else list(tags):
        tagged = select(FlowRunTag.flow_run_id).where(FlowRunTag.tag == tag)
        stmt = stmt.where(FlowRun.id.in_(tagged))
    return stmt


def flow_runs_query(
    engine: AnyEngine,
    flow_name: str | None = None,
    state: Any = None,
    since: datetime | None = None,
    limit: int | None = None,
    ids: list[str] | None = None,
    *,
    until: datetime | None = None,
    deployment_id: str | None = None,
    tags: str | list[str] | None = None,
) -> Any:
    """The SELECT behind :func:`flow_runs` (also what the query-plan tests explain).

    ``since`` / ``until``: created at or after / before; ``tags``: carrying all of them;
    ``ids``: these runs only (views).
    """
    stmt = select(*_cols(engine, FlowRun, _FLOW_COLS))
    if flow_name is not None:
        stmt = stmt.where(FlowRun.flow_name == flow_name)
    if ids is not None:
        stmt = stmt.where(FlowRun.id.in_(ids))
    if deployment_id is not None:
        stmt = stmt.where(FlowRun.deployment_id == deployment_id)
    stmt = _state_filter(stmt, FlowRun, state)
    stmt = _tags_filter(stmt, tags)
    stmt = _created_between(engine, stmt, FlowRun, since, until)
    return _newest_first_query(engine, stmt, FlowRun, limit)


async def flow_runs(
    engine: AnyEngine,
    *,
    dtype_backend: str | None = None,
    deployment: str | None = None,
    **filters: Any,
) -> pd.DataFrame:
    """Flow runs, newest first; ``filters`` as in :func:`flow_runs_query`, each served by an
    index (issue 11).

    ``deployment``: only runs of the deployment with this name. Every frame has a
    ``deployment`` column with the deployment's name (None for runs started by hand), looked
    up once per distinct deployment rather than joined row by row.
    """
    _check_dtype_backend(dtype_backend)
    names = await _deployment_names(engine)
    if deployment is not None:
        ids = [i for i, n in names.items() if n == deployment]
        # no such deployment: an id no run has, so the frame is empty with the usual columns
        filters["deployment_id"] = ids[0] if ids else "00000000-0000-0000-0000-000000000000"
    stmt = flow_runs_query(engine, **filters)
    df = await _runs(engine, stmt, FlowRun, _FLOW_COLS, filters.get("limit"), dtype_backend)
    ids_col = df["deployment_id"].astype(object)
    df["deployment"] = [names.get(str(i)) if isinstance(i, str) else None for i in ids_col]
    return df


async def _deployment_names(engine: AnyEngine) -> dict[str, str]:
    _keys, rows = await _fetch(engine, select(Deployment.id, Deployment.name))
    return {str(i): str(n) for i, n in rows}


def task_runs_query(
    engine: AnyEngine,
    flow_run_id: str | None = None,
    task_name: str | None = None,
    state: Any = None,
    since: datetime | None = None,
    limit: int | None = None,
    *,
    until: datetime | None = None,
) -> Any:
    """The SELECT behind :func:`task_runs` (also what the query-plan tests explain)."""
    stmt = select(*_cols(engine, TaskRun, _TASK_COLS))
    if flow_run_id is not None:
        stmt = stmt.where(TaskRun.flow_run_id == flow_run_id)
    if task_name is not None:
        stmt = stmt.where(TaskRun.task_name == task_name)
    stmt = _state_filter(stmt, TaskRun, state)
    stmt = _created_between(engine, stmt, TaskRun, since, until)
    return _newest_first_query(engine, stmt, TaskRun, limit)


async def task_runs(
    engine: AnyEngine, *, dtype_backend: str | None = None, **filters: Any
) -> pd.DataFrame:
    """Task runs, newest first; ``filters`` as in :func:`task_runs_query`, each served by an
    index (issue 11)."""
    _check_dtype_backend(dtype_backend)
    stmt = task_runs_query(engine, **filters)
    return await _runs(engine, stmt, TaskRun, _TASK_COLS, filters.get("limit"), dtype_backend)


async def states(
    engine: AnyEngine,
    run_id: str | None = None,
    limit: int | None = None,
    *,
    dtype_backend: str | None = None,
) -> pd.DataFrame:
    _check_dtype_backend(dtype_backend)
    log_ = state_log.transitions(
        engine.dialect.name == "sqlite",
        states_where=None if run_id is None else StateRow.run_id == run_id,
        tasks_where=None if run_id is None else TaskRun.id == run_id,
        newest=limit,
    )
    stmt = select(*(log_.c[c] for c in _STATE_COLS)).order_by(desc(log_.c.id))
    if limit is not None:
        stmt = stmt.limit(limit)
    return await _frame(
        engine,
        stmt,
        kinds(StateRow, _STATE_COLS),
        categories={"name": STATE_NAMES},
        limit=limit,
        dtype_backend=dtype_backend,
    )


async def logs(
    engine: AnyEngine,
    flow_run_id: str | None = None,
    task_run_id: str | None = None,
    level: str | None = None,
    limit: int | None = None,
    *,
    dtype_backend: str | None = None,
) -> pd.DataFrame:
    _check_dtype_backend(dtype_backend)
    stmt = select(*_cols(engine, Log, _LOG_COLS)).order_by(desc(Log.id))
    if flow_run_id is not None:
        stmt = stmt.where(Log.flow_run_id == flow_run_id)
    if task_run_id is not None:
        stmt = stmt.where(Log.task_run_id == task_run_id)
    if level is not None:
        stmt = stmt.where(Log.level == level.upper())
    if limit is not None:
        stmt = stmt.limit(limit)
    return await _frame(
        engine,
        stmt,
        kinds(Log, _LOG_COLS),
        categories=_LOG_CATEGORIES,
        limit=limit,
        dtype_backend=dtype_backend,
    )


async def task_run_counts(engine: AnyEngine, flow_run_ids: list[str]) -> dict[str, int]:
    """Task runs per flow run, for ``flow_run_ids`` only (one grouped query)."""
    from sqlalchemy import func

    if not flow_run_ids:
        return {}
    stmt = (
        select(TaskRun.flow_run_id, func.count().label("n"))
        .where(TaskRun.flow_run_id.in_(flow_run_ids))
        .group_by(TaskRun.flow_run_id)
    )
    _keys, rows = await _fetch(engine, stmt)
    return {str(fid): int(n) for fid, n in rows}


async def task_inputs(engine: AnyEngine, flow_run_id: str | None = None) -> pd.DataFrame:
    stmt = select(*_cols(engine, TaskRunInput, _INPUT_COLS))
    if flow_run_id is not None:
        stmt = stmt.where(
            TaskRunInput.task_run_id.in_(
                select(TaskRun.id).where(TaskRun.flow_run_id == flow_run_id)
            )
        )
    return await _frame(engine, stmt, kinds(TaskRunInput, _INPUT_COLS))


async def run_tree(engine: AnyEngine, flow_run_id: str) -> dict[str, pd.DataFrame]:
    """A flow run with its subflows (recursively), their task runs, states and logs."""
    flows = await flow_runs(engine, ids=[flow_run_id])
    if flows.empty:
        return {"flows": flows}
    all_flows = [flows]
    frontier = [flow_run_id]
    tasks_frames = []
    while frontier:
        stmt = select(*_cols(engine, TaskRun, _TASK_COLS)).where(TaskRun.flow_run_id.in_(frontier))
        tasks = _with_duration(
            await _frame(engine, stmt, kinds(TaskRun, _TASK_COLS), categories=_RUN_CATEGORIES)
        )
        tasks_frames.append(tasks)
        if tasks.empty:
            break
        stmt = select(*_cols(engine, FlowRun, _FLOW_COLS)).where(
            FlowRun.parent_task_run_id.in_(list(tasks["id"]))
        )
        subs = _with_duration(
            await _frame(engine, stmt, kinds(FlowRun, _FLOW_COLS), categories=_RUN_CATEGORIES)
        )
        if subs.empty:
            break
        all_flows.append(subs)
        frontier = list(subs["id"])
    flows = pd.concat(all_flows, ignore_index=True)
    tasks = pd.concat(tasks_frames, ignore_index=True)
    run_ids = list(flows["id"]) + list(tasks["id"])
    log_ = state_log.transitions(
        engine.dialect.name == "sqlite",
        states_where=StateRow.run_id.in_(run_ids),
        tasks_where=TaskRun.id.in_(list(tasks["id"])),
    )
    stmt = select(*(log_.c[c] for c in _STATE_COLS)).order_by(log_.c.id)
    states_df = await _frame(engine, stmt, kinds(StateRow, _STATE_COLS))
    stmt = (
        select(*_cols(engine, Log, _LOG_COLS))
        .where(Log.flow_run_id.in_(list(flows["id"])))
        .order_by(Log.id)
    )
    logs_df = await _frame(engine, stmt, kinds(Log, _LOG_COLS))
    return {"flows": flows, "tasks": tasks, "states": states_df, "logs": logs_df}
