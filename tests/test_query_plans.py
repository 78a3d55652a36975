"""Every filter of the history API is answered through an index, on SQLite.

``EXPLAIN QUERY PLAN`` of the exact statement each read runs (compiled as the read path
compiles it) must name the index meant for that filter; a page of runs ("the newest 100")
must walk that index in ``created`` order instead of sorting every match. The same cases
run on Postgres in ``tests/postgres/test_postgres_history_reads.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import orion_nb
from orion_nb.store import database, queries

WHEN = datetime(2026, 1, 1, tzinfo=UTC)
ID = "01a217d0-0c06-777f-85af-964e76b8f400"


@dataclass(frozen=True)
class Case:
    query: Callable[[Any], Any]  # engine -> statement
    index: str  # the index the plan must use
    sorts_all: bool = False  # True where sorting the matches is expected (no index order)


CASES = {
    "flow_runs(flow_name, limit)": Case(
        lambda e: queries.flow_runs_query(e, flow_name="etl", limit=100),
        "ix_flow_runs__flow_name_created",
    ),
    "flow_runs(state name, limit)": Case(
        lambda e: queries.flow_runs_query(e, state="Failed", limit=100),
        "ix_flow_runs__state_name_created",
    ),
    "flow_runs(state type, limit)": Case(
        lambda e: queries.flow_runs_query(e, state="RUNNING", limit=100),
        "ix_flow_runs__state_type_created",
    ),
    "flow_runs(since, limit)": Case(
        lambda e: queries.flow_runs_query(e, since=WHEN, limit=100), "ix_flow_runs__created"
    ),
    "flow_runs(until, limit)": Case(
        lambda e: queries.flow_runs_query(e, until=WHEN, limit=100), "ix_flow_runs__created"
    ),
    "flow_runs(deployment, limit)": Case(
        lambda e: queries.flow_runs_query(e, deployment_id=ID, limit=100),
        "ix_flow_runs__deployment_id_created",
    ),
    "flow_runs(tags, limit)": Case(
        lambda e: queries.flow_runs_query(e, tags=["nightly", "prod"], limit=100),
        "ix_flow_run_tags__tag_flow_run_id",
        sorts_all=True,  # the tagged runs are found by tag, then sorted
    ),
    "flow_runs(limit)": Case(
        lambda e: queries.flow_runs_query(e, limit=100), "ix_flow_runs__created"
    ),
    "task_runs(flow_run_id, limit)": Case(
        lambda e: queries.task_runs_query(e, flow_run_id=ID, limit=100),
        "ix_task_runs__flow_run_id_created",
    ),
    "task_runs(flow_run_id)": Case(
        lambda e: queries.task_runs_query(e, flow_run_id=ID),
        "ix_task_runs__flow_run_id_created",
        sorts_all=True,  # every run of the flow run is read anyway
    ),
    "task_runs(task_name, limit)": Case(
        lambda e: queries.task_runs_query(e, task_name="load", limit=100),
        "ix_task_runs__task_name_created",
    ),
    "task_runs(state name, limit)": Case(
        lambda e: queries.task_runs_query(e, state="Failed", limit=100),
        "ix_task_runs__state_name_created",
    ),
    "task_runs(state names, limit)": Case(
        lambda e: queries.task_runs_query(e, state=["Failed", "Crashed"], limit=100),
        "ix_task_runs__state_name_created",
        sorts_all=True,  # two ranges of the index, merged by a sort
    ),
    "task_runs(state type, limit)": Case(
        lambda e: queries.task_runs_query(e, state="FAILED", limit=100),
        "ix_task_runs__state_type_created",
    ),
    "task_runs(since, limit)": Case(
        lambda e: queries.task_runs_query(e, since=WHEN, limit=100), "ix_task_runs__created"
    ),
    "task_runs(until, limit)": Case(
        lambda e: queries.task_runs_query(e, until=WHEN, limit=100), "ix_task_runs__created"
    ),
    "task_runs(limit)": Case(
        lambda e: queries.task_runs_query(e, limit=100), "ix_task_runs__created"
    ),
}


def sql_of(engine: Any, stmt: Any) -> str:
    return str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, sqlite3.Connection]:
    path = tmp_path_factory.mktemp("plans") / "plans.db"
    engine = database.create_engine(f"sqlite:///{path}")
    import asyncio

    asyncio.run(database.migrate(engine))
    return engine, sqlite3.connect(path)


@pytest.mark.parametrize("name", list(CASES))
def test_sqlite_plan_uses_the_filter_index(name: str, sqlite_db: tuple[Any, sqlite3.Connection]):
    engine, con = sqlite_db
    case = CASES[name]
    plan = [
        row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql_of(engine, case.query(engine)))
    ]
    text = " | ".join(plan)
    assert f"INDEX {case.index} " in text + " ", text
    # "the newest 100" must come from walking the index, not from sorting every match;
    # only the tie-break on id (the right part of the ORDER BY) may need a small sort
    assert ("USE TEMP B-TREE FOR ORDER BY" in text) == case.sorts_all, text


def test_a_whole_table_read_needs_no_sort(sqlite_db: tuple[Any, sqlite3.Connection]):
    engine, con = sqlite_db
    for stmt in (queries.flow_runs_query(engine), queries.task_runs_query(engine)):
        plan = [r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql_of(engine, stmt))]
        assert len(plan) == 1 and plan[0].startswith("SCAN "), plan  # backwards, no B-tree


def test_logs_and_states_filters_use_indexes(sqlite_db: tuple[Any, sqlite3.Connection]):
    from sqlalchemy import select

    from orion_nb.store.models import Log, StateRow

    engine, con = sqlite_db
    for stmt, index in (
        (select(Log.id).where(Log.task_run_id == ID), "ix_logs__task_run_id"),
        (select(Log.id).where(Log.flow_run_id == ID), "ix_logs__flow_run_id"),
        (select(StateRow.id).where(StateRow.run_id == ID), "ix_states__run_id"),
    ):
        plan = " | ".join(r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql_of(engine, stmt)))
        assert index in plan, plan


def test_state_indexes_are_partial(sqlite_db: tuple[Any, sqlite3.Connection]):
    """What keeps them cheap: completed runs, most of any history, are in neither."""
    _engine, con = sqlite_db
    sql = dict(con.execute("SELECT name, sql FROM sqlite_master WHERE name LIKE '%state%'"))
    for table in ("flow_runs", "task_runs"):
        assert sql[f"ix_{table}__state_type_created"].endswith("WHERE state_type != 'COMPLETED'")
        assert sql[f"ix_{table}__state_name_created"].endswith("WHERE state_name != 'Completed'")


@pytest.mark.parametrize(
    "state",
    ["Failed", "FAILED", "Completed", "COMPLETED", ["Failed", "Cached"], ["COMPLETED", "Failed"]],
    ids=str,
)
def test_state_filters_select_exactly_the_runs_in_those_states(state: Any, db_path: Path):
    """The "<> completed" term the state filter adds for the partial indexes never changes
    which runs are selected."""

    @orion_nb.task(cache_key_fn=orion_nb.task_input_hash)
    def ok(x: int) -> int:
        return x

    @orion_nb.task
    def bad() -> None:
        raise ValueError("no")

    @orion_nb.flow
    def mixed() -> None:
        for x in (1, 2, 1):
            ok(x)
        bad.submit().wait()

    mixed()
    everything = orion_nb.task_runs()
    values = [state] if isinstance(state, str) else state
    expected = everything[
        everything["state_type"].astype(str).isin(values)
        | everything["state_name"].astype(str).isin(values)
    ]
    got = orion_nb.task_runs(state=state)
    assert list(got["id"]) == list(expected["id"])
    assert len(got) > 0


def test_declaring_the_indexes_does_not_load_the_postgres_dialect():
    """A Postgres-only index option on the models would import SQLAlchemy's Postgres dialect
    on every SQLite user's first run (about 40 ms of the 0.2 s budget)."""
    import subprocess
    import sys

    code = (
        "import sys, orion_nb.store.models, orion_nb.store.queries, orion_nb.store.writer; "
        "print(sorted(m for m in sys.modules if m.startswith('sqlalchemy.dialects.postgresql')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
