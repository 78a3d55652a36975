"""Pausing Python's cyclic garbage collector while orion_nb builds many objects at once.

A ``.map()`` creates thousands of runs whose objects (run, future, outcome, state) all stay
alive until the runs finish. CPython's collector is triggered by the number of allocated
container objects, and each collection walks every surviving young object again; once enough
of them survive it walks the whole heap (a full collection: every module, every object of the
notebook). Measured on a 10,000-item ``.map()``: three full collections and ~370 young ones,
more than a third of the call, none of them finding anything to free.

The history writer does the same while it turns a flush window's events into rows and while
it writes them to SQLite (:mod:`orion_nb.store.writer`): thousands of row dictionaries, none
in a cycle, and without the pause the collections they trigger walk the notebook's whole heap
(measured: a flow of 20,000 task calls took 27.8 µs per call including its history, 21.5 µs
with the pause). Cyclic garbage made meanwhile, by any thread, is collected when the pause
ends, after each batch.

:func:`collector_paused` turns the collector off around such a burst, as Mercurial's
``util.nogc`` does around building large structures. The collector is one switch for the
whole process, so other threads (task runs already running on workers) also run without it
while a pause lasts; reference counting still frees everything that is not in a cycle, and a
pause is kept short: ``.map()`` pauses once per chunk of runs (4,096, a few tens of
milliseconds), so the collector runs between chunks of a very large map, and it never pauses
around a runner that runs the user's function inline (the sequential runner). Pauses nest
across threads (only the outermost one switches the collector back on) and never switch on a
collector that was off when the first pause began.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]

_lock = threading.Lock()
_pauses = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off (reference counting still frees)."""
    global _pauses, _was_enabled
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
