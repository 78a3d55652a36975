"""Load tests on a real SQLite file: many writers, a reader, a long lock, many flows in one process.

Slow by nature (seconds to a minute each) and marked so; they assert counts and bounds, never
times: every record written exactly once, memory bounded.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests._helpers import TASK_TRANSITIONS_SQL, TRANSITION_IDS_SQL
from tests.conftest import FLOWS_SCRIPT, child_env, spawn, wait_all

pytestmark = pytest.mark.slow


def one(db: Path, sql: str) -> int:
    con = sqlite3.connect(db, timeout=60)
    try:
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def test_four_writers_of_ten_thousand_task_runs_with_a_reader(tmp_path: Path):
    home = tmp_path / "home"
    subprocess.run([sys.executable, "-c", FLOWS_SCRIPT, "1", "1"], env=child_env(home), check=True)
    procs = [spawn(FLOWS_SCRIPT, child_env(home), "10", "1000") for _ in range(4)]
    reads = 0
    reader = "import orion_nb; print(len(orion_nb.flow_runs()), len(orion_nb.task_runs(limit=100)))"
    while any(p.poll() is None for p in procs):
        out = subprocess.run(
            [sys.executable, "-c", reader], env=child_env(home), capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        reads += 1
    wait_all(procs)
    assert reads >= 1
    db = home / "orion.db"
    assert one(db, "select count(*) from task_runs where state_name='Completed'") == 40_001
    assert one(db, TASK_TRANSITIONS_SQL) == 40_001 * 3
    # ids taken by four processes at once, written or left out, never collide
    assert one(db, f"select count(*) - count(distinct id) from ({TRANSITION_IDS_SQL})") == 0
    assert (
        one(db, "select count(*) from (select id from task_runs group by id having count(*) > 1)")
        == 0
    )
    assert one(db, "select count(*) from flow_runs where state_name='Completed'") == 41


def test_a_write_lock_held_for_35_seconds_loses_nothing(tmp_path: Path):
    home = tmp_path / "home"
    code = textwrap.dedent(
        """
        import sys, warnings, orion_nb
        orion_nb.configure(display="none")
        @orion_nb.task
        def t(i):
            return i
        @orion_nb.flow(name="locked-out")
        def f():
            return [t(i) for i in range(100)]
        f()
        print("READY", flush=True)
        sys.stdin.readline()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(5):
                f()   # the history cannot be written: runs go on regardless
        print("RAN", len(caught), flush=True)
        sys.stdin.readline()
        """
    )
    proc = spawn(code, child_env(home), talk=True)
    assert proc.stdin is not None and proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    lock = sqlite3.connect(home / "orion.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        proc.stdin.write("go\n")
        proc.stdin.flush()
        ran = proc.stdout.readline().split()
        assert ran[0] == "RAN" and int(ran[1]) >= 1  # one warning says the records wait
        time.sleep(35)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # the writer retries on its own: everything arrives while the process is still alive
    db = home / "orion.db"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and one(db, "select count(*) from flow_runs") < 6:
        time.sleep(0.5)
    assert one(db, "select count(*) from flow_runs where state_name='Completed'") == 6
    proc.stdin.write("exit\n")
    proc.stdin.flush()
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    assert one(db, "select count(*) from task_runs where state_name='Completed'") == 600
    assert one(db, TASK_TRANSITIONS_SQL) == 1800
    assert not list((home / "journal").rglob("*.jsonl"))


def test_memory_of_200_flows_of_1000_tasks_stays_bounded(tmp_path: Path):
    code = textwrap.dedent(
        """
        import gc, resource, orion_nb
        orion_nb.configure(display="none")
        @orion_nb.task
        def t(i):
            return i
        @orion_nb.flow
        def f():
            for i in range(1000):
                t(i)
        peaks = []
        for n in range(200):
            f()
            if n in (99, 199):
                gc.collect()
                peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        print(*peaks)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(tmp_path / "home"),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    at_100, at_200 = (int(x) for x in out.stdout.split())
    # by 100 flows the caches (SQLite's page cache of 64 MB among them) are full; the next
    # 100,000 task runs may not grow the peak by more than 20 MB (ru_maxrss is in KiB)
    assert at_200 - at_100 < 20 * 1024, (at_100, at_200)
