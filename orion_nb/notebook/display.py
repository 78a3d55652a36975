"""Choosing and driving the live view of a top-level flow run.

``make_view`` is called by the engine when a top-level flow run starts. In a Jupyter kernel
with ``display="auto"`` or ``"widget"`` it shows the RunView widget (once available); in a
plain interpreter or script it returns a compact text view that prints when the run starts
and a one-line summary when it ends. ``display="none"`` shows nothing.

A view receives every engine event through ``on_event`` on the hot path, so it only updates
counters there; anything expensive happens on a throttled refresh or at ``close``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from typing import Any

__all__ = ["TextView", "in_notebook", "make_view"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where widgets can be displayed)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython

        ip = get_ipython()
    except Exception:
        return False
    return ip is not None and getattr(ip, "kernel", None) is not None


def make_view(run: Any, mode: str) -> Any:
    if mode == "none":
        return None
    if mode in ("auto", "widget") and in_notebook():
        try:
            from orion_nb.notebook.live import WidgetView

            return WidgetView(run)
        except ImportError:  # anywidget missing: degrade to text
            pass
    return TextView(run)


class TextView:
    """A two-line progress report for scripts and terminals."""

    shows_logs = False

    progress_every = 5.0

    def __init__(self, run: Any, stream: Any = None) -> None:
        self.run = run
        self.stream = stream or sys.stderr
        self.started = time.time()
        self.task_states: dict[str, str] = {}
        self._print(f"Flow run {run.name!r} of flow {run.flow.name!r} started")
        # long runs report progress every few seconds (from a thread, never on the hot path);
        # the thread starts when the run starts Running, so a run that fails to start (a
        # parameter that cannot be recorded, say) leaves no printer behind
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _summary(self) -> str:
        counts = Counter(list(self.task_states.values()))
        n = sum(counts.values())
        if not n:
            return "no task runs yet"
        return (
            f"{n} task run{'s' if n != 1 else ''} ("
            + ", ".join(f"{v} {k}" for k, v in counts.most_common())
            + ")"
        )

    def _progress(self) -> None:
        while not self._done.wait(self.progress_every):
            state = self.run.state
            if state is not None and state.is_final():
                return  # finished without close(): stop with the run, never print forever
            self._print(
                f"Flow run {self.run.name!r} running for {time.time() - self.started:.0f} s: {self._summary()}"
            )

    def _print(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        try:
            print(f"{stamp} | orion_nb | {text}", file=self.stream, flush=True)
        except Exception:  # pragma: no cover - a closed stream must not break a run
            pass

    def on_event(self, ev: tuple[Any, ...]) -> None:
        if ev[0] == "state":
            if ev[2] == "task":
                self.task_states[ev[1]] = ev[4]
            elif ev[3] == "RUNNING" and self._thread is None and not self._done.is_set():
                self._thread = threading.Thread(
                    target=self._progress, name="orion-nb-text-view", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        self._done.set()
        state = self.run.state
        tasks = f"; {self._summary()}" if self.task_states else ""
        msg = f" - {state.message}" if state.message and not state.is_completed() else ""
        self._print(
            f"Flow run {self.run.name!r} finished in state {state.name} after "
            f"{time.time() - self.started:.2f} s{tasks}{msg}"
        )
