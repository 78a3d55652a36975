"""Read queries that return pandas DataFrames.

Timestamps are selected as raw values and converted in one vectorised step (not row by row),
which is what lets a million task runs load in seconds. Every frame is newest first, has
timezone-aware UTC datetimes, a ``duration`` column for runs, and state names as a categorical.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import String, desc, select, type_coerce

from orion_nb.store.models import FlowRun, Log, StateRow, TaskRun, TaskRunInput, UTCDateTime

# a sync Engine for SQLite (read through the driver), an AsyncEngine for Postgres
AnyEngine = Any

__all__ = ["STATE_NAMES", "flow_runs", "logs", "states", "task_inputs", "task_runs"]

STATE_NAMES = [
    "Scheduled",
    "Late",
    "AwaitingRetry",
    "Pending",
    "Running",
    "Retrying",
    "Paused",
    "Completed",
    "Cached",
    "Failed",
    "TimedOut",
    "Crashed",
    "Cancelled",
]
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


_JSON_COLUMNS = ("parameters", "tags")


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
        if (sqlite and isinstance(col.type, UTCDateTime)) or n in _JSON_COLUMNS:
            col = type_coerce(col, String).label(n) if sqlite else col
        cols.append(col)
    return cols


def _decode_json(series: pd.Series, immutable: bool) -> pd.Series:
    """Decode JSON text once per distinct value.

    Tags become tuples, which can safely be shared between rows; dicts (parameters) are
    copied per row so that editing one cell never changes another.
    """
    cache: dict[Any, Any] = {}

    def decode(value: Any) -> Any:
        if not isinstance(value, str):
            return tuple(value) if immutable and isinstance(value, list) else value
        hit = cache.get(value, cache)
        if hit is cache:
            hit = json.loads(value)
            if immutable and isinstance(hit, list):
                hit = tuple(hit)
            cache[value] = hit
        return hit if immutable else (type(hit)(hit) if isinstance(hit, (list, dict)) else hit)

    return series.map(decode)


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
            con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)
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


_ID_COLUMNS = (
    "id",
    "flow_run_id",
    "parent_task_run_id",
    "deployment_id",
    "run_id",
    "task_run_id",
    "upstream_task_run_id",
)


async def _newest_first(
    engine: AnyEngine, stmt: Any, model: Any, limit: int | None
) -> pd.DataFrame:
    """Runs newest first. With a limit the database sorts (and stops early); without one the
    rows are read in table order and sorted in pandas, which for a million rows is much
    faster than SQLite's sort on (created, id)."""
    if limit is not None:
        stmt = stmt.order_by(desc(model.created), desc(model.id)).limit(limit)
        return await _frame(engine, stmt, _TIME)
    df = await _frame(engine, stmt, _TIME)
    # table order is insertion order: reversed, it breaks ties in `created` newest first
    return (
        df.iloc[::-1].sort_values("created", ascending=False, kind="stable").reset_index(drop=True)
    )


async def _frame(engine: AnyEngine, stmt: Any, time_cols: list[str]) -> pd.DataFrame:
    # millions of small tuples would trigger the cyclic GC again and again; none are cycles
    enabled = gc.isenabled()
    gc.disable()
    try:
        return await _build_frame(engine, stmt, time_cols)
    finally:
        if enabled:
            gc.enable()


async def _build_frame(engine: AnyEngine, stmt: Any, time_cols: list[str]) -> pd.DataFrame:
    keys, rows = await _fetch(engine, stmt)
    df = pd.DataFrame.from_records(rows, columns=keys)
    sqlite = engine.dialect.name == "sqlite"
    for c in time_cols:
        if c in df:
            # SQLite holds SQLAlchemy's DATETIME text: one exact format, parsed in C
            fmt = "%Y-%m-%d %H:%M:%S.%f" if sqlite else "ISO8601"
            df[c] = pd.to_datetime(df[c], utc=True, format=fmt)
    for c in _JSON_COLUMNS:
        if c in df:
            df[c] = _decode_json(df[c], immutable=c == "tags")
    if not sqlite:  # asyncpg hands out uuid.UUID objects; ids are text everywhere else
        for c in _ID_COLUMNS:
            if c in df:
                df[c] = df[c].map(lambda v: None if v is None else str(v))
    return df


def _since(engine: AnyEngine, col: Any, since: datetime) -> Any:
    if engine.dialect.name == "sqlite":
        # stored as naive-UTC text, which sorts chronologically
        aware = since if since.tzinfo else since.replace(tzinfo=UTC)
        return type_coerce(col, String) >= aware.astimezone(UTC).replace(tzinfo=None).isoformat(
            " ", "microseconds"
        )
    return col >= since


def _finish_runs(df: pd.DataFrame) -> pd.DataFrame:
    if "start_time" in df and "end_time" in df:
        df["duration"] = df["end_time"] - df["start_time"]
    if "state_name" in df:
        df["state_name"] = _categorical(df["state_name"], STATE_NAMES)
    if "state_type" in df:
        df["state_type"] = pd.Categorical(df["state_type"], categories=_STATE_TYPES)
    return df


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
_TIME = ["start_time", "end_time", "created", "heartbeat_at", "cache_expiration", "timestamp"]


def _state_filter(stmt: Any, model: Any, state: Any) -> Any:
    if state is None:
        return stmt
    values = [state] if isinstance(state, str) else list(state)
    upper = [v for v in values if v.upper() == v]
    named = [v for v in values if v.upper() != v]
    cond = None
    if upper:
        cond = model.state_type.in_(upper)
    if named:
        c2 = model.state_name.in_(named)
        cond = c2 if cond is None else (cond | c2)
    return stmt.where(cond)


