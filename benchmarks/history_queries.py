"""History reads for benchmarks/overhead.py's ``history`` section: loads and filtered queries.

The database is the section's million task runs (1,000 flow runs of 20 flows, made 10,000 by
copying them here; one task run in 50 failed, one in 10,000 crashed). Each filtered query is timed through the
public API (``orion_nb.flow_runs(flow_name=..., limit=100)``: flush, the read, the frame) and
set against two baselines measured on the same database in the same process:

- the floor: the very SQL statement the API runs, executed and fetched with plain
  ``sqlite3`` (what the database alone costs);
- the indexes the schema had before issue 11: the filter's index dropped (and, for the flow
  name, 0001's single-column index put back), the same API call timed again, then the
  schema restored.
"""

from __future__ import annotations

import gc
import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orion_nb
from orion_nb.store import columnar, database, queries

# a version-4 UUID in text form, made by SQLite for each copied row
SQL_UUID = (
    "lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))), 2) || '-a' || substr(lower(hex(randomblob(2))), 2) || "
    "'-' || lower(hex(randomblob(6)))"
)


def columnar_reads() -> bool:
    return columnar.available("sqlite")


def add_flow_run_copies(db: Path, copies: int) -> None:
    """``copies`` more flow runs per recorded one, with fresh ids (setup, not measured)."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(flow_runs)") if r[1] != "id"]
        last = con.execute("SELECT max(rowid) FROM flow_runs").fetchone()[0]
        con.execute("BEGIN")
        for k in range(1, copies + 1):
            select = ", ".join(f"{c} || '~{k}'" if c == "name" else c for c in cols)
            con.execute(
                f"INSERT INTO flow_runs (id, {', '.join(cols)}) "
                f"SELECT {SQL_UUID}, {select} FROM flow_runs WHERE rowid <= ?",
                (last,),
            )
        con.execute("COMMIT")
    finally:
        con.close()


def load_seconds(
    read: Callable[[], Any], rows: int, repeats: int, *, columnar: bool = True
) -> tuple[list[float], int]:
    """Seconds of each of ``repeats`` reads (and the frame's size), checking every row came."""
    queries.columnar_enabled = columnar
    try:
        times, size = [], 0
        for _ in range(repeats):
            gc.collect()
            t = time.perf_counter()
            df = read()
            times.append(time.perf_counter() - t)
            if len(df) != rows:
                raise RuntimeError(f"history: expected {rows:,} rows, got {len(df):,}")
            size = int(df.memory_usage(deep=True).sum())
            del df
        return times, size
    finally:
        queries.columnar_enabled = True


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm: statement compiled, pages cached
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def _raw_ms(db: Path, sql: str, repeats: int) -> float:
    def run() -> None:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
        try:
            con.execute(sql).fetchall()
        finally:
            con.close()

    return _median_ms(run, repeats)


def bench_filters(record: Callable[..., None], url: str, repeats: int) -> None:
    """The filtered-query figures (``record`` is overhead.py's)."""
    engine = database.create_engine(url)
    db = Path(engine.url.database or "")
    cases = (
        (
            "history_flow_runs_by_name_ms",
            "flow_runs(flow_name=…, limit=100)",
            lambda: orion_nb.flow_runs(flow_name="flow-3", limit=100),
            queries.flow_runs_query(engine, flow_name="flow-3", limit=100),
            [
                "DROP INDEX ix_flow_runs__flow_name_created",
                "CREATE INDEX ix_flow_runs__flow_name ON flow_runs (flow_name)",
            ],
            [
                "DROP INDEX ix_flow_runs__flow_name",
                "CREATE INDEX ix_flow_runs__flow_name_created ON flow_runs (flow_name, created)",
            ],
        ),
        (
            "history_task_runs_failed_ms",
            'task_runs(state="Failed", limit=100)',
            lambda: orion_nb.task_runs(state="Failed", limit=100),
            queries.task_runs_query(engine, state="Failed", limit=100),
            ["DROP INDEX ix_task_runs__state_name_created"],
            [
                "CREATE INDEX ix_task_runs__state_name_created ON task_runs (state_name, created) "
                "WHERE state_name != 'Completed'"
            ],
        ),
        (
            "history_task_runs_crashed_ms",
            'task_runs(state="CRASHED", limit=100)',
            lambda: orion_nb.task_runs(state="CRASHED", limit=100),
            queries.task_runs_query(engine, state="CRASHED", limit=100),
            ["DROP INDEX ix_task_runs__state_type_created"],
            [
                "CREATE INDEX ix_task_runs__state_type_created ON task_runs (state_type, created) "
                "WHERE state_type != 'COMPLETED'"
            ],
        ),
    )
    for key, label, call, stmt, drop, restore in cases:
        rows = len(call())
        if rows < 10:
            raise RuntimeError(f"{label}: expected up to 100 rows, got {rows}")
        sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        ms = _median_ms(call, repeats)
        raw = _raw_ms(db, sql, repeats)
        _ddl(db, drop)
        try:
            before = _median_ms(call, max(1, repeats // 2))
        finally:
            _ddl(db, restore)
        record(
            key,
            f"{label} on {_count(db):,} task runs",
            ms,
            "ms",
            baseline=raw,
            budget="≤ 50 ms",
            ok=ms <= 50,
            note=(
                f"median of {repeats}; baseline: the same SQL through plain sqlite3; with the "
                f"indexes before issue 11: {before:,.1f} ms"
            ),
        )
    engine.dispose()


def _ddl(db: Path, statements: list[str]) -> None:
    con = sqlite3.connect(db, isolation_level=None)
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()


def _count(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT count(*) FROM task_runs").fetchone()[0])
    finally:
        con.close()
