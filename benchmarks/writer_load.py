#!/usr/bin/env python3
"""Writer throughput and per-row cost, as ratios against raw sqlite3 in the same process.

    python benchmarks/writer_load.py            # 20,000 task runs per round, 3 rounds
    python benchmarks/writer_load.py --n 2000   # quick

Three figures, each the median of the rounds:

- ``writer``: task runs per second through :class:`orion_nb.store.writer.Writer` (events in,
  flush, committed), i.e. the history's bulk path with cleaning, coalescing, batch ids;
- ``raw``: one narrow ``task_runs``-like row and three ``states``-like rows per task run,
  written with ``sqlite3`` ``executemany`` in one transaction into tables without the
  history's indexes: a floor, not the same work (the writer leaves out the three ``states``
  rows of a plain run but writes a 25-column row with its indexes);
- ``engine``: task runs per second of a flow calling a trivial task with persistence on
  (what a user sees), and the same loop calling the plain function, for the overhead.

Nothing here asserts a time; docs/reliability.md quotes the figures with their ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

HOME = Path(tempfile.mkdtemp(prefix="orion-writer-bench-"))
for _var in ("ORION_NB_DATABASE_URL", "ORION_NB_PERSIST", "ORION_NB_DISPLAY"):
    os.environ.pop(_var, None)
os.environ["ORION_NB_HOME"] = str(HOME)

import orion_nb  # noqa: E402
from orion_nb.engine.params import new_id  # noqa: E402
from orion_nb.store.writer import Writer  # noqa: E402

orion_nb.configure(display="none")


def events(n: int) -> list[tuple]:
    flow_id = new_id()
    now = time.time()
    out: list[tuple] = [
        ("flow", flow_id, "bench", "run", {"n": n}, (), None, None, "host", os.getpid(), now)
    ]
    for i in range(n):
        tid = new_id()
        out.append(("task", tid, flow_id, "inc", "inc-key", str(i), f"inc-{i}", (), now))
        for t, name in (("PENDING", "Pending"), ("RUNNING", "Running"), ("COMPLETED", "Completed")):
            out.append(("state", tid, "task", t, name, now, None, None, 1, None))
    out.append(("state", flow_id, "flow", "COMPLETED", "Completed", now, None, None, 1, None))
    return out


def writer_rate(n: int, k: int, url: str | None = None) -> float:
    w = Writer(url or f"sqlite:///{HOME / f'w{k}.db'}", flush_interval=0.05).start()
    evs = events(n)
    w.put(("flush", __import__("concurrent.futures").futures.Future()))  # warm the path
    w.flush()
    t0 = time.perf_counter()
    put = w.put
    for ev in evs:
        put(ev)
    w.flush(timeout=600)
    dt = time.perf_counter() - t0
    w.close()
    return n / dt


def raw_rate(n: int, k: int) -> float:
    con = sqlite3.connect(HOME / f"r{k}.db", isolation_level=None)
    con.execute(
        "create table t (id text primary key, flow text, name text, key text, dyn text, created text, state text)"
    )
    con.execute("create table s (run text, kind text, type text, name text, ts text)")
    rows = [
        (new_id(), "f", "inc", "k", str(i), "2026-01-01 00:00:00.000000", "Completed")
        for i in range(n)
    ]
    states = [
        (r[0], "task", t, t, "2026-01-01 00:00:00.000000") for r in rows for t in ("P", "R", "C")
    ]
    t0 = time.perf_counter()
    con.execute("begin")
    con.executemany("insert into t values (?,?,?,?,?,?,?)", rows)
    con.executemany("insert into s values (?,?,?,?,?)", states)
    con.execute("commit")
    dt = time.perf_counter() - t0
    con.close()
    return n / dt


def engine_rates(n: int) -> tuple[float, float]:
    @orion_nb.task
    def inc(x):
        return x + 1

    def plain(x):
        return x + 1

    @orion_nb.flow
    def many():
        for i in range(n):
            inc(i)

    many()  # warm-up
    t0 = time.perf_counter()
    many()
    with_history = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(n):
        plain(i)
    bare = n / (time.perf_counter() - t0)
    return with_history, bare


def postgres_rates(server_url: str, n: int, rounds: int) -> list[float]:
    """The writer's rate on Postgres, each round in a database of its own (dropped after)."""
    import asyncio

    import asyncpg  # the driver orion_nb uses for Postgres
    from sqlalchemy import make_url

    base = make_url(server_url)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(base.set(drivername="postgresql").render_as_string(False))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    rates = []
    for k in range(rounds):
        name = f"orion_writer_bench_{os.getpid()}_{k}"
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
        try:
            url = base.set(database=name).render_as_string(hide_password=False)
            rates.append(writer_rate(n, k, url))
        finally:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="task runs per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--postgres",
        metavar="URL",
        help="also measure the writer on Postgres, in a database made for the run and dropped "
        "after it (e.g. postgresql://postgres@127.0.0.1:5432/test as the server to use)",
    )
    args = ap.parse_args()
    w = statistics.median(writer_rate(args.n, k) for k in range(args.rounds))
    r = statistics.median(raw_rate(args.n, k) for k in range(args.rounds))
    e, bare = engine_rates(args.n)
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, n={args.n:,}")
    print(f"writer: {w:12,.0f} task runs/s  ({1e6 / w:6.1f} us per task run, 4 events each)")
    print(
        f"raw:    {r:12,.0f} task runs/s  ({1e6 / r:6.1f} us per task run); writer/raw = {r / w:.2f}x the cost"
    )
    print(f"engine: {e:12,.0f} task runs/s  ({1e6 / e:6.1f} us per task run, history on)")
    print(f"plain:  {bare:12,.0f} calls/s; overhead per task run {1e6 / e - 1e6 / bare:.1f} us")
    if args.postgres:
        pg = statistics.median(postgres_rates(args.postgres, args.n, args.rounds))
        print(
            f"postgres writer: {pg:8,.0f} task runs/s  ({1e6 / pg:6.1f} us per task run; every "
            "transition is a row there)"
        )
    orion_nb.configure(persist=False)
    shutil.rmtree(HOME, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
