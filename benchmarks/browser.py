"""What the history browser costs on a large history: opening it, a deep page, a live poll.

    .venv/bin/python benchmarks/browser.py                 # 100,000 flow runs (~1 min here)
    .venv/bin/python benchmarks/browser.py --runs 2000     # quick (the smoke test)
    .venv/bin/python benchmarks/browser.py --json out.json

A fresh SQLite history in a temporary ORION_NB_HOME gets N flow runs (every 7th failed, a few
tags, three task runs each, one state row per run) written in bulk through the store's own
models, spread over 30 days. Then, in this process, each figure is printed next to a baseline
measured the same way: opening the browser (count, first page with task counts, chart,
filter options) against ``orion_nb.flow_runs()``, the full reload it avoids; a page deep in
the list and the live poll (nothing new, then 10 new runs) against the first page's query.
Nothing is asserted: the figures are for reading.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def populate(n: int) -> None:
    """N flow runs, 3 task runs and one state each, written in bulk through the models."""
    from sqlalchemy import create_engine, insert

    import orion_nb
    from orion_nb.store.models import FlowRun, StateRow, TaskRun

    orion_nb.flow_runs()  # creates the schema through the writer
    url = orion_nb.settings.get_settings().effective_database_url
    engine = create_engine(url)
    rng = random.Random(12)
    now = datetime.now(UTC)
    flows, tasks, states = [], [], []
    for i in range(n):
        created = now - timedelta(seconds=30 * 86400 * i / n)
        failed = i % 7 == 3
        rid = str(uuid.uuid4())
        stype, sname = ("FAILED", "Failed") if failed else ("COMPLETED", "Completed")
        flows.append(
            {
                "id": rid,
                "flow_name": f"flow-{i % 12}",
                "name": f"run-{i}",
                "parameters": {},
                "state_type": stype,
                "state_name": sname,
                "created": created,
                "start_time": created,
                "end_time": created + timedelta(seconds=rng.random() * 60),
                "run_count": 1,
                "tags": ["nightly"] if i % 3 == 0 else [],
            }
        )
        states.append(
            {"run_id": rid, "run_kind": "flow", "type": stype, "name": sname, "timestamp": created}
        )
        for j in range(3):
            tasks.append(
                {
                    "id": str(uuid.uuid4()),
                    "flow_run_id": rid,
                    "task_name": f"step{j}",
                    "task_key": f"step{j}",
                    "dynamic_key": "0",
                    "name": f"step{j}-0",
                    "state_type": "FAILED" if failed and j == 2 else "COMPLETED",
                    "state_name": "Failed" if failed and j == 2 else "Completed",
                    "created": created,
                    "run_count": 1,
                    "tags": [],
                }
            )
    with engine.begin() as conn:
        for table, rows in ((FlowRun, flows), (TaskRun, tasks), (StateRow, states)):
            for k in range(0, len(rows), 20_000):
                conn.execute(insert(table), rows[k : k + 20_000])
    engine.dispose()


def timed(fn: Any, repeat: int = 5) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="orion-bench-browser-"))
    for key in ("ORION_NB_DATABASE_URL", "ORION_NB_PERSIST", "ORION_NB_DISPLAY"):
        os.environ.pop(key, None)
    import orion_nb
    from orion_nb import history
    from orion_nb.notebook.browser import HistoryBrowser
    from orion_nb.store import browse as q
    from orion_nb.store.browse import RunFilter

    orion_nb.configure(home=home, display="none", persist=True)
    t0 = time.perf_counter()
    populate(args.runs)
    print(f"history: {args.runs:,} flow runs written in {time.perf_counter() - t0:.1f} s")

    every = RunFilter()
    figures: dict[str, dict[str, Any]] = {}

    def report(key: str, value: float, baseline: float, what: str, base_what: str) -> None:
        figures[key] = {"value": value, "baseline": baseline, "ratio": value / baseline}
        print(
            f"{what:<44} {value * 1000:9.1f} ms   {base_what:<34} {baseline * 1000:9.1f} ms"
            f"   ratio {value / baseline:6.2f}"
        )

    full = timed(lambda: orion_nb.flow_runs(), repeat=3)
    first_page = timed(lambda: history._read(q.page, f=every, offset=0, limit=200))
    report(
        "browser_open_s",
        timed(HistoryBrowser),
        full,
        "open the browser (all runs)",
        "flow_runs(): full reload",
    )
    report(
        "browser_open_failed_s",
        timed(lambda: HistoryBrowser(state="Failed")),
        full,
        "open the browser (state=Failed)",
        "flow_runs(): full reload",
    )
    report(
        "browser_open_text_s",
        timed(lambda: HistoryBrowser(text="run-99")),
        full,
        "open the browser (text='run-99')",
        "flow_runs(): full reload",
    )
    deep = args.runs - 200
    report(
        "page_deep_s",
        timed(lambda: history._read(q.page, f=every, offset=deep, limit=100)),
        first_page,
        f"a page at row {deep:,}",
        "the first page (200 rows)",
    )
    newest, _, _ = history._read(q.changes, after=0)
    report(
        "poll_idle_s",
        timed(lambda: history._read(q.changes, after=newest), repeat=20),
        first_page,
        "live poll, nothing changed",
        "the first page (200 rows)",
    )

    @orion_nb.flow(name="fresh")
    def fresh() -> None:
        pass

    browser = HistoryBrowser()
    browser.send = lambda *a, **k: None  # type: ignore[method-assign]
    for _ in range(10):
        fresh()
    orion_nb.flow_runs(limit=1)  # flush
    report(
        "poll_10_new_s",
        timed(lambda: browser.poll(newest), repeat=3),
        first_page,
        "live poll, 10 new runs (rows, count, head)",
        "the first page (200 rows)",
    )
    if args.json:
        args.json.write_text(json.dumps({"runs": args.runs, **figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
