#!/usr/bin/env python3
"""Task runners next to the engines they drive, measured in one process.

    python benchmarks/runners.py                  # full run (about three minutes on 2 cores)
    python benchmarks/runners.py --quick          # small N: a smoke test
    python benchmarks/runners.py --json out.json  # also every figure as JSON

Two sections, each printed as a table of medians with the ratio to its baseline:

``trivial``
    1,000 trivial mapped tasks on each runner (threads, processes, Dask), as a flow run that
    maps ``inc`` and gathers the results, next to the raw engine doing the same with a plain
    function in the same process: ``ThreadPoolExecutor.map``, ``ProcessPoolExecutor.map``
    (a pool started per call, as the runner starts one per flow run, same start method),
    and ``Client.map`` + ``gather`` on an already connected client. The orion_nb figure is
    the whole flow run, from call to return (its history committed); the body alone (first
    submission to last result) is in the notes. Target: within 1.5x of the raw engine.
``cpu``
    200 CPU-bound tasks of about 50 ms each (pure Python, so the GIL serialises threads),
    on the thread runner, the process runner (2 processes) and Dask (2 workers with one
    thread each), median of 3 interleaved repeats, with the raw ``ProcessPoolExecutor.map``
    and ``Client.map`` of the same work for comparison. Target: processes and Dask at least
    1.7x faster than threads on this 2-core machine.

Nothing here asserts a time; the machine is shared, so the load average is printed with the
results. Persistence is on (a SQLite file in a temporary ``ORION_NB_HOME``), display off.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

results: dict[str, dict[str, Any]] = {}


def plain(x: int) -> int:
    return x + 1


def spin(n: int) -> int:
    """Pure-Python work: holds the GIL for as long as it runs."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def record(key: str, label: str, value: float, baseline: float | None, note: str = "") -> None:
    results[key] = {
        "label": label,
        "value": value,
        "unit": "s",
        "baseline": baseline,
        "ratio": (value / baseline) if baseline else None,
        "note": note,
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def calibrate(seconds: float) -> int:
    """Iterations of :func:`spin` that take about ``seconds`` here, alone."""
    n = 20_000
    while True:
        dt, _ = timed(lambda n=n: spin(n))
        if dt > 0.02:
            return max(1, int(n * seconds / dt))
        n *= 2


def bench_trivial(n: int, repeats: int, address: str, client: Any) -> None:
    import orion_nb
    from orion_nb import DaskTaskRunner, ProcessPoolTaskRunner, ThreadPoolTaskRunner, flow, task

    @task
    def inc(x: int) -> int:
        return x + 1

    workers = ThreadPoolTaskRunner().max_workers
    ctx = multiprocessing.get_context("forkserver")

    def raw_threads() -> list[int]:
        with concurrent.futures.ThreadPoolExecutor(workers) as ex:
            return list(ex.map(plain, range(n)))

    def raw_processes() -> list[int]:
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
            return list(ex.map(plain, range(n)))

    def raw_dask() -> list[int]:
        return list(client.gather(client.map(plain, range(n), pure=False)))

    runners = {
        "threads": (ThreadPoolTaskRunner(workers), raw_threads, "ThreadPoolExecutor.map"),
        "processes": (ProcessPoolTaskRunner(2), raw_processes, "ProcessPoolExecutor(2).map"),
        "dask": (DaskTaskRunner(address=address), raw_dask, "Client.map + gather"),
    }
    expected = [i + 1 for i in range(n)]
    for name, (runner, raw, raw_label) in runners.items():

        @flow(task_runner=runner, name=f"bench-{name}")
        def mapped(count: int) -> tuple[float, list[int]]:
            t0 = time.perf_counter()
            out = inc.map(range(count)).result()
            return time.perf_counter() - t0, out

        mapped(min(n, 50))  # warm-up: pools, imports, connections
        raw()
        ours, bodies, base = [], [], []
        for _ in range(repeats):  # interleaved: drift hits both
            dt, (body, out) = timed(lambda mapped=mapped: mapped(n))
            assert out == expected
            ours.append(dt)
            bodies.append(body)
            dt, out = timed(raw)
            assert out == expected
            base.append(dt)
        med = statistics.median
        record(
            f"trivial_{name}_s",
            f"{n:,} mapped tasks, {name} runner (whole flow run)",
            med(ours),
            med(base),
            f"median of {repeats}; body {med(bodies):.3f} s "
            f"({med(bodies) / med(base):.2f}x); {med(ours) / n * 1e6:.0f} µs/task; "
            f"baseline: {raw_label}",
        )
    orion_nb.task_runs(limit=1)  # the history is readable


def bench_cpu(count: int, seconds: float, repeats: int, address: str, client: Any) -> None:
    from orion_nb import DaskTaskRunner, ProcessPoolTaskRunner, ThreadPoolTaskRunner, flow, task

    iterations = calibrate(seconds)
    ctx = multiprocessing.get_context("forkserver")

    @task
    def burn(n: int) -> int:
        return spin(n)

    flows = {}
    for name, runner in (
        ("threads", ThreadPoolTaskRunner()),
        ("processes", ProcessPoolTaskRunner(2)),
        ("dask", DaskTaskRunner(address=address)),
    ):

        @flow(task_runner=runner, name=f"cpu-{name}")
        def burning(k: int) -> int:
            return len(burn.map([iterations] * k).result())

        burning(2)  # warm-up
        flows[name] = burning

    def raw_processes() -> int:
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
            return len(list(ex.map(spin, [iterations] * count)))

    def raw_dask() -> int:
        return len(client.gather(client.map(spin, [iterations] * count, pure=False)))

    times: dict[str, list[float]] = {k: [] for k in (*flows, "raw_processes", "raw_dask")}
    for _ in range(repeats):  # interleaved: the machine's load hits every runner alike
        for name, burning in flows.items():
            dt, done = timed(lambda burning=burning: burning(count))
            assert done == count
            times[name].append(dt)
        times["raw_processes"].append(timed(raw_processes)[0])
        times["raw_dask"].append(timed(raw_dask)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    alone = timed(lambda: spin(iterations))[0]
    record(
        "cpu_threads_s",
        f"{count} CPU-bound tasks of ~{seconds * 1000:.0f} ms, thread runner",
        med["threads"],
        count * alone,
        f"median of {repeats}; baseline: the same work in a plain loop (one core)",
    )
    for name, raw_label in (("processes", "ProcessPoolExecutor(2).map"), ("dask", "Client.map")):
        speedup = med["threads"] / med[name]
        raw_speedup = med["threads"] / med[f"raw_{name}"]
        record(
            f"cpu_{name}_s",
            f"{count} CPU-bound tasks, {name} runner (2 workers)",
            med[name],
            med["threads"],
            f"median of {repeats}; {speedup:.2f}x faster than threads (target >= 1.7x); "
            f"raw {raw_label} of the same work: {med[f'raw_{name}']:.3f} s, "
            f"{raw_speedup:.2f}x faster than threads",
        )
        results[f"cpu_{name}_s"]["speedup"] = speedup
        results[f"cpu_{name}_s"]["raw_speedup"] = raw_speedup
        results[f"cpu_{name}_s"]["ok"] = speedup >= 1.7


def table() -> str:
    lines = ["| measurement | value | baseline | ratio | notes |", "|---|---:|---:|---:|---|"]
    for r in results.values():
        base = "" if r["baseline"] is None else f"{r['baseline']:.3f} s"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"| {r['label']} | {r['value']:.3f} s | {base} | {ratio} | {r['note']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N (a smoke test)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="orion-bench-runners-")
    for var in ("ORION_NB_DATABASE_URL", "ORION_NB_PERSIST", "ORION_NB_DISPLAY"):
        os.environ.pop(var, None)
    os.environ["ORION_NB_HOME"] = home
    from distributed import Client, LocalCluster

    import orion_nb

    orion_nb.configure(display="none")
    n, repeats = (100, 1) if args.quick else (1000, 5)
    count, seconds, cpu_repeats = (8, 0.01, 1) if args.quick else (200, 0.05, 3)
    t_start = time.perf_counter()
    try:
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            bench_trivial(n, repeats, cluster.scheduler_address, client)
            bench_cpu(count, seconds, cpu_repeats, cluster.scheduler_address, client)
            from orion_nb.engine.dask_runner import close_clients

            close_clients()  # before the cluster closes: no client tries to reconnect to it
    finally:
        from orion_nb.engine import recorder

        w = recorder.get_writer(start=False)
        if w is not None:
            w.close()
        shutil.rmtree(home, ignore_errors=True)
    print(table())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\n{os.cpu_count()} CPUs, load average {load:.2f}; "
        f"{time.perf_counter() - t_start:.0f} s in all; Python {sys.version.split()[0]}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**results, "load_average": load}, f, indent=2)


if __name__ == "__main__":
    main()