async def flow_runs(
    engine: AnyEngine,
    flow_name: str | None = None,
    state: Any = None,
    since: datetime | None = None,
    limit: int | None = None,
    ids: list[str] | None = None,
) -> pd.DataFrame:
    stmt = select(*_cols(engine, FlowRun, _FLOW_COLS))
    if flow_name is not None:
        stmt = stmt.where(FlowRun.flow_name == flow_name)
    if ids is not None:
        stmt = stmt.where(FlowRun.id.in_(ids))
    stmt = _state_filter(stmt, FlowRun, state)
    if since is not None:
        stmt = stmt.where(_since(engine, FlowRun.created, since))
    return _finish_runs(await _newest_first(engine, stmt, FlowRun, limit))


async def task_runs(
    engine: AnyEngine,
    flow_run_id: str | None = None,
    task_name: str | None = None,
    state: Any = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    stmt = select(*_cols(engine, TaskRun, _TASK_COLS))
    if flow_run_id is not None:
        stmt = stmt.where(TaskRun.flow_run_id == flow_run_id)
    if task_name is not None:
        stmt = stmt.where(TaskRun.task_name == task_name)
    stmt = _state_filter(stmt, TaskRun, state)
    if since is not None:
        stmt = stmt.where(_since(engine, TaskRun.created, since))
    return _finish_runs(await _newest_first(engine, stmt, TaskRun, limit))


async def states(
    engine: AnyEngine, run_id: str | None = None, limit: int | None = None
) -> pd.DataFrame:
    names = ["id", "run_id", "run_kind", "type", "name", "timestamp", "message", "rule"]
    stmt = select(*_cols(engine, StateRow, names)).order_by(desc(StateRow.id))
    if run_id is not None:
        stmt = stmt.where(StateRow.run_id == run_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    df = await _frame(engine, stmt, _TIME)
    df["name"] = _categorical(df["name"], STATE_NAMES)
    return df


async def flow_states(engine: AnyEngine, flow_run_id: str) -> pd.DataFrame:
    """Every transition of a flow run and of its task runs, oldest first (for views)."""
    names = ["id", "run_id", "run_kind", "type", "name", "timestamp", "message", "rule"]
    task_ids = select(TaskRun.id).where(TaskRun.flow_run_id == flow_run_id)
    stmt = (
        select(*_cols(engine, StateRow, names))
        .where((StateRow.run_id == flow_run_id) | StateRow.run_id.in_(task_ids))
        .order_by(StateRow.id)
    )
    return await _frame(engine, stmt, _TIME)


async def logs(
    engine: AnyEngine,
    flow_run_id: str | None = None,
    task_run_id: str | None = None,
    level: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    names = ["id", "flow_run_id", "task_run_id", "level", "timestamp", "message"]
    stmt = select(*_cols(engine, Log, names)).order_by(desc(Log.id))
    if flow_run_id is not None:
        stmt = stmt.where(Log.flow_run_id == flow_run_id)
    if task_run_id is not None:
        stmt = stmt.where(Log.task_run_id == task_run_id)
    if level is not None:
        stmt = stmt.where(Log.level == level.upper())
    if limit is not None:
        stmt = stmt.limit(limit)
    df = await _frame(engine, stmt, _TIME)
    df["level"] = _categorical(df["level"], ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    return df


async def task_inputs(engine: AnyEngine, flow_run_id: str | None = None) -> pd.DataFrame:
    stmt = select(
        TaskRunInput.task_run_id, TaskRunInput.upstream_task_run_id, TaskRunInput.parameter
    )
    if flow_run_id is not None:
        stmt = stmt.where(
            TaskRunInput.task_run_id.in_(
                select(TaskRun.id).where(TaskRun.flow_run_id == flow_run_id)
            )
        )
    return await _frame(engine, stmt, [])


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
        tasks = _finish_runs(await _frame(engine, stmt, _TIME))
        tasks_frames.append(tasks)
        if tasks.empty:
            break
        stmt = select(*_cols(engine, FlowRun, _FLOW_COLS)).where(
            FlowRun.parent_task_run_id.in_(list(tasks["id"]))
        )
        subs = _finish_runs(await _frame(engine, stmt, _TIME))
        if subs.empty:
            break
        all_flows.append(subs)
        frontier = list(subs["id"])
    flows = pd.concat(all_flows, ignore_index=True)
    tasks = pd.concat(tasks_frames, ignore_index=True)
    run_ids = list(flows["id"]) + list(tasks["id"])
    names = ["id", "run_id", "run_kind", "type", "name", "timestamp", "message", "rule"]
    stmt = (
        select(*_cols(engine, StateRow, names))
        .where(StateRow.run_id.in_(run_ids))
        .order_by(StateRow.id)
    )
    states_df = await _frame(engine, stmt, _TIME)
    lnames = ["id", "flow_run_id", "task_run_id", "level", "timestamp", "message"]
    stmt = (
        select(*_cols(engine, Log, lnames))
        .where(Log.flow_run_id.in_(list(flows["id"])))
        .order_by(Log.id)
    )
    logs_df = await _frame(engine, stmt, _TIME)
    return {"flows": flows, "tasks": tasks, "states": states_df, "logs": logs_df}


def _categorical(values: Any, known: list[str]) -> Any:
    """A categorical in the known order, followed by any other names present.

    A run may end in a state named by the user (``Completed(name="Skipped")``) or log at a
    custom level: those names must come back, not turn into NaN.
    """
    present = set(values.dropna().unique())
    extra = sorted(str(v) for v in present if v not in known)
    return pd.Categorical(values, categories=[*known, *extra])
