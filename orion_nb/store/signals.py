"""SIGTERM: write what is pending, then terminate as the signal asks.

``kill`` (SIGTERM) is how containers, schedulers and ``jupyter`` stop a process. Python's
default is to die at once, so the records of the last flush window, and the end of every
run in progress, were lost. When the writer starts in the main thread and SIGTERM still has
its default (or a Python) handler, orion_nb installs one that

1. marks this process's unfinished runs Crashed ("terminated by SIGTERM"), so nobody waits
   for a heartbeat to go stale;
2. closes the writer: at most ``exit_timeout`` seconds of writing, the rest to the journal;
3. hands the signal on: to the previous Python handler if there was one, otherwise the
   default action runs (the process ends with the SIGTERM status, as it would have).

A handler that ignores SIGTERM (``SIG_IGN``) or one installed by C code is left alone.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

__all__ = ["install"]

_installed: dict[str, Any] = {}
_TERMINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


def install(writer: Any) -> None:
    """Make ``writer`` the one flushed on SIGTERM (idempotent; main thread only)."""
    _installed["writer"] = writer
    if "previous" in _installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, AttributeError):  # pragma: no cover - no SIGTERM on this platform
        return
    if previous is signal.SIG_IGN or previous is None:
        return
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # pragma: no cover - not the main thread of the main interpreter
        return
    _installed["previous"] = previous


def _on_sigterm(signum: int, frame: Any) -> None:
    writer = _installed.get("writer")
    if writer is not None:
        try:
            _crash_open_runs(writer)
            writer.close()
        except Exception:  # pragma: no cover - the process is ending: never block that
            pass
    previous = _installed.get("previous", signal.SIG_DFL)
    if callable(previous) and previous is not _on_sigterm:
        previous(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _crash_open_runs(writer: Any) -> None:
    """Queue a Crashed state for each unfinished run this process knows about."""
    from orion_nb._events import state_event
    from orion_nb.orchestration.recovery_rules import RULE

    now = time.time()
    message = f"{RULE}: the process was terminated (SIGTERM) while the run was in progress."
    # runs whose end is still in the queue did finish: their end will be written
    ended = {ev[1] for ev in list(writer.queue) if ev[0] == "state" and ev[3] in _TERMINAL}
    coalescer = writer._coalescer
    for kind, rows in (("flow", coalescer.flow_rows), ("task", coalescer.task_rows)):
        for rid, row in list(rows.items()):
            if rid in ended:
                continue
            writer.put(
                state_event(rid, kind, "CRASHED", "Crashed", now, message, RULE, row["run_count"])
            )
