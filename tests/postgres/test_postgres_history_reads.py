"""History reads on a real PostgreSQL server: columnar reads (ADBC's libpq driver) give the
row path's frames, every filter has its index (EXPLAIN), and the tag index follows writes.

Uses the per-test database of ``test_postgres_store.py`` (``pg_url``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import orion_nb
from orion_nb.engine import recorder
from orion_nb.store import columnar, queries
from tests.history_data import assert_same_frame, record_history
from tests.postgres.test_postgres_store import pg_url
from tests.test_columnar import READS, both_paths
from tests.test_query_plans import CASES, ID, sql_of

pytestmark = pytest.mark.postgres
pytest.importorskip("adbc_driver_postgresql")  # the `arrow` extra, installed with `test`

__all__ = ["pg_url"]  # the fixture, imported from the store's Postgres tests


@pytest.fixture
def pg_history(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(queries, "COLUMNAR_MIN_LIMIT", 0)
    record_history(n_plain=1_100)
    yield pg_url
    columnar.close_all()  # before the database is dropped


def _engine() -> Any:
    writer = recorder.get_writer()
    assert writer is not None and writer.engine is not None
    writer.flush()
    return writer.engine


async def _execute(url: str, *sql: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        out: list[Any] = []
        for statement in sql:
            out = await conn.fetch(statement)
        return out
    finally:
        await conn.close()


def test_missing_run_ids_are_missing_not_the_text_nan(pg_url: str, monkeypatch: pytest.MonkeyPatch):
    """A top-level flow run has no parent task run: on Postgres the row path used to give
    the id "nan" (str() of the NaN pandas put there)."""

    @orion_nb.flow
    def inner() -> int:
        return 1

    @orion_nb.flow
    def outer() -> int:
        return inner()

    outer()
    for columnar_enabled in (False, True):
        monkeypatch.setattr(queries, "columnar_enabled", columnar_enabled)
        monkeypatch.setattr(queries, "COLUMNAR_MIN_LIMIT", 0)
        df = orion_nb.flow_runs().set_index("flow_name")
        assert df["parent_task_run_id"].isna().tolist() == [False, True], df.index.tolist()
        assert "nan" not in df["parent_task_run_id"].astype(object).tolist()
    columnar.close_all()


def test_columnar_frames_equal_the_row_path_on_postgres(
    pg_history: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    for name, read in READS.items():
        arrow, rows = both_paths(read, caplog, monkeypatch)
        try:
            assert_same_frame(arrow, rows)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


def test_pyarrow_backend_is_the_same_from_rows_and_from_arrow_on_postgres(
    pg_history: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    for fn in (orion_nb.flow_runs, orion_nb.task_runs, orion_nb.states, orion_nb.logs):
        arrow, rows = both_paths(lambda fn=fn: fn(dtype_backend="pyarrow"), caplog, monkeypatch)
        assert_same_frame(arrow, rows)


def test_a_dropped_columnar_connection_is_replaced(
    pg_history: str, caplog: pytest.LogCaptureFixture
):
    before = orion_nb.task_runs()
    # the server ends every connection but ours: the kept ADBC connection is gone
    asyncio.run(
        _execute(
            pg_history,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
    )
    with caplog.at_level(logging.DEBUG, logger="orion_nb.store"):
        after = orion_nb.task_runs()
    messages = [r.getMessage() for r in caplog.records]
    assert any("reconnecting" in m for m in messages), messages
    assert any(m.endswith(" as Arrow") for m in messages), messages
    assert_same_frame(before, after)


@pytest.mark.parametrize("name", list(CASES))
def test_postgres_plan_uses_the_filter_index(name: str, pg_url: str):
    """With sequential scans priced out (the tables are tiny here), the planner must find
    an index that answers the filter."""
    orion_nb.flow_runs()  # creates the schema
    engine = _engine()
    sql = sql_of(engine, CASES[name].query(engine))
    rows = asyncio.run(_execute(pg_url, "SET enable_seqscan = off", "EXPLAIN " + sql))
    plan = "\n".join(r[0] for r in rows)
    assert CASES[name].index in plan, plan


def test_tags_deployment_and_until_filters_on_postgres(pg_url: str):
    orion_nb.flow_runs()
    engine = _engine()
    asyncio.run(
        _execute(
            pg_url,
            "INSERT INTO flow_runs (id, flow_name, name, parameters, created, run_count, tags, "
            "deployment_id) VALUES "
            f"('{ID}', 'f', 'a', '{{}}', '2026-01-01 00:00:00+00', 0, '[\"x\", \"y\", 3]', NULL),"
            "('01a217d0-0c06-777f-85af-964e76b8f401', 'f', 'b', '{}', '2026-01-02 00:00:00+00', "
            f"0, '[\"y\"]', '{ID}')",
        )
    )

    def names(**kw: Any) -> list[str]:
        writer = recorder.get_writer()
        assert writer is not None
        return list(writer._lt.run(queries.flow_runs(engine, **kw))["name"])

    assert names(tags="y") == ["b", "a"]
    assert names(tags=["x", "y"]) == ["a"]
    assert names(tags="3") == []  # only strings are tags
    assert names(deployment_id=ID) == ["b"]
    from datetime import UTC, datetime

    assert names(until=datetime(2026, 1, 2, tzinfo=UTC)) == ["a"]
    rows = asyncio.run(
        _execute(
            pg_url,
            f"UPDATE flow_runs SET tags = '[\"z\"]' WHERE id = '{ID}'",
            "DELETE FROM flow_runs WHERE name = 'b'",
            "SELECT flow_run_id::text, tag FROM flow_run_tags ORDER BY 1, 2",
        )
    )
    assert [tuple(r) for r in rows] == [(ID, "z")]
