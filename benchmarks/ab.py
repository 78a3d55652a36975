#!/usr/bin/env python3
"""A task run including its writing, this checkout against another commit, interleaved.

    python benchmarks/ab.py --base cae4088              # 7 pairs, about 4 minutes
    python benchmarks/ab.py --base main~3 --pairs 11 --json out.json

On a shared VM the same code measures ±10 % apart from one run to the next, as much as a
change to the hot path saves. This runs ``overhead.py``'s ``direct_total_per_task_us``
workload (a flow of N direct calls of a trivial task, until its history is committed, ÷ N;
the median of 5 such flows) in fresh interpreters, alternating the base commit (checked out
into a temporary git worktree) and this checkout, and reports the median of the per-pair
ratios: drift in the machine's speed hits both sides of a pair alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKLOAD = """
import gc, os, statistics, sys, tempfile, time
os.environ["ORION_NB_HOME"] = tempfile.mkdtemp(prefix="orion-bench-ab-")
import orion_nb
from orion_nb import flow, task
orion_nb.configure(display="none")

@task
def inc(x):
    return x + 1

@flow
def loop(n):
    for i in range(n):
        inc(i)

loop(100)
n = int(sys.argv[1])
runs = []
for _ in range(5):
    gc.collect()
    time.sleep(0.2)
    t0 = time.perf_counter()
    loop(n)
    runs.append((time.perf_counter() - t0) / n * 1e6)
print(statistics.median(runs))
"""


def measure(source: Path, calls: int) -> float:
    """µs per task run (median of 5 flows) with orion_nb imported from ``source``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORION_NB_")}
    env["PYTHONPATH"] = str(source)
    out = subprocess.run(
        [sys.executable, "-c", WORKLOAD, str(calls)],
        capture_output=True,
        text=True,
        env=env,
        cwd=source,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000, help="task calls per flow")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orion-bench-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base],
            check=True,
        )
        try:
            pairs = []
            for i in range(args.pairs):
                b = measure(base, args.calls)
                n = measure(ROOT, args.calls)
                pairs.append((b, n))
                print(f"pair {i + 1}: base {b:.2f} µs, this checkout {n:.2f} µs ({n / b:.3f}x)")
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=True
            )
    ratio = statistics.median(n / b for b, n in pairs)
    print(
        f"median ratio (this checkout / {args.base}): {ratio:.3f} over {len(pairs)} pairs; "
        f"medians {statistics.median(b for b, _ in pairs):.2f} -> "
        f"{statistics.median(n for _, n in pairs):.2f} µs per task run"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"base": args.base, "pairs": pairs, "median_ratio": ratio}, f, indent=2)


if __name__ == "__main__":
    main()
