#!/usr/bin/env python3
"""Per-task and per-flow overhead of orion_nb, as ratios against baselines in the same process.

    python benchmarks/overhead.py            # full run (about a minute)
    python benchmarks/overhead.py --quick    # smaller N, a smoke test
    python benchmarks/overhead.py --json out.json

Everything runs with persistence on, against a SQLite file in a fresh temporary
ORION_NB_HOME, with the live view off. Nothing here asserts a time: it measures, compares with
a baseline measured the same way in the same process, and prints the budget from DESIGN.md
next to each figure.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

HOME = Path(tempfile.mkdtemp(prefix="orion-bench-"))
os.environ["ORION_NB_HOME"] = str(HOME)
os.environ.pop("ORION_NB_DATABASE_URL", None)

import orion_nb  # noqa: E402
from orion_nb import flow, task  # noqa: E402
from orion_nb.engine import recorder  # noqa: E402

orion_nb.configure(display="none")

results: dict[str, dict[str, Any]] = {}


def record(
    key: str,
    label: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    budget: str = "",
    ok: bool | None = None,
    note: str = "",
) -> None:
    ratio = value / baseline if baseline else None
    results[key] = {
        "label": label,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "ratio": ratio,
        "budget": budget,
        "ok": ok,
        "note": note,
    }


def plain(x: int) -> int:
    return x + 1


@task
def inc(x: int) -> int:
    return x + 1


def per_call_ns(fn: Any, n: int) -> list[int]:
    pc = time.perf_counter_ns
    out = []
    for i in range(n):
        t0 = pc()
        fn(i)
        out.append(pc() - t0)
    return out


def bench_direct(n: int) -> None:
    @flow
    def direct_flow(count: int) -> list[int]:
        return per_call_ns(inc, count)

    @flow
    def plain_flow(count: int) -> list[int]:
        return per_call_ns(plain, count)

    direct_flow(min(n, 2000))  # warm-up
    t0 = time.perf_counter()
    samples = direct_flow(n)
    total = time.perf_counter() - t0  # includes the commit at the flow's end
    base = plain_flow(n)
    med, base_med = statistics.median(samples) / 1000, statistics.median(base) / 1000
    q = statistics.quantiles(samples, n=100)
    overhead = med - base_med
    record(
        "direct_median_us",
        "direct task call, median (µs)",
        med,
        "µs",
        baseline=base_med,
        budget="overhead ≤ 50 µs (aim 20)",
        ok=overhead <= 50,
        note=f"overhead {overhead:.1f} µs; p90 {q[89] / 1000:.1f}, p99 {q[98] / 1000:.1f} µs",
    )
    record(
        "direct_total_per_task_us",
        "direct call incl. writing its 4 rows (µs/task)",
        total / n * 1e6,
        "µs",
        baseline=base_med,
        note="wall time of the flow incl. the final commit / N",
    )


def bench_submit_map(n: int, map_n: int) -> None:
    with concurrent.futures.ThreadPoolExecutor(orion_nb.ThreadPoolTaskRunner().max_workers) as pool:
        pool.submit(plain, 0).result()
        t0 = time.perf_counter()
        futs = [pool.submit(plain, i) for i in range(n)]
        [f.result() for f in futs]
        tpe = (time.perf_counter() - t0) / n * 1e6

    @flow
    def submit_flow(count: int) -> list[int]:
        futs = [inc.submit(i) for i in range(count)]
        return [f.result() for f in futs]

    @flow
    def map_flow(count: int) -> list[int]:
        return inc.map(range(count)).result()

    submit_flow(200)
    t0 = time.perf_counter()
    submit_flow(n)
    sub = (time.perf_counter() - t0) / n * 1e6
    record(
        "submit_per_task_us",
        ".submit() + .result() per task (µs)",
        sub,
        "µs",
        baseline=tpe,
        note="baseline: ThreadPoolExecutor.submit + result of a plain function",
    )
    map_flow(200)
    t0 = time.perf_counter()
    map_flow(map_n)
    elapsed = time.perf_counter() - t0
    with concurrent.futures.ThreadPoolExecutor(orion_nb.ThreadPoolTaskRunner().max_workers) as pool:
        t1 = time.perf_counter()
        list(pool.map(plain, range(map_n)))
        tpe_map = time.perf_counter() - t1
    record(
        "map_10k_s",
        f".map() over {map_n:,} items incl. commit (s)",
        elapsed,
        "s",
        baseline=tpe_map,
        budget="< 1 s for 10,000",
        ok=elapsed < 1.0 if map_n >= 10_000 else None,
        note="baseline: ThreadPoolExecutor.map",
    )


def bench_flow(m: int) -> None:
    @flow
    def empty() -> int:
        return 1

    empty()
    times = []
    for _ in range(m):
        t0 = time.perf_counter_ns()
        empty()
        times.append(time.perf_counter_ns() - t0)
    base = per_call_ns(plain, m)
    med = statistics.median(times) / 1e6
    record(
        "flow_run_ms",
        "empty flow run incl. its commit, median (ms)",
        med,
        "ms",
        baseline=statistics.median(base) / 1e6,
        budget="< 1 ms (aim 0.5)",
        ok=med < 1.0,
        note=f"mean {statistics.mean(times) / 1e6:.3f} ms",
    )


COLD = textwrap.dedent(
    """
    import time, sys
    t0 = time.perf_counter()
    import orion_nb
    t1 = time.perf_counter()
    heavy = [m for m in ("pandas", "sqlalchemy", "plotly", "ipywidgets", "anywidget") if m in sys.modules]
    orion_nb.configure(display="none")
    @orion_nb.flow
    def first():
        return 1
    first()
    t2 = time.perf_counter()
    print(t1 - t0, t2 - t1, ",".join(heavy) or "-")
    """
)


def bench_cold() -> None:
    home = Path(tempfile.mkdtemp(prefix="orion-bench-cold-"))
    env = {**os.environ, "ORION_NB_HOME": str(home)}
    base_t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    interp = time.perf_counter() - base_t0
    for label, key in (
        ("new database", "cold_new_db_s"),
        ("existing database", "cold_existing_db_s"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", COLD], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        imp, first, heavy = float(out[0]), float(out[1]), out[2]
        record(
            key,
            f"import + first flow run, {label} (s)",
            imp + first,
            "s",
            budget="< 0.5 s (aim 0.3)",
            ok=imp + first < 0.5,
            note=f"import {imp:.3f} s, first flow {first:.3f} s; interpreter start {interp:.3f} s not counted",
        )
        record(
            "heavy_modules_at_import",
            "heavy modules after `import orion_nb`",
            0.0 if heavy == "-" else float(len(heavy.split(","))),
            "",
            budget="none",
            ok=heavy == "-",
            note=heavy,
        )


def bench_memory(n: int) -> None:
    @task
    def blob(i: int) -> bytes:
        return bytes(100_000)

    @flow
    def many(count: int) -> int:
        for i in range(count):
            blob(i)
        return count

    gc.collect()
    tracemalloc.start()
    many(n)
    recorder.flush()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = n * 100_000
    record(
        "memory_peak_mb",
        f"peak memory over {n:,} task runs returning 100 KB each (MB)",
        peak / 1e6,
        "MB",
        baseline=kept / 1e6,
        budget="results not kept alive",
        ok=peak < kept / 10,
        note="baseline: what keeping every result would cost",
    )


def bench_history(rows: int) -> None:
    from orion_nb.engine.params import new_id
    from orion_nb.store.writer import Writer

    db = HOME / "history.db"
    w = Writer(f"sqlite:///{db}").start()
    fid = new_id()
    now = time.time()
    w.put(("flow", fid, "big", "big-run", {}, (), None, None, "bench", os.getpid(), now))
    t0 = time.perf_counter()
    for i in range(rows):
        rid = new_id()
        w.put(("task", rid, fid, "t", "bench.t", str(i), f"t-{i}", (), now))
        w.put(("state", rid, "task", "PENDING", "Pending", now, None, None, 0))
        w.put(("state", rid, "task", "RUNNING", "Running", now, None, None, 1))
        w.put(("state", rid, "task", "COMPLETED", "Completed", now + 0.001, None, None, 1))
        if i % 50_000 == 0:
            w.flush()
    w.flush()
    write_s = time.perf_counter() - t0
    w.close()
    orion_nb.configure(database_url=f"sqlite:///{db}")
    t1 = time.perf_counter()
    df = orion_nb.task_runs()
    load_s = time.perf_counter() - t1
    orion_nb.configure(database_url=f"sqlite:///{HOME / 'orion.db'}")
    assert len(df) == rows
    record(
        "history_load_s",
        f"task_runs() of {rows:,} rows into a DataFrame (s)",
        load_s,
        "s",
        budget="a million in seconds",
        ok=load_s < 10,
        note=f"{rows / load_s:,.0f} rows/s; writing them: {write_s:.1f} s ({rows / write_s:,.0f} task runs/s)",
    )


def prefect_figures() -> None:
    try:
        import prefect  # noqa: F401
    except ImportError:
        results["prefect"] = {
            "label": "Prefect (quoted, not measured here)",
            "note": "Prefect 3.8 measured on this machine by the issue's author: ~6 ms per task run in the calling process (+~30 ms CPU in its server), ~1.1 s per short sync flow run, 15-18 s to the first flow run; Prefect 2.20: ~100 ms per task run, 250 ms per flow run.",
        }
        return
    results["prefect"] = {
        "label": "Prefect is installed",
        "note": "side-by-side run not implemented in this script",
    }


def show() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="orion_nb overhead (this process, SQLite file, persistence on)", title_justify="left"
    )
    for col in ("measurement", "value", "baseline", "ratio", "budget", "", "notes"):
        table.add_column(col, overflow="fold")
    for r in results.values():
        if "value" not in r:
            continue
        mark = "" if r["ok"] is None else ("[green]✓[/]" if r["ok"] else "[red]✗[/]")
        base = "" if r["baseline"] is None else f"{r['baseline']:.3g}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        table.add_row(
            r["label"], f"{r['value']:.3g} {r['unit']}", base, ratio, r["budget"], mark, r["note"]
        )
    Console().print(table)
    if "prefect" in results:
        Console().print(f"[dim]{results['prefect']['label']}: {results['prefect']['note']}[/]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small N: a smoke test of the benchmark itself"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args()
    q = args.quick
    bench_direct(2_000 if q else 20_000)
    bench_submit_map(1_000 if q else 10_000, 2_000 if q else 10_000)
    bench_flow(50 if q else 500)
    bench_cold()
    bench_memory(2_000 if q else 100_000)
    bench_history(20_000 if q else 1_000_000)
    prefect_figures()
    show()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
