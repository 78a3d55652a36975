#!/usr/bin/env python3
"""Costs of notebooks-to-schedules (issue 8), each next to a baseline measured the same way.

    python benchmarks/schedule.py            # about two minutes on 2 cores
    python benchmarks/schedule.py --quick    # fewer repeats

- ``export``: ``export_notebook`` of each example notebook, against one ``ruff format`` of
  the script it produces (the export formats, sorts imports and lints: about four ruff runs);
- ``run script``: ``orion-nb run SCRIPT.py`` against ``python SCRIPT.py`` (wall time of a
  fresh process, median);
- ``run notebook``: ``orion-nb run NOTEBOOK.ipynb`` (kernel, parent flow run, saved report)
  against executing the same notebook with nbclient alone;
- ``claim``: claiming a scheduled slot (conditional update in a transaction) against reading
  the same row, in one process, on SQLite;
- ``serve``: how long after its slot a run enters Running, with a 1 s interval (this is the
  scheduler's reaction time plus a child process start).

Nothing here asserts a time; see benchmarks/README.md for the others.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def env(home: Path) -> dict[str, str]:
    e = {**os.environ, "ORION_NB_HOME": str(home), "ORION_NB_DISPLAY": "none"}
    e.pop("ORION_NB_DATABASE_URL", None)
    return e


def wall(cmd: list[str], home: Path, cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env(home), cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def line(what: str, value: float, base: float, unit: str, note: str = "") -> None:
    print(
        f"{what:<44} {value:9.1f} {unit:<3} baseline {base:9.1f} {unit:<3} x{value / base:5.2f}  {note}"
    )


def bench_export(tmp: Path, repeats: int) -> None:
    from orion_nb.export.formatting import format_python
    from orion_nb.export.script import export_notebook

    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        script = tmp / nb.name.replace(".ipynb", ".py")
        times, base = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            text = export_notebook(nb, script_path=script).text
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "ruff", "format", "--isolated", "-"],
                input=text,
                capture_output=True,
                text=True,
                check=True,
            )
            base.append(time.perf_counter() - t0)
        line(
            f"export {nb.name}",
            statistics.median(times) * 1e3,
            statistics.median(base) * 1e3,
            "ms",
            "vs one ruff format",
        )
    _ = format_python


def bench_run(tmp: Path, repeats: int) -> None:
    from tests.export.helpers import notebook

    nb = notebook(
        tmp / "tiny.ipynb",
        "%load_ext orion_nb\nfrom orion_nb import task\n\n@task\ndef double(x):\n    return 2 * x",
        ("n = 3", ["parameters"]),
        "%%flow compute\ntotal = sum(double(i) for i in range(n))",
        "print(total)",
    )
    home = tmp / "home"
    subprocess.run(
        [sys.executable, "-m", "orion_nb.cli", "export", str(nb), "-o", str(tmp / "tiny.py")],
        env=env(home),
        check=True,
        capture_output=True,
    )
    wall([sys.executable, str(tmp / "tiny.py")], home, tmp)  # warm the caches
    ours = [
        wall([sys.executable, "-m", "orion_nb.cli", "run", "tiny.py"], home, tmp)
        for _ in range(repeats)
    ]
    base = [wall([sys.executable, "tiny.py"], home, tmp) for _ in range(repeats)]
    line(
        "orion-nb run tiny.py",
        statistics.median(ours) * 1e3,
        statistics.median(base) * 1e3,
        "ms",
        "vs python tiny.py",
    )
    plain = (
        "import nbformat, sys\nfrom nbclient import NotebookClient\n"
        "nb = nbformat.read(sys.argv[1], as_version=4)\n"
        "NotebookClient(nb, kernel_name='python3').execute()\n"
    )
    n = max(2, repeats // 2)
    ours = [
        wall(
            [sys.executable, "-m", "orion_nb.cli", "run", "tiny.ipynb", "-o", "out.ipynb"],
            home,
            tmp,
        )
        for _ in range(n)
    ]
    base = [wall([sys.executable, "-c", plain, "tiny.ipynb"], home, tmp) for _ in range(n)]
    line(
        "orion-nb run tiny.ipynb",
        statistics.median(ours) * 1e3,
        statistics.median(base) * 1e3,
        "ms",
        "vs nbclient alone",
    )


def bench_claim(tmp: Path, n: int) -> None:
    import orion_nb
    from orion_nb.export import deployments as dep
    from orion_nb.export.schedules import Schedule
    from orion_nb.store import deployments as sql

    orion_nb.configure(
        home=tmp / "claims", database_url=f"sqlite:///{tmp / 'claims.db'}", display="none"
    )
    script = tmp / "job.py"
    script.write_text("print(1)\n")
    d = dep.register(dep.DeploymentSpec("bench", script, "job", Schedule.parse(interval=1)))
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    slots = [t0 + timedelta(seconds=i) for i in range(n)]
    dep.call(sql.schedule_slots, d, slots, t0, lambda: "r")
    ids = [r["id"] for r in dep.call(sql.due_runs, d["id"], slots[-1])]
    claim, read = [], []
    for i, rid in enumerate(ids):
        a = time.perf_counter()
        assert dep.call(sql.claim_run, rid, "host", i + 1)
        b = time.perf_counter()
        dep.call(sql.run_info, rid)
        claim.append(b - a)
        read.append(time.perf_counter() - b)
    line(
        f"claim a slot ({n} slots, SQLite)",
        statistics.median(claim) * 1e3,
        statistics.median(read) * 1e3,
        "ms",
        "vs reading the row",
    )


def bench_serve(tmp: Path, runs: int) -> None:
    home = tmp / "serve"
    script = tmp / "tick.py"
    script.write_text(
        "from orion_nb import flow\n\n@flow(name='tick')\ndef tick():\n    return 1\n\ntick()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "orion_nb.cli", "serve", str(script), "--interval", "1"],
        env=env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = home / "orion.db"
    deadline = time.monotonic() + 300
    lags: list[float] = []
    while time.monotonic() < deadline and len(lags) < runs:
        time.sleep(1)
        try:
            con = sqlite3.connect(db)
            rows = con.execute(
                "select f.expected_start_time, s.timestamp from flow_runs f join states s "
                "on s.run_id = f.id where s.name = 'Running' and f.deployment_id is not null"
            ).fetchall()
            con.close()
        except sqlite3.Error:
            continue
        fmt = "%Y-%m-%d %H:%M:%S.%f"
        lags = [
            (datetime.strptime(b, fmt) - datetime.strptime(a, fmt)).total_seconds() for a, b in rows
        ]
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    if lags:
        print(
            f"{'serve: slot -> Running (1 s interval)':<44} median {statistics.median(lags) * 1e3:7.0f} ms, "
            f"max {max(lags) * 1e3:7.0f} ms over {len(lags)} runs (a child process start included)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    with tempfile.TemporaryDirectory(prefix="orion-nb-bench-") as t:
        tmp = Path(t)
        os.environ["ORION_NB_HOME"] = str(tmp / "home0")
        bench_export(tmp, repeats)
        bench_run(tmp, repeats)
        bench_claim(tmp, 50 if args.quick else 200)
        bench_serve(tmp, 3 if args.quick else 8)


if __name__ == "__main__":
    main()
