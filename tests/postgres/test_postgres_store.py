"""The store on a real PostgreSQL server: schema by migration, the batched writer, DataFrames.

Each test module creates its own database and drops it afterwards. Skips on a laptop without
a server; in CI (CI=true) a missing server is a failure.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import orion_nb
from orion_nb import flow, task
from orion_nb.store import database
from tests.conftest import require_or_skip

pytestmark = pytest.mark.postgres

ADMIN_URL = os.environ.get(
    "ORION_NB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://"), timeout=5
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_url(orion_home: Path) -> Iterator[str]:
    name = f"orion_test_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any connection problem means "no server here"
        require_or_skip(False, f"PostgreSQL at {ADMIN_URL} ({type(exc).__name__}: {exc})")
    base = ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    orion_nb.configure(database_url=url)
    try:
        yield url
    finally:
        orion_nb.configure(
            database_url=f"sqlite:///{orion_home / 'orion.db'}"
        )  # closes the PG writer
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_flow_history_round_trip_on_postgres(pg_url: str):
    calls = []

    @task(retries=1, retry_delay_seconds=0)
    def flaky(x):
        calls.append(x)
        if len(calls) == 1:
            raise ConnectionError("first")
        return x

    @task(cache_key_fn=orion_nb.task_input_hash)
    def cached(x):
        return x * 2

    @flow(name="pg-etl")
    def etl(n: int = 3):
        flaky(n)
        orion_nb.get_run_logger().info("running on postgres")
        return cached.map(range(n)).result()

    assert etl(3) == [0, 2, 4]
    assert etl(3) == [0, 2, 4]
    fr = orion_nb.flow_runs()
    assert list(fr["state_name"].astype(str)) == ["Completed", "Completed"]
    assert fr.iloc[0]["parameters"] == {"n": 3}
    assert isinstance(fr["start_time"].dtype, pd.DatetimeTZDtype)
    tr = orion_nb.task_runs()
    assert (tr["state_name"] == "Cached").sum() == 3
    flaky_row = tr[tr["task_name"] == "flaky"].sort_values("created").iloc[0]
    assert flaky_row["run_count"] == 2
    st = orion_nb.states(flaky_row["id"])
    assert "RetryFailedRuns" in set(st["rule"].dropna())
    assert "running on postgres" in set(orion_nb.logs()["message"])
    uuid.UUID(fr.iloc[0]["id"])  # ids are real UUIDs


def test_postgres_schema_uses_native_types(pg_url: str):
    @flow
    def f():
        return 1

    f()

    async def column_types() -> dict[str, str]:
        import asyncpg

        conn = await asyncpg.connect(pg_url)
        try:
            rows = await conn.fetch(
                "select column_name, data_type from information_schema.columns where table_name='flow_runs'"
            )
            version = await conn.fetchval("select version_num from alembic_version")
        finally:
            await conn.close()
        out = {r["column_name"]: r["data_type"] for r in rows}
        out["_version"] = version
        return out

    types = asyncio.run(column_types())
    assert types["id"] == "uuid"
    assert types["start_time"] == "timestamp with time zone"
    assert types["parameters"] == "jsonb"
    assert types["name"] == "text"  # no length limit a long name could exceed
    assert types["_version"] == database.HEAD_REVISION


def _pg_ctl(action: str) -> None:
    import glob
    import subprocess

    versions = sorted(glob.glob("/etc/postgresql/*"))
    require_or_skip(bool(versions), "a local PostgreSQL cluster to stop and start")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", Path(versions[-1]).name, "main", action],
        check=True,
        capture_output=True,
    )


def _wait_for_server(timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(_admin("SELECT 1"))
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_an_outage_loses_nothing_and_does_not_fail_runs(pg_url: str):
    """The server goes away mid-session: runs still complete, records wait, then get written."""
    import warnings

    from orion_nb.errors import OrionNBWarning

    @task
    def step(i):
        return i

    @flow(name="before")
    def before():
        return step(1)

    @flow(name="during")
    def during():
        return [step(i) for i in range(3)]

    before()
    _pg_ctl("stop")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert during() == [0, 1, 2]  # the user's run is not turned into an error
        assert any(
            issubclass(w.category, OrionNBWarning) and "kept in memory" in str(w.message)
            for w in caught
        )
    finally:
        _pg_ctl("start")
        _wait_for_server()
    fr = orion_nb.flow_runs()  # flushes what was kept, then reads
    assert sorted(fr["flow_name"]) == ["before", "during"]
    assert set(fr["state_name"].astype(str)) == {"Completed"}
    assert len(orion_nb.task_runs()) == 4
