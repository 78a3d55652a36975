"""The live widget view of a running flow.

The engine calls :meth:`WidgetView.on_event` on its hot path, from any thread: it only
appends to a deque. A refresher thread applies the queued events to a :class:`RunModel` and
pushes a snapshot to the widget at most ``max_rate`` times a second, and less often for very
large runs (the snapshot grows with the number of task runs), so 10,000 tasks never flood
the kernel's message channel or the browser.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from orion_nb.notebook.model import RunModel

__all__ = ["WidgetView"]


class WidgetView:
    """Shows a RunView widget in the current cell and keeps it up to date."""

    shows_logs = True

    def __init__(self, run: Any, *, max_rate: float = 10.0, display: bool = True) -> None:
        from orion_nb.notebook.widget import RunView

        self.model = RunModel()
        self.widget = RunView()
        self.max_rate = max_rate
        self.updates = 0
        self._events: deque[tuple[Any, ...]] = deque()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sent_version = -1
        if display:
            from IPython.display import display as ipy_display

            ipy_display(self.widget)
        self._thread = threading.Thread(target=self._loop, name="orion-nb-view", daemon=True)
        self._thread.start()

    def on_event(self, ev: tuple[Any, ...]) -> None:
        self._events.append(ev)

    def _interval(self) -> float:
        n = len(self.model.rows)
        return max(1.0 / self.max_rate, n / 20_000)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval()):
            self.refresh()

    def refresh(self) -> None:
        with self._lock:
            events = self._events
            model = self.model
            while events:
                model.apply(events.popleft())
            if model.version == self._sent_version and model.run.get("end") is not None:
                return
            self._sent_version = model.version
            snapshot = model.snapshot()
            try:
                self.widget.set_snapshot(snapshot)
                self.updates += 1
            except Exception:  # pragma: no cover - a closed comm must not break the run
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.refresh()
