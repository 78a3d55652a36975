#!/usr/bin/env python3
"""Instructions per recorded task run, counted by valgrind: figures a noisy machine cannot move.

    python benchmarks/instructions.py              # about five minutes
    python benchmarks/instructions.py --json out.json

Wall-clock figures on a shared 2-core VM move by ±10 % between runs, as much as one change to
the hot path saves. ``valgrind --tool=callgrind`` counts the instructions a process executes
instead: the same code, inputs and hash seed give the same count whatever else the machine
does. Each figure is the difference between a run of 6,000 and one of 2,000 task runs, divided
by 4,000, so start-up and imports cancel out.

Rows:

``flow, recording off`` / ``flow, recording on``
    A ``@flow`` calling a trivial ``@task`` N times, with ``configure(persist=False)`` and with
    the default SQLite history (the flow returns once its rows are committed): the engine's
    cost, and the engine's plus the writer's.
``writer: coalesce`` / ``writer: numbering and parameters`` / ``writer: SQL``
    The writer's stages on the events of N plain task runs (a ``task`` event and three
    ``state`` events each, as the engine emits them), run in one thread: the coalescer
    (:mod:`orion_nb.store.coalesce`), the SQLite target's numbering of transitions and
    statement parameters, and the rest of :meth:`SQLiteTarget.write` (mostly SQLite's own C
    code, which runs without the GIL).

Instructions are not time: a cache miss costs nothing here and a lot on the machine. Use
this to compare two versions of the code; use ``overhead.py`` for what users wait for.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from typing import Any

SMALL, LARGE = 2_000, 6_000


def child_flow(n: int, recording: str) -> None:
    os.environ["ORION_NB_HOME"] = tempfile.mkdtemp(prefix="orion-bench-instr-")
    import orion_nb
    from orion_nb import flow, task

    orion_nb.configure(display="none", persist=recording == "on")

    @task
    def inc(x: int) -> int:
        return x + 1

    @flow
    def loop(count: int) -> None:
        for i in range(count):
            inc(i)

    loop(10)  # first run: opens the database, starts the writer
    loop(n)


def child_writer(n: int, stage: str) -> None:
    from orion_nb.store import targets
    from orion_nb.store.coalesce import Coalescer
    from orion_nb.store.writer import Writer

    folder = tempfile.mkdtemp(prefix="orion-bench-instr-")
    w = Writer(f"sqlite:///{folder}/h.db").start()  # creates the schema
    w.flush()
    w.close()
    target = targets.SQLiteTarget(None, f"{folder}/h.db")
    fid = str(uuid.UUID(int=1))
    base = 1.7e9
    events: list[tuple[Any, ...]] = [
        ("flow", fid, "f", "r", {}, (), None, None, "bench", 1, base),
        ("state", fid, "flow", "RUNNING", "Running", base, None, None, 1, None),
    ]
    for i in range(n):
        rid = str(uuid.UUID(int=i + 2))
        ts = base + i * 1e-3
        events += [
            ("task", rid, fid, "step", "bench.step", str(i), f"step-{i}", frozenset(), ts),
            ("state", rid, "task", "PENDING", "Pending", ts, None, None, 0, None),
            ("state", rid, "task", "RUNNING", "Running", ts + 1e-4, None, None, 1, None),
            ("state", rid, "task", "COMPLETED", "Completed", ts + 2e-4, None, None, 1, None),
        ]
    if stage == "events":
        return
    batch = Coalescer(elide=True).batch(events, None)
    if stage == "coalesce":
        return
    if stage == "params":
        numbered = target._number_states(batch)
        for key, rows in batch.items():
            if key == "states":
                continue
            _sql, cols = target.raw_sql[key]
            if key == "upsert_task":
                targets._sqlite_rows(rows, cols, numbered[1])
            else:
                target._params(key, rows, cols)
        return
    assert target.write(batch)


def count(args: list[str]) -> int:
    """Instructions executed by this script run as a child with ``args``."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{out.stderr[-2000:]}")
    return int(match.group(1))


def per_run(*args: str) -> float:
    small = count([*args, str(SMALL)])
    large = count([*args, str(LARGE)])
    return (large - small) / (LARGE - SMALL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, mode, n = args.child
        (child_flow if kind == "flow" else child_writer)(int(n), mode)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    rows: dict[str, float] = {}
    rows["flow, recording off"] = per_run("flow", "off")
    rows["flow, recording on"] = per_run("flow", "on")
    stages = {s: per_run("writer", s) for s in ("events", "coalesce", "params", "all")}
    rows["writer: coalesce"] = stages["coalesce"] - stages["events"]
    rows["writer: numbering and parameters"] = stages["params"] - stages["coalesce"]
    rows["writer: SQL"] = stages["all"] - stages["params"]
    print("| per recorded task run | instructions |\n|---|--:|")
    for label, value in rows.items():
        print(f"| {label} | {value:,.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
