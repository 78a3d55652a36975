"""Tag-based concurrency limits, honoured by every thread of the process.

Every test checks what a user would see: return values, raised exceptions, and the recorded
history (through the public DataFrame API, i.e. a real SQLite file).
"""

from __future__ import annotations

import threading
import time

import orion_nb
from orion_nb import flow, task


def test_concurrency_limit_by_tag_is_honoured_by_threads():
    orion_nb.set_concurrency_limit("db", 1)
    lock = threading.Lock()
    active = [0]
    peak = [0]

    @task(tags=["db"])
    def query(i):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return i

    @flow
    def f():
        return query.map(range(4)).result()

    try:
        assert f() == [0, 1, 2, 3]
    finally:
        orion_nb.set_concurrency_limit("db", None)
    assert peak[0] == 1
    st = orion_nb.states()
    waits = st[st["rule"] == "ConcurrencyLimits"]
    assert len(waits) >= 1
    assert "tag 'db' is at its limit (1 of 1 slots in use)" in waits.iloc[0]["message"]


def test_tags_context_adds_tags_and_limits():
    orion_nb.set_concurrency_limit("io", 1)
    peak = [0]
    active = [0]
    lock = threading.Lock()

    @task
    def step(i):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.03)
        with lock:
            active[0] -= 1

    @flow
    def f():
        with orion_nb.tags("io"):
            futs = step.map(range(3))
        futs.wait()

    try:
        f()
    finally:
        orion_nb.set_concurrency_limit("io", None)
    assert peak[0] == 1
    assert all("io" in t for t in orion_nb.task_runs()["tags"])
