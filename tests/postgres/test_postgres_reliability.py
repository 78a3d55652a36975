"""Nothing lost on a real PostgreSQL server: refused values, many writers, restarts, exactly once.

Each test gets its own database (``pg_url``), created and dropped around it.
"""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from pathlib import Path

import pytest

import orion_nb
from orion_nb import flow, task
from orion_nb._events import flow_event, state_event
from orion_nb.engine.params import new_id
from orion_nb.errors import OrionNBWarning
from orion_nb.store.writer import Writer
from tests.conftest import FLOWS_SCRIPT, child_env, spawn, wait_all
from tests.postgres.test_postgres_store import _pg_ctl, _wait_for_server, pg_url

pytestmark = pytest.mark.postgres
__all__ = ["pg_url"]

SURROGATE = b"caf\xe9.csv".decode("utf-8", "surrogateescape")


async def _fetch(url: str, sql: str) -> list:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def fetch(url: str, sql: str) -> list:
    return asyncio.run(_fetch(url, sql))


def test_nul_surrogates_long_names_and_json_nul_are_all_written(pg_url: str):
    @task(name="t" * 300)
    def t(x):
        orion_nb.get_run_logger().info(f"nul \x00 and {SURROGATE}")
        return x

    @flow(name=f"{'n' * 250}-{SURROGATE}")
    def f(text: str, blob: dict):
        return t(text)

    assert f("a\x00b", {"k\x00": ["\x00", SURROGATE]}) == "a\x00b"

    @flow(name="after")
    def after():
        return 1

    after()
    fr = orion_nb.flow_runs()
    assert len(fr) == 2 and set(fr["state_name"].astype(str)) == {"Completed"}
    row = fr[fr["flow_name"] != "after"].iloc[0]
    assert row["parameters"] == {"text": "a\\x00b", "blob": {"k\\x00": ["\\x00", "caf\\udce9.csv"]}}
    assert len(orion_nb.task_runs().iloc[0]["task_name"]) == 300
    assert orion_nb.logs()["message"].iloc[0] == "nul \\x00 and caf\\udce9.csv"


def test_a_row_postgres_refuses_is_isolated_and_recorded(pg_url: str):
    w = Writer(pg_url, flush_interval=0.01).start()
    try:
        good = new_id()
        now = time.time()
        w.put(flow_event(good, "ok", "ok-run", {}, (), None, None, "h", os.getpid(), now))
        w.put(state_event("not-a-uuid", "flow", "RUNNING", "Running", now, None, None, 1))
        w.put(state_event(good, "flow", "COMPLETED", "Completed", now, None, None, 1))
        with pytest.warns(OrionNBWarning, match="refused a record"):
            w.flush(timeout=30)
    finally:
        w.close()
    assert [r[0] for r in fetch(pg_url, "select state_name from flow_runs")] == ["Completed"]
    states = fetch(pg_url, "select name from states")
    assert [r[0] for r in states] == ["Completed"]
    # the state row and the run update it implies, each replaced by an ERROR entry
    messages = [r[0] for r in fetch(pg_url, "select message from logs where level='ERROR'")]
    assert len(messages) == 2
    assert all("not-a-uuid" in m and "dropped" in m for m in messages)


def test_a_batch_committed_but_not_acknowledged_is_not_written_twice(pg_url: str):
    from orion_nb.store.batches import Batch

    w = Writer(pg_url, flush_interval=0.01).start()
    try:
        rid = new_id()
        rows = [(rid, "task", "RUNNING", "Running", time.time(), None, None)]
        batch = Batch({"states": rows})
        assert w._lt.run(w._target.write(batch)) is True
        # the retry after a lost acknowledgement, or the same batch replayed from a journal
        assert w._lt.run(w._target.write(Batch({"states": rows}, batch.id))) is False
    finally:
        w.close()
    assert len(fetch(pg_url, "select 1 from states")) == 1


@pytest.mark.slow
def test_eight_processes_on_a_fresh_database_all_write_everything(pg_url: str, tmp_path: Path):
    # the fixture's writer has not touched the database: it is fresh
    wait_all(
        [spawn(FLOWS_SCRIPT, child_env(tmp_path / f"h{i}", pg_url), "1", "200") for i in range(8)]
    )
    assert fetch(pg_url, "select count(*) from flow_runs")[0][0] == 8
    assert (
        fetch(pg_url, "select count(*) from task_runs where state_name='Completed'")[0][0] == 1600
    )
    assert fetch(pg_url, "select count(*) from states where run_kind='task'")[0][0] == 1600 * 3


@pytest.mark.slow
def test_postgres_restarted_three_times_mid_flow_writes_every_record_once(pg_url: str):
    @task
    def step(i):
        orion_nb.get_run_logger().info(f"step {i}")
        return i

    @flow(name="through-restarts")
    def long(n):
        out = []
        for i in range(n):
            out.append(step(i))
            time.sleep(0.01)
        return len(out)

    done: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OrionNBWarning)
        import threading

        th = threading.Thread(target=lambda: done.append(long(600)))
        th.start()
        for _ in range(3):
            time.sleep(1.0)
            _pg_ctl("restart")
            _wait_for_server()
        th.join(120)
    assert done == [600]
    fr = orion_nb.flow_runs()
    assert list(fr["state_name"].astype(str)) == ["Completed"]
    assert fetch(pg_url, "select count(*) from task_runs where state_name='Completed'")[0][0] == 600
    assert fetch(pg_url, "select count(*) from states where run_kind='task'")[0][0] == 1800
    assert fetch(pg_url, "select count(*) from logs")[0][0] == 600
    dupes = fetch(pg_url, "select message, count(*) from logs group by message having count(*) > 1")
    assert dupes == []


def test_a_database_of_another_application_is_refused_untouched(pg_url: str):
    asyncio.run(_admin_in(pg_url, "create table customers (id int)"))
    from orion_nb.errors import ConfigurationError

    orion_nb.configure(database_url=pg_url.replace("postgresql://", "postgres://"))
    with pytest.raises(ConfigurationError, match=r"not an orion_nb history.*customers"):

        @flow
        def f():
            return 1

        f()
    tables = {
        r[0] for r in fetch(pg_url, "select tablename from pg_tables where schemaname='public'")
    }
    assert tables == {"customers"}


async def _admin_in(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
