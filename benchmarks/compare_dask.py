"""Dask's side of benchmarks/compare.py: the local threaded scheduler, where it fits.

    python compare_dask.py WORKLOAD N

Prints one JSON object. Dask's local scheduler has no flow runs, no retries and records
nothing: it is the floor of "run these Python functions as a task graph in threads".
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # before importing the tool: the cold start starts here

import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

import dask  # noqa: E402

WORKLOAD, N = sys.argv[1], int(sys.argv[2])


def inc(x: int) -> int:
    return x + 1


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


threads = {"scheduler": "threads"}
out: dict[str, object] = {"tool": "dask", "version": dask.__version__}
if WORKLOAD == "cold":
    dask.delayed(inc)(1).compute(**threads)
    out["seconds"] = time.perf_counter() - T0
else:
    dask.delayed(inc)(1).compute(**threads)
    if WORKLOAD == "calls":  # each call computed before the next starts
        out["seconds"] = timed(lambda: [dask.delayed(inc)(i).compute(**threads) for i in range(N)])
    elif WORKLOAD == "submit":  # N independent tasks, one graph
        out["seconds"] = timed(
            lambda: dask.compute(*[dask.delayed(inc)(i) for i in range(N)], **threads)
        )
    elif WORKLOAD == "map":  # one task per item
        import dask.bag as db

        out["seconds"] = timed(
            lambda: db.from_sequence(range(N), npartitions=N).map(inc).compute(**threads)
        )
    elif WORKLOAD != "setup":
        raise SystemExit(f"Dask has no equivalent of workload {WORKLOAD!r}")
out["self_maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
