"""SIGTERM: write what is pending, then terminate as the signal asks.

``kill`` (SIGTERM) is how containers, schedulers and ``jupyter`` stop a process. Python's
default is to die at once, so the records of the last flush window, and the end of every
run in progress, were lost. When the writer starts in the main thread and SIGTERM still has
its default (or a Python) handler, orion_nb installs one that

- when a Python handler was there before (the application handles SIGTERM itself, as
  ``orion-nb run`` does by cancelling its run), hands the signal to it and does nothing else:
  the application's runs end through the engine and are written at exit;
- otherwise marks this process's unfinished runs Crashed ("terminated by SIGTERM"), so nobody
  waits for a heartbeat to go stale, closes the writer (at most ``exit_timeout`` seconds of
  writing, the rest to the journal), and lets the default action run (the process ends with
  the SIGTERM status, as it would have).

A handler that ignores SIGTERM (``SIG_IGN``) or one installed by C code is left alone.
"""

from __future__ import annotations

import os
import signal
import threading
import weakref
from typing import Any

__all__ = ["install"]

_installed: dict[str, Any] = {}
_writers: weakref.WeakSet[Any] = weakref.WeakSet()


def install(writer: Any) -> None:
    """Flush ``writer`` on SIGTERM (the handler is installed once, from the main thread)."""
    _writers.add(writer)
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
    from orion_nb.orchestration.recovery_rules import RULE

    previous = _installed.get("previous", signal.SIG_DFL)
    if callable(previous) and previous is not _on_sigterm:
        # the application handles SIGTERM itself (``orion-nb run`` turns it into a cancel):
        # its runs end through the engine, recorded as it decides, and the writer flushes at
        # exit; closing the writer first would lose exactly those records
        previous(signum, frame)
        return
    message = f"{RULE}: the process was terminated (SIGTERM) while the run was in progress."
    for writer in list(_writers):
        try:
            writer.close(crash_open_runs=message)
        except Exception:  # pragma: no cover - the process is ending: never block that
            pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
