#!/usr/bin/env python3
"""Overhead of orion_nb, as ratios against baselines measured in the same process.

    python benchmarks/overhead.py                  # full run (about two minutes on 2 cores)
    python benchmarks/overhead.py --quick          # small N: a smoke test (< 20 s)
    python benchmarks/overhead.py --json out.json  # also write every figure as JSON
    python benchmarks/overhead.py --only task,flow # a subset of the sections

Sections: ``task`` (direct call, .submit(), .map()), ``flow`` (empty flow runs), ``cold``
(import + first flow run in a fresh interpreter), ``memory`` (100,000 task runs returning
100 KB each), ``history`` (task_runs() of a million rows), ``prefect`` (side by side if Prefect
is importable, else the figures quoted in the issue, labelled as quoted).

Everything runs with persistence on, against a SQLite file in a fresh temporary ORION_NB_HOME,
with the live view off (``configure(display="none")``). Nothing here asserts a time: each figure
is printed next to a baseline measured the same way in the same process, their ratio, and the
budget from DESIGN.md ("Performance budget") and the issue, with a pass/miss mark.
See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import gc
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

# A fresh home before orion_nb reads its settings; nothing from the caller's environment may
# redirect the runs (another database, persistence off, a live view).
HOME = Path(tempfile.mkdtemp(prefix="orion-bench-"))
atexit.register(shutil.rmtree, HOME, ignore_errors=True)  # runs after the writer's own close
for _var in ("ORION_NB_DATABASE_URL", "ORION_NB_PERSIST", "ORION_NB_DISPLAY"):
    os.environ.pop(_var, None)
os.environ["ORION_NB_HOME"] = str(HOME)

import history_queries  # noqa: E402 - benchmarks/history_queries.py, next to this file

import orion_nb  # noqa: E402
from orion_nb import flow, task  # noqa: E402
from orion_nb.engine import recorder  # noqa: E402
from orion_nb.errors import OrionNBWarning  # noqa: E402

orion_nb.configure(display="none")
# a failed history write would make every figure meaningless: stop instead of retrying
warnings.simplefilter("error", OrionNBWarning)

SECTIONS = ("task", "flow", "cold", "memory", "history", "prefect")
TITLES = {
    "task": "per task run",
    "flow": "per flow run",
    "cold": "cold start (fresh interpreter)",
    "memory": "memory",
    "history": "history",
    "prefect": "Prefect side by side",
}

# Keys every full or quick run writes (the smoke test checks them; see README.md).
EXPECTED_KEYS = (
    "direct_median_us",
    "direct_p90_us",
    "direct_p99_us",
    "direct_overhead_us",
    "direct_ratio",
    "direct_total_per_task_us",
    "direct_flush_ms",
    "submit_per_task_us",
    "map_10k_s",
    "map_10k_incl_commit_s",
    "flow_run_ms",
    "flow_run_mean_ms",
    "cold_new_db_s",
    "cold_existing_db_s",
    "cold_import_s",
    "cold_store_import_s",
    "heavy_modules_at_import",
    "memory_peak_mb",
    "memory_results_alive",
    "memory_backlog_peak_mb",
    "memory_rss_growth_mb",
    "history_write_task_runs_per_s",
    "history_load_s",
    "history_load_pyarrow_s",
    "history_flow_runs_by_name_ms",
    "history_task_runs_failed_ms",
    "history_task_runs_crashed_ms",
    "prefect",
)

QUOTED_PREFECT = (
    "Prefect 3.8 measured here: ~6 ms per task run in the calling process, ~1.1 s per short "
    "sync flow run, 15-18 s to the first flow run; Prefect 2.20: ~100 ms per task run, "
    "250 ms per flow run."
)

results: dict[str, dict[str, Any]] = {}
_section = ""


def record(
    key: str,
    label: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    budget: str = "",
    ok: bool | None = None,
    aim_ok: bool | None = None,
    ratio: bool = True,
    note: str = "",
    **extra: Any,
) -> None:
    """Store one measurement (``ok``: the budget is met; ``aim_ok``: the aim is met too)."""
    results[key] = {
        "section": _section,
        "label": label,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "ratio": value / baseline if (ratio and baseline) else None,
        "budget": budget,
        "ok": ok,
        "aim_ok": aim_ok,
        "note": note,
        **extra,
    }


# -- helpers ------------------------------------------------------------------------------------
def plain(x: int) -> int:
    return x + 1


@task
def inc(x: int) -> int:
    return x + 1


def per_call_ns(fn: Callable[[int], Any], n: int) -> list[int]:
    """Wall time of each of ``n`` calls, taken with perf_counter_ns around the call."""
    pc = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        t0 = pc()
        fn(i)
        out[i] = pc() - t0
    return out


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def settle() -> None:
    """Let the writer catch up and collect garbage, so one section does not bill the next."""
    recorder.flush()
    gc.collect()


def tpe_submit_result(pool: concurrent.futures.ThreadPoolExecutor, n: int) -> float:
    """Seconds for ``n`` ThreadPoolExecutor.submit(plain) then .result() on each."""
    t0 = time.perf_counter()
    futs = [pool.submit(plain, i) for i in range(n)]
    for f in futs:
        f.result()
    return time.perf_counter() - t0


def child_env(home: Path) -> dict[str, str]:
    """The environment of a child interpreter, as an installed orion_nb would run: with its
    bytecode cached (a caller's PYTHONDONTWRITEBYTECODE would make every cold start compile
    orion_nb's sources again, ~0.1 s that no installed copy pays)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ORION_NB_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["ORION_NB_HOME"] = str(home)
    return env


def run_child(
    code: str, env: dict[str, str], timeout: float = 600, python: str = sys.executable
) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    res = subprocess.run(
        [python, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )
    if res.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- 1. per task run ----------------------------------------------------------------------------
def bench_direct(n: int, rounds: int) -> None:
    """Direct calls of a trivial task inside a flow, timed one by one, against a plain call."""

    @flow
    def direct_calls(count: int) -> list[int]:
        return per_call_ns(inc, count)

    @flow
    def plain_calls(count: int) -> list[int]:
        return per_call_ns(plain, count)

    direct_calls(min(n, 2_000))  # warm-up: writer started, code paths hot
    plain_calls(min(n, 2_000))
    settle()
    task_ns: list[int] = []
    plain_ns: list[int] = []
    per_round = max(1, n // rounds)
    for _ in range(rounds):  # interleaved, so drift (CPU frequency, neighbours) hits both
        task_ns += direct_calls(per_round)
        plain_ns += plain_calls(per_round)
        settle()
    med, p90, p99 = (pct(task_ns, q) / 1000 for q in (50, 90, 99))
    bmed, bp90, bp99 = (pct(plain_ns, q) / 1000 for q in (50, 90, 99))
    overhead = med - bmed
    count = f"{len(task_ns):,} calls in {rounds} flow runs"
    record(
        "direct_median_us",
        "direct task call in a flow, median",
        med,
        "µs",
        baseline=bmed,
        note=f"{count}; baseline: plain function call timed the same way",
    )
    record("direct_p90_us", "direct task call, p90", p90, "µs", baseline=bp90, note=count)
    record(
        "direct_p99_us",
        "direct task call, p99",
        p99,
        "µs",
        baseline=bp99,
        note=f"{count}; the tail includes GIL hand-offs to the writer thread",
    )
    record(
        "direct_overhead_us",
        "direct call overhead (median - plain median)",
        overhead,
        "µs",
        ratio=False,
        budget="≤ 50 µs (aim 20)",
        ok=overhead <= 50,
        aim_ok=overhead <= 20,
    )
    record(
        "direct_ratio",
        "direct call median ÷ plain call median",
        med / bmed,
        "x",
        ratio=False,
        budget="≤ 100x (DESIGN)",
        ok=med / bmed <= 100,
        note=f"100x of this baseline is {100 * bmed:.0f} µs",
    )

    @flow
    def loop(count: int) -> float:
        t0 = time.perf_counter()
        for i in range(count):
            inc(i)
        return time.perf_counter() - t0

    def plain_loop(count: int) -> float:
        t0 = time.perf_counter()
        for i in range(count):
            plain(i)
        return time.perf_counter() - t0

    runs = []
    for _ in range(3):
        settle()
        t0 = time.perf_counter()
        body = loop(n)
        runs.append((time.perf_counter() - t0, body))  # incl. committing what the flow recorded
    total, body = sorted(runs)[1]  # the median run
    base = plain_loop(n)
    record(
        "direct_total_per_task_us",
        "per task incl. writing (flow of N calls + commit) ÷ N",
        total / n * 1e6,
        "µs",
        baseline=base / n * 1e6,
        note=(
            f"N={n:,}, median of 3 flow runs (min {min(runs)[0] / n * 1e6:.1f}, max "
            f"{max(runs)[0] / n * 1e6:.1f} µs); body alone {body / n * 1e6:.1f} µs/task; "
            "baseline: plain loop ÷ N"
        ),
    )
    record(
        "direct_flush_ms",
        "  of which: waiting for the writer at the flow's end",
        (total - body) * 1e3,
        "ms",
        ratio=False,
        note=f"{(total - body) / n * 1e6:.1f} µs per task run written after the body ended",
    )


def bench_submit_map(n: int, map_n: int, repeats: int) -> None:
    """.submit() + .result() and .map() + .result(), against the stdlib thread pool."""
    workers = orion_nb.ThreadPoolTaskRunner().max_workers

    @flow
    def submit_flow(count: int) -> float:
        t0 = time.perf_counter()
        futs = [inc.submit(i) for i in range(count)]
        for f in futs:
            f.result()
        return time.perf_counter() - t0

    @flow
    def map_flow(count: int) -> float:
        t0 = time.perf_counter()
        inc.map(range(count)).result()
        return time.perf_counter() - t0

    submit_flow(500)  # warm-up: the runner's threads exist
    map_flow(500)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        tpe_submit_result(pool, 500)
        sub_body, sub_total, tpe_sub, map_body, map_total, tpe_map = [], [], [], [], [], []
        for _ in range(repeats):
            settle()
            t0 = time.perf_counter()
            sub_body.append(submit_flow(n))
            sub_total.append(time.perf_counter() - t0)
            tpe_sub.append(tpe_submit_result(pool, n))
            settle()
            t0 = time.perf_counter()
            map_body.append(map_flow(map_n))
            map_total.append(time.perf_counter() - t0)
            tpe_map.append(tpe_submit_result(pool, map_n))
    med = statistics.median
    rep = f"median of {repeats}" if repeats > 1 else "1 run"
    record(
        "submit_per_task_us",
        f".submit() + .result(), {n:,} tasks, per task",
        med(sub_body) / n * 1e6,
        "µs",
        baseline=med(tpe_sub) / n * 1e6,
        note=(
            f"{rep}; {n / med(sub_body):,.0f} tasks/s; incl. the flow's commit "
            f"{med(sub_total) / n * 1e6:.1f} µs; "
            f"baseline: ThreadPoolExecutor({workers}) submit + result"
        ),
    )
    full = map_n >= 10_000
    spread = f"; min {min(map_body):.3f}, max {max(map_body):.3f} s" if repeats > 1 else ""
    record(
        "map_10k_s",
        f".map() over {map_n:,} items + .result()",
        med(map_body),
        "s",
        baseline=med(tpe_map),
        budget="< 1 s for 10,000",
        ok=med(map_body) < 1.0 if full else None,
        note=f"{rep}{spread}; baseline: ThreadPoolExecutor submit + result",
    )
    record(
        "map_10k_incl_commit_s",
        f"  the same flow run incl. its commit ({map_n:,})",
        med(map_total),
        "s",
        baseline=med(tpe_map),
        budget="< 1 s for 10,000",
        ok=med(map_total) < 1.0 if full else None,
        note="what the cell takes: the flow returns when its history is committed",
    )


# -- 2. per flow run ----------------------------------------------------------------------------
def bench_flow(m: int) -> None:
    @flow
    def empty() -> None:
        return None

    empty()  # warm-up
    settle()
    pc = time.perf_counter_ns
    times = []
    for _ in range(m):
        t0 = pc()
        empty()
        times.append(pc() - t0)
    base = per_call_ns(plain, m)
    bmed = statistics.median(base) / 1e6
    med = statistics.median(times) / 1e6
    mean = statistics.mean(times) / 1e6
    record(
        "flow_run_ms",
        "empty flow run incl. its commit, median",
        med,
        "ms",
        baseline=bmed,
        budget="< 1 ms (aim 0.5)",
        ok=med < 1.0,
        aim_ok=med < 0.5,
        note=f"{m:,} runs; p90 {pct(times, 90) / 1e6:.3f} ms; baseline: plain function call",
    )
    record(
        "flow_run_mean_ms",
        "empty flow run incl. its commit, mean",
        mean,
        "ms",
        baseline=statistics.mean(base) / 1e6,
        budget="< 1 ms (aim 0.5)",
        ok=mean < 1.0,
        aim_ok=mean < 0.5,
        note=f"max {max(times) / 1e6:.2f} ms",
    )


# -- 3. cold start ------------------------------------------------------------------------------
COLD = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import orion_nb
    t1 = time.perf_counter()
    heavy = [m for m in ("pandas", "sqlalchemy", "plotly", "ipywidgets", "anywidget")
             if m in sys.modules]
    n_import = len(sys.modules)
    orion_nb.configure(display="none")

    @orion_nb.flow
    def first():
        return 1

    first()
    t2 = time.perf_counter()
    print(json.dumps({"import": t1 - t0, "first": t2 - t1, "heavy": heavy,
                      "modules_import": n_import, "modules_first": len(sys.modules)}))
    """
)

COLD_STORE = textwrap.dedent(
    """
    import json, time
    import orion_nb
    t0 = time.perf_counter()
    import orion_nb.store.writer
    print(json.dumps({"store": time.perf_counter() - t0}))
    """
)


def bench_cold(repeats: int) -> None:
    """import orion_nb and the first flow run in a fresh interpreter, new and existing db."""
    homes: list[Path] = []
    try:
        interp = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            interp.append(time.perf_counter() - t0)
        new, existing, store = [], [], []
        warm = Path(tempfile.mkdtemp(prefix="orion-bench-cold-"))
        homes.append(warm)
        run_child(COLD, child_env(warm))  # writes the bytecode caches, as an install would
        for _ in range(repeats):
            home = Path(tempfile.mkdtemp(prefix="orion-bench-cold-"))
            homes.append(home)
            new.append(run_child(COLD, child_env(home)))  # creates the database
            existing.append(run_child(COLD, child_env(home)))  # opens it
            store.append(run_child(COLD_STORE, child_env(home))["store"])
    finally:
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)
    med = statistics.median
    base = med(interp)
    rep = f"median of {repeats}" if repeats > 1 else "1 run"
    for key, label, runs in (
        ("cold_new_db_s", "import + first flow run, new database", new),
        ("cold_existing_db_s", "import + first flow run, existing database", existing),
    ):
        tot = med([r["import"] + r["first"] for r in runs])
        first = med([r["first"] for r in runs])
        imp = med([r["import"] for r in runs])
        record(
            key,
            label,
            tot,
            "s",
            baseline=base,
            budget="< 0.5 s (aim 0.3)",
            ok=tot < 0.5,
            aim_ok=tot < 0.3,
            note=(
                f"{rep}; import {imp:.3f} + first flow {first:.3f} s "
                f"({runs[0]['modules_first'] - runs[0]['modules_import']} modules loaded by it); "
                "baseline: `python -c pass`"
            ),
        )
    imp = med([r["import"] for r in new + existing])
    record(
        "cold_import_s",
        "import orion_nb",
        imp,
        "s",
        baseline=base,
        note=f"{rep}; {new[0]['modules_import']} modules in sys.modules after it",
    )
    record(
        "cold_store_import_s",
        "  importing the store's writer, done by the first run",
        med(store),
        "s",
        baseline=base,
        note=(
            "`import orion_nb.store.writer` after `import orion_nb`; a SQLite writer imports "
            "no SQLAlchemy (its SQL is generated ahead of time: orion_nb/store/gen_sql.py)"
        ),
    )
    heavy = sorted({m for r in new + existing for m in r["heavy"]})
    record(
        "heavy_modules_at_import",
        "heavy modules in sys.modules after `import orion_nb`",
        float(len(heavy)),
        "",
        ratio=False,
        budget="none",
        ok=not heavy,
        note=",".join(heavy) or "-",
    )


# -- 4. memory ----------------------------------------------------------------------------------
MEMORY = textwrap.dedent(
    """
    import gc, json, resource, sys, time, tracemalloc, warnings
    import orion_nb
    from orion_nb import flow, task
    from orion_nb.engine import recorder
    from orion_nb.errors import OrionNBWarning

    orion_nb.configure(display="none")
    warnings.simplefilter("error", OrionNBWarning)
    N, SIZE, MODE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    alive = [0]

    class Blob(bytes):
        # a bytes object that counts how many of its kind are alive
        __slots__ = ()

        def __new__(cls, n):
            alive[0] += 1
            return super().__new__(cls, n)

        def __del__(self):
            alive[0] -= 1

    make = bytes if MODE == "trace" else Blob

    @task
    def tiny(i):
        return make(SIZE)

    out = {"max_alive": 0}

    @flow
    def many(count):
        most = 0
        for i in range(count):
            tiny(i)  # the caller does not keep the result
            if alive[0] > most:
                most = alive[0]
        w = recorder.get_writer()
        out["backlog"] = len(w.queue) + len(getattr(w, "_pending_batch", ()))
        out["max_alive"] = most

    many(100)  # warm-up: writer started, code paths hot
    recorder.flush()
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if MODE == "trace":
        tracemalloc.start()
    t0 = time.perf_counter()
    many(N)
    out["elapsed"] = time.perf_counter() - t0
    if MODE == "trace":
        out["current"], out["peak"] = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    out["rss_growth"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
    out["alive_after"] = alive[0]
    print(json.dumps(out))
    """
)


def bench_memory(n: int, size: int = 100_000) -> None:
    """A flow of n direct task calls returning `size` bytes each, the results dropped at once.

    Two fresh interpreters (so RSS is not inflated by earlier sections): one returns plain
    ``bytes`` under tracemalloc (peak of traced memory); one returns a bytes subclass that
    counts its live instances, without tracemalloc (how many results the engine keeps alive,
    and RSS growth free of tracemalloc's own bookkeeping).
    """
    out = {}
    for mode in ("trace", "count"):
        home = Path(tempfile.mkdtemp(prefix="orion-bench-mem-"))
        try:
            code = f"import sys; sys.argv[1:] = [{n}, {size}, {mode!r}]\n{MEMORY}"
            out[mode] = run_child(code, child_env(home))
        finally:
            shutil.rmtree(home, ignore_errors=True)
    tr, co = out["trace"], out["count"]
    kept = n * size
    record(
        "memory_peak_mb",
        f"peak memory, flow of {n:,} task runs returning {size // 1000} KB bytes each",
        tr["peak"] / 1e6,
        "MB",
        baseline=kept / 1e6,
        budget="results not kept alive",
        ok=tr["peak"] < kept / 20,
        note=(
            f"tracemalloc peak; baseline: keeping every result ({kept / 1e9:.1f} GB); "
            f"{tr['current'] / 1e6:.1f} MB still allocated after the run"
        ),
    )
    record(
        "memory_results_alive",
        "  most results alive at once (counted)",
        float(co["max_alive"]),
        "",
        baseline=float(n),
        budget="none",
        ok=co["max_alive"] == 0 and co["alive_after"] == 0,
        note=f"a counting bytes subclass, checked after every call; {co['alive_after']} after the run",
    )
    per_run = (tr["peak"] - co["max_alive"] * size) / n
    record(
        "memory_backlog_peak_mb",
        "  of the peak, not results: engine + writer queue",
        (tr["peak"] - co["max_alive"] * size) / 1e6,
        "MB",
        ratio=False,
        note=(
            f"{per_run:,.0f} B per task run; the writer's queue held {tr['backlog']:,} events "
            "when the body ended"
        ),
    )
    record(
        "memory_rss_growth_mb",
        "  max RSS growth during the flow (no tracemalloc)",
        co["rss_growth"] / 1e6,
        "MB",
        baseline=kept / 1e6,
        note=f"ru_maxrss; {co['elapsed']:.1f} s for the flow (under tracemalloc {tr['elapsed']:.1f} s)",
    )


# -- 5. history ---------------------------------------------------------------------------------
_SQL_UUID = history_queries.SQL_UUID


def raw_driver_seconds(src: Path, dst: Path, chunk: int) -> float:
    """Seconds for plain sqlite3 executemany of exactly the rows the Writer stored in `src`.

    The baseline of the Writer: the same schema (DDL copied from `src`), the same PRAGMAs, the
    same values, one transaction per `chunk` task runs, and none of the Writer's work
    (coalescing transitions, formatting timestamps, the thread hand-off).
    """
    s = sqlite3.connect(src)
    try:
        ddl = [
            r[0]
            for r in s.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                "ORDER BY type = 'index'"
            )
        ]
        tcols = [r[1] for r in s.execute("PRAGMA table_info(task_runs)")]
        scols = [r[1] for r in s.execute("PRAGMA table_info(states)") if r[1] != "id"]
        tasks = s.execute(f"SELECT {', '.join(tcols)} FROM task_runs ORDER BY rowid").fetchall()
        states = s.execute(
            f"SELECT {', '.join(scols)} FROM states WHERE run_kind = 'task' ORDER BY id"
        ).fetchall()
    finally:
        s.close()
    d = sqlite3.connect(dst, isolation_level=None)
    try:
        d.execute("PRAGMA journal_mode=WAL")
        d.execute("PRAGMA synchronous=NORMAL")
        for stmt in ddl:
            d.execute(stmt)
        tsql = f"INSERT INTO task_runs ({', '.join(tcols)}) VALUES ({', '.join('?' * len(tcols))})"
        ssql = f"INSERT INTO states ({', '.join(scols)}) VALUES ({', '.join('?' * len(scols))})"
        per = len(states) / max(1, len(tasks))
        t0 = time.perf_counter()
        for i in range(0, len(tasks), chunk):
            d.execute("BEGIN IMMEDIATE")
            d.executemany(tsql, tasks[i : i + chunk])
            d.executemany(ssql, states[round(i * per) : round((i + chunk) * per)])
            d.execute("COMMIT")
        return time.perf_counter() - t0
    finally:
        d.close()


def bench_history(rows: int, written: int, repeats: int) -> None:
    """task_runs() loading `rows` task runs into a DataFrame.

    The first `written` task runs are recorded by the product's own Writer (a task_runs row and
    three states rows each, exactly as the engine emits them); the rest are copies of those
    task_runs rows with fresh ids, made inside SQLite, because SQLite's own inserts into five
    indexes keyed by random UUIDs would otherwise make the setup take minutes. task_runs()
    reads only the task_runs table.
    """
    from orion_nb.engine.params import new_id
    from orion_nb.store.writer import Writer

    db = HOME / "history.db"
    url = f"sqlite:///{db}"
    w = Writer(url).start()
    base = time.time() - written * 1e-3
    # a flow run per 100 task runs, of 20 flows (what the filtered-query figures look up);
    # one task run in 50 fails
    flow_ids = [new_id() for _ in range(max(1, written // 100))]
    for f, fid in enumerate(flow_ids):
        created = base + f * 0.1
        w.put(("flow", fid, f"flow-{f % 20}", f"run-{f}", {}, (), None, None, "bench", 1, created))
        w.put(("state", fid, "flow", "RUNNING", "Running", created, None, None, 1, None))
    put = w.put
    no_tags: frozenset[str] = frozenset()
    t0 = time.perf_counter()
    for i in range(written):
        rid = new_id()
        ts = base + i * 1e-3
        fid = flow_ids[min(i // 100, len(flow_ids) - 1)]
        put(("task", rid, fid, "step", "bench.step", str(i), f"step-{i}", no_tags, ts))
        put(("state", rid, "task", "PENDING", "Pending", ts, None, None, 0, None))
        put(("state", rid, "task", "RUNNING", "Running", ts + 1e-5, None, None, 1, None))
        # one task run in 50 fails; one in 10,000 crashed (what a search must find unscanned)
        final = (
            ("FAILED", "Failed", "ValueError: x")
            if i % 50 == 49
            else ("CRASHED", "Crashed", "killed")
            if i % 10_000 == 0
            else ("COMPLETED", "Completed", None)
        )
        put(("state", rid, "task", final[0], final[1], ts + 2e-4, final[2], None, 1, None))
        if i % 20_000 == 19_999:
            w.flush()  # the producer waits here, as a flow's end would
    for fid in flow_ids:
        w.put(("state", fid, "flow", "COMPLETED", "Completed", time.time(), None, None, 1, None))
    w.flush()
    write_s = time.perf_counter() - t0
    w.close()
    raw_db = HOME / "raw-baseline.db"
    raw_s = raw_driver_seconds(db, raw_db, 20_000)
    for f in HOME.glob("raw-baseline.db*"):
        f.unlink()

    t1 = time.perf_counter()
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("PRAGMA cache_size=-262144")  # 256 MB: this is setup, not the product
        cols = [r[1] for r in con.execute("PRAGMA table_info(task_runs)") if r[1] != "id"]
        last = con.execute("SELECT max(rowid) FROM task_runs").fetchone()[0]
        copied = 0
        k = 0
        con.execute("BEGIN")
        while copied < rows - written:
            k += 1
            batch = min(written, rows - written - copied)
            select = ", ".join(
                f"{c} || '~{k}'" if c in ("name", "dynamic_key") else c for c in cols
            )
            con.execute(
                f"INSERT INTO task_runs (id, {', '.join(cols)}) "
                f"SELECT {_SQL_UUID}, {select} FROM task_runs WHERE rowid <= ? LIMIT ?",
                (last, batch),
            )
            copied += batch
        con.execute("COMMIT")
        total = con.execute("SELECT count(*) FROM task_runs").fetchone()[0]
    finally:
        con.close()
    copy_s = time.perf_counter() - t1

    history_queries.add_flow_run_copies(db, copies=9)
    orion_nb.configure(database_url=url)
    t2 = time.perf_counter()
    orion_nb.task_runs(limit=1)  # first query: imports pandas, opens the database
    warm_s = time.perf_counter() - t2
    loads, mem = history_queries.load_seconds(orion_nb.task_runs, total, repeats)
    rows_loads, _ = history_queries.load_seconds(orion_nb.task_runs, total, 1, columnar=False)
    arrow_loads, arrow_mem = history_queries.load_seconds(
        lambda: orion_nb.task_runs(dtype_backend="pyarrow"), total, repeats
    )
    if total != rows:
        raise RuntimeError(f"history: expected {rows:,} rows, the database holds {total:,}")
    load_s = statistics.median(loads)
    rep = (
        f"median of {repeats} (min {min(loads):.2f}, max {max(loads):.2f} s)"
        if repeats > 1
        else "1 run"
    )
    record(
        "history_write_task_runs_per_s",
        f"Writer: task runs recorded per second ({written:,}, 4 events each)",
        written / write_s,
        "runs/s",
        baseline=written / raw_s,
        note=(
            f"{write_s:.1f} s; baseline: sqlite3 executemany of the same rows (1 + 3 per run); "
            f"then {rows - written:,} copies made in SQLite in {copy_s:.1f} s (setup)"
        ),
    )
    path = "Arrow (ADBC)" if history_queries.columnar_reads() else "rows (no pyarrow/ADBC)"
    record(
        "history_load_s",
        f"task_runs() of {rows:,} rows into a DataFrame",
        load_s,
        "s",
        baseline=rows_loads[0],
        budget="≤ 1.5 s for a million",
        ok=load_s <= 1.5 if rows >= 1_000_000 else None,
        note=(
            f"{rep}; read as {path}; {rows / load_s:,.0f} rows/s; frame {mem / 1e6:,.0f} MB; "
            f"baseline: the same read through sqlite3 rows (the path without orion_nb[arrow]); "
            f"the first query (pandas import, opening the db) took {warm_s:.2f} s more"
        ),
    )
    record(
        "history_load_pyarrow_s",
        f'task_runs(dtype_backend="pyarrow") of {rows:,} rows',
        statistics.median(arrow_loads),
        "s",
        baseline=load_s,
        note=f"pd.ArrowDtype columns; frame {arrow_mem / 1e6:,.0f} MB; baseline: task_runs()",
    )
    history_queries.bench_filters(record, url, repeats=5 if repeats > 1 else 2)


# -- 6. Prefect ---------------------------------------------------------------------------------
PREFECT = textwrap.dedent(
    """
    import json, statistics, time
    t0 = time.perf_counter()
    from prefect import flow, task
    t_import = time.perf_counter() - t0

    @task
    def inc(x):
        return x + 1

    @flow
    def calls(n):
        out = []
        for i in range(n):
            t = time.perf_counter_ns()
            inc(i)
            out.append(time.perf_counter_ns() - t)
        return out

    @flow
    def empty():
        return None

    t1 = time.perf_counter()
    empty()
    t_first = time.perf_counter() - t1
    calls(5)
    samples = calls(N_CALLS)
    flows = []
    for _ in range(N_FLOWS):
        t = time.perf_counter_ns()
        empty()
        flows.append(time.perf_counter_ns() - t)
    import prefect
    print(json.dumps({"version": prefect.__version__, "import": t_import, "first": t_first,
                      "task_us": statistics.median(samples) / 1000,
                      "flow_ms": statistics.median(flows) / 1e6}))
    """
)


def _quoted_prefect(label: str, extra: str = "") -> None:
    results["prefect"] = {
        "section": "prefect",
        "label": label,
        "measured": False,
        "note": QUOTED_PREFECT + extra,
    }


def _has_prefect(python: str) -> bool:
    if python == sys.executable:
        import importlib.util

        return importlib.util.find_spec("prefect") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('prefect') is None)"
    try:
        return subprocess.run([python, "-c", probe], timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def bench_prefect(quick: bool, python: str) -> None:
    """Prefect's equivalent of (1) and (2) when `python` can import it; else quoted figures.

    Prefect runs in its own interpreter (this one, or another environment's given with
    --prefect-python), with a temporary PREFECT_HOME so its ephemeral server starts clean.
    """
    if not _has_prefect(python):
        _quoted_prefect("Prefect (quoted from the issue, not measured here)")
        return
    if quick:
        _quoted_prefect(
            "Prefect (importable, but not run in --quick mode; quoted figures)",
            " Its first flow run alone takes longer than the whole quick mode.",
        )
        return
    home = Path(tempfile.mkdtemp(prefix="orion-bench-prefect-"))
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_LOGGING_LEVEL": "ERROR",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    code = PREFECT.replace("N_CALLS", "200").replace("N_FLOWS", "20")
    try:
        p = run_child(code, env, timeout=900, python=python)
    except Exception as exc:  # Prefect itself failed to run: say so, keep the quoted figures
        _quoted_prefect(
            "Prefect (importable, but its run failed; quoted figures)",
            f" Error: {str(exc).splitlines()[-1][:300]}",
        )
        return
    finally:
        shutil.rmtree(home, ignore_errors=True)
    version = p["version"]
    results["prefect"] = {
        "section": "prefect",
        "label": f"Prefect {version} measured side by side",
        "measured": True,
        "note": f"ratios are Prefect ÷ orion_nb; interpreter {python}",
        **p,
    }
    ours = {
        k: results[k]["value"]
        for k in ("direct_median_us", "flow_run_ms", "cold_existing_db_s")
        if k in results
    }
    record(
        "prefect_task_us",
        f"Prefect {version}: direct task call in a flow, median",
        p["task_us"],
        "µs",
        baseline=ours.get("direct_median_us"),
        note="200 calls; baseline: orion_nb's direct call median",
    )
    record(
        "prefect_flow_ms",
        f"Prefect {version}: empty flow run, median",
        p["flow_ms"],
        "ms",
        baseline=ours.get("flow_run_ms"),
        note="20 runs; baseline: orion_nb's empty flow run median",
    )
    record(
        "prefect_first_flow_s",
        f"Prefect {version}: import + first flow run",
        p["import"] + p["first"],
        "s",
        baseline=ours.get("cold_existing_db_s"),
        note="in its own process; baseline: orion_nb's import + first flow run",
    )


# -- output -------------------------------------------------------------------------------------
def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return ""
    v = float(f"{v:.3g}") if abs(v) < 1000 else v  # 99.99 shows as 100, not 100.0
    if unit in ("runs/s", "") or abs(v) >= 1000:
        return f"{v:,.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.1f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}" if abs(v) >= 0.01 else f"{v:.2g}"


_TIME_UNITS = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))


def _fmt_with_unit(v: float | None, unit: str) -> str:
    """A value with its unit; times are shown in the unit that reads best (0.08 µs = 80 ns)."""
    if v is None:
        return ""
    scale = dict(_TIME_UNITS).get(unit)
    if scale is not None and v > 0:
        seconds = v * scale
        unit, scale = next(((u, f) for u, f in _TIME_UNITS if seconds >= f), _TIME_UNITS[-1])
        v = seconds / scale
    if unit == "x":
        return _fmt(v, unit) + "x"
    return _fmt(v, unit) + (f" {unit}" if unit else "")


def _ratio(r: float | None) -> str:
    if r is None:
        return ""
    return f"{r:,.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 0.1 else f"{r:.2g}x"


def show(elapsed: float, quick: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    table = Table(
        title=(
            f"orion_nb overhead ({'quick' if quick else 'full'} mode; SQLite file, persistence "
            "on, display none; baselines measured in this process)"
        ),
        title_justify="left",
    )
    table.add_column("measurement", overflow="fold", max_width=46)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("baseline", justify="right", no_wrap=True)
    table.add_column("ratio", justify="right", no_wrap=True)
    table.add_column("budget", overflow="fold", max_width=18)
    table.add_column("", no_wrap=True)
    table.add_column("notes", overflow="fold")
    titles = TITLES
    last = None
    for r in results.values():
        if "value" not in r or "unit" not in r:
            continue
        if r["section"] != last:
            if last is not None:
                table.add_section()
            table.add_row(f"[bold]{titles.get(r['section'], r['section'])}[/]")
            last = r["section"]
        mark = _mark(r)
        if mark:
            color = "red" if "miss" in mark else "yellow" if "aim" in mark else "green"
            mark = f"[{color}]{mark.replace(' (not aim)', '')}[/]"
        unit = r["unit"]
        value = _fmt(r["value"], unit) + (f" {unit}" if unit and unit != "x" else unit)
        table.add_row(
            r["label"],
            value,
            _fmt_with_unit(r["baseline"], unit),
            _ratio(r["ratio"]),
            r["budget"],
            mark,
            r["note"],
        )
    console.print(table)
    console.print(
        "[dim]✓ green: within budget and aim; ✓ yellow: within budget, not the aim; "
        f"✗: budget missed. Total benchmark time {elapsed:.0f} s; load average now "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs.[/]"
    )
    p = results.get("prefect")
    if p is not None and not p.get("measured"):
        console.print(f"[bold]{p['label']}:[/] {p['note']}")


def _mark(r: dict[str, Any]) -> str:
    if r["ok"] is None:
        return ""
    if not r["ok"]:
        return "✗ miss"
    return "✓ pass" if r["aim_ok"] is not False else "✓ pass (not aim)"


def markdown(elapsed: float, quick: bool) -> str:
    """The table as Markdown (for benchmarks/README.md)."""
    lines = [
        "| measurement | value | baseline | ratio | budget | | notes |",
        "|---|--:|--:|--:|---|---|---|",
    ]
    last = None
    for r in results.values():
        if "value" not in r or "unit" not in r:
            continue
        if r["section"] != last:
            last = r["section"]
            lines.append(f"| **{TITLES.get(last, last)}** | | | | | | |")
        unit = r["unit"]
        value = _fmt(r["value"], unit) + (f" {unit}" if unit and unit != "x" else unit)
        cells = [
            r["label"].strip(),
            value,
            _fmt_with_unit(r["baseline"], unit),
            _ratio(r["ratio"]),
            r["budget"],
            _mark(r),
            r["note"],
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    p = results.get("prefect")
    if p is not None and not p.get("measured"):
        lines += ["", f"{p['label']}: {p['note']}"]
    lines += ["", f"{'Quick' if quick else 'Full'} mode, {elapsed:.0f} s in all."]
    return "\n".join(lines) + "\n"


def meta(args: argparse.Namespace, sizes: dict[str, Any], elapsed: float) -> dict[str, Any]:
    commit = ""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except Exception:
        pass
    return {
        "mode": "quick" if args.quick else "full",
        "sections": args.only,
        "sizes": sizes,
        "elapsed_s": elapsed,
        "orion_nb": orion_nb.__version__,
        "commit": commit,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "command": " ".join(["python", "benchmarks/overhead.py", *sys.argv[1:]]),
    }


def main() -> int:
    global _section
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N: a smoke test (< 20 s)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown")
    parser.add_argument(
        "--only",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=list(SECTIONS),
        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})",
    )
    parser.add_argument(
        "--prefect-python",
        default=os.environ.get("ORION_BENCH_PREFECT_PYTHON", sys.executable),
        help="interpreter of an environment with Prefect installed, for the side-by-side "
        "section (default: this one; env ORION_BENCH_PREFECT_PYTHON)",
    )
    args = parser.parse_args()
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    q = args.quick
    sizes = {
        "direct_calls": 2_000 if q else 20_000,
        "direct_rounds": 2 if q else 4,
        "submit": 1_000 if q else 10_000,
        "map": 10_000,
        "submit_map_repeats": 1 if q else 3,
        "flow_runs": 100 if q else 1_000,
        "cold_repeats": 1 if q else 5,
        "memory_task_runs": 5_000 if q else 100_000,
        "history_rows": 100_000 if q else 1_000_000,
        "history_written": 20_000 if q else 100_000,
        "history_repeats": 1 if q else 3,
    }
    started = time.perf_counter()
    try:
        for section in SECTIONS:
            if section not in args.only:
                continue
            _section = section
            if section == "task":
                bench_direct(sizes["direct_calls"], sizes["direct_rounds"])
                bench_submit_map(sizes["submit"], sizes["map"], sizes["submit_map_repeats"])
            elif section == "flow":
                bench_flow(sizes["flow_runs"])
            elif section == "cold":
                bench_cold(sizes["cold_repeats"])
            elif section == "memory":
                bench_memory(sizes["memory_task_runs"])
            elif section == "history":
                bench_history(
                    sizes["history_rows"], sizes["history_written"], sizes["history_repeats"]
                )
            elif section == "prefect":
                bench_prefect(q, args.prefect_python)
            settle()
    finally:
        orion_nb.configure(persist=False)  # flushes and closes the writer before the cleanup
        shutil.rmtree(HOME, ignore_errors=True)
    elapsed = time.perf_counter() - started
    show(elapsed, q)
    if args.markdown:
        args.markdown.write_text(markdown(elapsed, q))
    if args.json:
        data = {**results, "_meta": meta(args, sizes, elapsed)}
        args.json.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    missing = (
        [k for k in EXPECTED_KEYS if k not in results] if set(args.only) >= set(SECTIONS) else []
    )
    if missing:
        print(f"benchmark did not produce: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
