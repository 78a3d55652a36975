"""The live widget view of a running flow, and the static view it leaves behind.

The engine calls :meth:`WidgetView.on_event` on its hot path, from any thread: it only
appends to a deque. A refresher thread applies the queued events to a :class:`RunModel` and
sends the widget what changed at most ``max_rate`` times a second (less often for very large
runs), so 10,000 tasks never flood the kernel's message channel or the browser.

What an update carries: only the task rows that changed since the previous update (keyed by
run id), the new transitions and log records, the counts and the clock, as one custom message
(``kind: "diff"``, numbered). A whole snapshot goes out only when a front-end model asks for it
(``kind: "attach"``), which a model does when it missed diffs, e.g. one created in a second
browser tab while the run goes on. The widget's traits are not resent during a run: a kernel
that saved every update's traits (nbclient does) would store the whole run once per update.

When the run ends, the output that showed the widget is replaced, through its display id, by
the static view (``text/html`` and a one-line ``text/plain``; :mod:`orion_nb.notebook.static`).
That is what a saved notebook keeps: JupyterLab and Notebook 7 do not save widget state by
default and then show "Error displaying widget" for a widget output; nbconvert prefers the
widget whenever nbclient saved its state, and needs the internet to draw it. The static view
reads the same everywhere, with or without a kernel. While a flow runs, the output is the live
widget.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import deque
from typing import Any

from orion_nb.errors import OrionNBWarning
from orion_nb.notebook import static
from orion_nb.notebook.model import RunModel

__all__ = ["WidgetView"]

IDLE_TICK = (
    1.0  # seconds between updates when nothing changed (keeps the clock and late views in step)
)


class WidgetView:
    """Shows a RunView widget in the current cell, keeps it up to date, then leaves the static view."""

    shows_logs = True

    def __init__(self, run: Any, *, max_rate: float = 10.0, display: bool = True) -> None:
        from orion_nb.notebook.widget import RunView

        self.model = RunModel()
        self.widget = RunView()
        header = _header(run)
        if header:
            self.widget.run = header  # the initial state says which run this is
        self.max_rate = max_rate
        self.updates = 0
        self.snapshots = 0
        self.seq = 0
        self._header = header
        self._want_snapshot = False
        self._last_sent = 0.0
        self._events: deque[tuple[Any, ...]] = deque()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self.widget._describe = self._describe
        self.widget._on_attach = self._attach
        self._handle: Any = None
        if display:
            from IPython.display import display as ipy_display

            self._handle = ipy_display(self.widget, display_id=True)
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

    def _attach(self) -> None:
        """A front-end model missed updates: the next update is a whole snapshot."""
        if not self._closed:
            self._want_snapshot = True

    def _describe(self) -> dict[str, Any]:
        with self._lock:
            run = self.model._run_header() or dict(self._header)
            return {"run": run, "counts": dict(self.model.counts), "total": self.model.total}

    def refresh(self) -> None:
        """Apply the queued events and send the front-end what changed (or a snapshot)."""
        with self._lock:
            events = self._events
            model = self.model
            while events:
                model.apply(events.popleft())
            now = time.monotonic()
            if self._want_snapshot:
                self._want_snapshot = False
                self.seq += 1
                message = {"kind": "snapshot", "seq": self.seq, **model.snapshot()}
                model.clear_changes()
                self.snapshots += 1
            else:
                if not model.changed and (
                    model.run.get("end") is not None or now - self._last_sent < IDLE_TICK
                ):
                    return
                self.seq += 1
                message = {"kind": "diff", "seq": self.seq, "base": self.seq - 1}
                message.update(model.take_diff())
            self._last_sent = now
            try:
                self.widget.send(message)
                self.updates += 1
            except Exception:  # pragma: no cover - a closed comm must not break the run
                pass

    def close(self) -> None:
        """Stop refreshing, send the last update, and leave the static view in the output."""
        self._stop.set()
        self._thread.join(5)
        self.refresh()
        self._closed = True
        with self._lock:
            end = self.model.run.get("end")
            snapshot = self.model.snapshot(now=(end / 1000.0) if end else None)
        if self._handle is None:
            return
        try:
            self._handle.update(
                {"text/plain": static.summary(snapshot), "text/html": static.render_html(snapshot)},
                raw=True,
            )
            self.widget.close()
        except Exception as exc:
            warnings.warn(
                OrionNBWarning(
                    f"The static view of flow run {snapshot['run'].get('name')!r} could not "
                    f"replace its live widget ({type(exc).__name__}: {exc}); the run is "
                    "recorded, and orion_nb.view(run_id) shows it."
                ),
                stacklevel=2,
            )


def _header(run: Any) -> dict[str, Any]:
    """The run's identity before its first event: id, name and flow name, state Pending."""
    rid = getattr(run, "id", None)
    if not isinstance(rid, str):
        return {}
    flow = getattr(run, "flow", None)
    return {
        "id": rid,
        "name": str(getattr(run, "name", "") or ""),
        "flow_name": str(getattr(flow, "name", "") or ""),
        "state_type": "PENDING",
        "state_name": "Pending",
        "start": None,
        "end": None,
        "message": None,
    }
