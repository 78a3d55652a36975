"""Nothing the engine keeps holds a result alive.

Every test checks what a user would see: return values, raised exceptions, and the recorded
history (through the public DataFrame API, i.e. a real SQLite file).
"""

from __future__ import annotations

import gc
import weakref

import orion_nb
from orion_nb import flow, task


def test_results_are_not_kept_alive_after_use():
    class Blob:
        """A result that can be weakly referenced."""

    refs: list[weakref.ref[Blob]] = []

    @task
    def make():
        b = Blob()
        refs.append(weakref.ref(b))
        return b

    @flow
    def f():
        for _ in range(200):
            make()
        for _ in range(200):
            make.submit().result()

    f()
    from orion_nb.engine import recorder

    recorder.flush()
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert alive == 0, f"{alive} of {len(refs)} results still alive"


def test_queued_history_does_not_hold_results():
    """Between two writes the queue holds many runs: it must not hold their results."""
    import tracemalloc

    @task
    def big():
        return bytes(1_000_000)

    @flow
    def f():
        for _ in range(100):
            big()

    f()  # warm up: the first run opens the database
    orion_nb.configure(flush_interval=60)  # nothing is written while the flow runs
    try:
        tracemalloc.start()
        f()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        orion_nb.configure(flush_interval=0.05)
    assert peak < 20_000_000, f"peak {peak / 1e6:.0f} MB for 100 results of 1 MB"
