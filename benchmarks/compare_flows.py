"""The workloads of benchmarks/compare.py for orion_nb and for Prefect 3: the same code.

    python compare_flows.py orion_nb WORKLOAD N
    benchmarks/.venv-prefect/bin/python compare_flows.py prefect WORKLOAD N

Runs one workload in this fresh process and prints one JSON object: ``seconds`` until the
workload's task runs are in the tool's database (polled from the file), ``returned_seconds``
until the workload's call returned (Prefect 3 returns before its task runs are written: they
travel as events to its server). compare.py counts the runs recorded afterwards, again. ``flow`` and ``task`` come from the tool named first; everything else is identical. Each tool records its runs in
its default local set-up (compare.py points ``ORION_NB_HOME`` / ``PREFECT_HOME`` at a fresh
copy of a prepared home): orion_nb in a SQLite file written by its background writer, Prefect
in a SQLite database behind the ephemeral API server it starts by itself. Default display
and logging on both sides.

Workloads: ``cold`` (import + the first flow run, timed from before the import), ``flows``
(N empty flow runs), ``calls`` (a flow calling a task N times, one after the other),
``submit`` (N ``.submit()`` then ``.result()``), ``map`` (``.map()`` over N items), ``retries``
(N flow runs of a task that fails twice, then succeeds; no retry delay).
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # the cold start starts before the tool is imported

import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

TOOL, WORKLOAD, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
if TOOL not in ("orion_nb", "prefect"):
    raise SystemExit(f"tool must be orion_nb or prefect, not {TOOL!r}")
tool: Any = importlib.import_module(TOOL)
flow, task = tool.flow, tool.task


@task
def inc(x: int) -> int:
    return x + 1


@flow
def empty() -> None:
    return None


@flow
def calls(n: int) -> int:
    total = 0
    for i in range(n):
        total += inc(i)
    return total


@flow
def submits(n: int) -> int:
    futures = [inc.submit(i) for i in range(n)]
    return sum(f.result() for f in futures)


@flow
def maps(n: int) -> int:
    return sum(inc.map(range(n)).result())


attempts = {"n": 0}


@task(retries=2, retry_delay_seconds=0)
def flaky() -> int:
    attempts["n"] += 1
    if attempts["n"] % 3 != 0:  # fails twice, then succeeds
        raise ConnectionError("transient")
    return attempts["n"]


@flow
def retrying() -> int:
    return flaky()


WORKLOADS: dict[str, Callable[[], Any]] = {
    "flows": lambda: [empty() for _ in range(N)],
    "calls": lambda: calls(N),
    "submit": lambda: submits(N),
    "map": lambda: maps(N),
    "retries": lambda: [retrying() for _ in range(N)],
    "setup": lambda: None,
}


# where each tool keeps its runs in its default local set-up
DATABASE = {
    "orion_nb": (Path(os.environ.get("ORION_NB_HOME", "~/.orion_nb")), "orion.db", "task_runs"),
    "prefect": (Path(os.environ.get("PREFECT_HOME", "~/.prefect")), "prefect.db", "task_run"),
}[TOOL]


def task_runs_in_database() -> int:
    home, name, table = DATABASE
    path = home.expanduser() / name
    if not path.exists():
        return 0
    con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        con.close()


def wait_until_recorded(expected: int, timeout: float = 300) -> None:
    """Poll the tool's database until it holds ``expected`` task runs: a tool may return
    before its runs are written (Prefect 3 sends task runs as events to its server)."""
    deadline = time.monotonic() + timeout
    while task_runs_in_database() < expected:
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{TOOL}: only {task_runs_in_database()} of {expected} task runs "
                f"were recorded {timeout:.0f} s after the workload returned"
            )
        time.sleep(0.005)


out: dict[str, Any] = {"tool": TOOL, "version": tool.__version__, "workload": WORKLOAD}
if WORKLOAD == "cold":
    empty()
    out["seconds"] = out["returned_seconds"] = time.perf_counter() - T0
elif WORKLOAD in WORKLOADS:
    empty()  # warm: the database is open and current, a server (if any) is up
    before = task_runs_in_database()
    t = time.perf_counter()
    WORKLOADS[WORKLOAD]()
    out["returned_seconds"] = time.perf_counter() - t
    wait_until_recorded(before + (0 if WORKLOAD in ("flows", "setup") else N))
    out["seconds"] = time.perf_counter() - t  # until the task runs are in the database
else:
    raise SystemExit(f"unknown workload {WORKLOAD!r}; use cold or one of {sorted(WORKLOADS)}")
out["self_maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
