"""The history browser: every flow run, newest first, filtered, charted and live.

An ``anywidget.AnyWidget`` whose front-end is ``extensions/browser.js`` (which imports
``runview.js`` to open a run in place). The kernel never sends the history: the front-end
shows a virtualised list and asks for the pages it scrolls to, and the kernel answers with
one ``LIMIT``/``OFFSET`` query each (:mod:`orion_nb.store.browse`).

Traits (times in epoch ms):

- ``columns``: the names of a row's fields (:data:`COLUMNS`); ``head``: the first
  :data:`HEAD` rows (shown at once, and kept with the widget's state);
- ``filters``: ``{flow, state, since, until, deployment, tag, text, subflows, unit}``, set
  by the front-end's filter bar (or ``browse(**filters)``); a change re-runs the count, the
  first page and the chart, and bumps ``generation``;
- ``total``: rows in the filtered list; ``chart``: ``{unit, start, end, bars}``
  (:func:`~orion_nb.notebook.browse_filters.chart_buckets`); ``options``: flow names,
  deployments and recent tags for the filter bar; ``status``: ``{live, updated, error}``;
  ``tz``: the viewer's time zone (set by the front-end: days are the viewer's days).

Custom messages. From the front-end: ``{kind: "view", open}`` when a view appears or goes
away (the live poll runs while at least one is shown), ``{kind: "page", gen, start, count}``,
``{kind: "open", id}`` and ``{kind: "close-run"}``. From the kernel: ``{kind: "page", gen,
start, rows}``, ``{kind: "rows", gen, rows}`` (runs that changed: replace by id),
``{kind: "refresh", gen, added}`` (the list gained or lost runs: drop cached pages and ask
again for what is on screen; ``added`` runs arrived above it), ``{kind: "run", id, seq,
snapshot}`` (the opened run's RunView, again whenever it changes) and ``{kind: "run-error",
id, message}``.

Live updates come from a poll thread owned by the widget (:class:`_Poller`): every
:data:`POLL_SECONDS` it asks :func:`~orion_nb.store.browse.changes` which runs got a state
since the last look (a primary-key range scan), re-reads just those rows, and sends what
moved; never a reload of the list. It stops when the last view closes, when the widget is
closed, and at interpreter exit, when every output of a browser still live is replaced with
the static table (:mod:`orion_nb.notebook.browser_static`) so a saved notebook keeps it.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import OrderedDict, deque
from datetime import UTC, datetime
from typing import Any

import anywidget
import traitlets

from orion_nb import history
from orion_nb.errors import OrionNBError
from orion_nb.notebook import browse_filters, browser_static
from orion_nb.notebook._bundle import bundle
from orion_nb.notebook.widget import extensions_dir
from orion_nb.store import browse as q

__all__ = ["COLUMNS", "HEAD", "POLL_SECONDS", "HistoryBrowser"]

COLUMNS = [*q.COLUMNS, "tasks"]
HEAD = 200  # rows sent with the widget (the first screenful and then some)
PAGE_MAX = 500  # rows per page request at most
POLL_SECONDS = 2.0
SETTLE_SECONDS = 6.0  # Postgres: re-read this much of the states table (late commits)
CHART_EVERY = 5.0  # seconds between chart recounts while runs change
KNOWN_MAX = 20_000  # rows remembered as shown (to send only those that changed)
_EXT = extensions_dir()
_live: weakref.WeakSet[HistoryBrowser] = weakref.WeakSet()


class HistoryBrowser(anywidget.AnyWidget):
    """A list of flow runs with filters, a chart, live updates and each run's RunView."""

    _esm = bundle(_EXT / "browser.js")
    _css = (_EXT / "runview.css").read_text(encoding="utf-8") + (_EXT / "browser.css").read_text(
        encoding="utf-8"
    )

    columns = traitlets.List(traitlets.Unicode(), default_value=COLUMNS).tag(sync=True)
    head = traitlets.List(help="The first rows of the list.").tag(sync=True)
    filters = traitlets.Dict(help="The list's filters (see the module docstring).").tag(sync=True)
    total = traitlets.Int(0, help="Rows in the filtered list.").tag(sync=True)
    generation = traitlets.Int(0, help="Bumped whenever the list is queried anew.").tag(sync=True)
    chart = traitlets.Dict(help="Runs per hour or day, by state type.").tag(sync=True)
    options = traitlets.Dict(help="Values offered by the filter bar.").tag(sync=True)
    status = traitlets.Dict(help="{live, updated, error}").tag(sync=True)
    tz = traitlets.Unicode("", help="The viewer's IANA time zone.").tag(sync=True)

    def __init__(self, **filters: Any) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._filter = browse_filters.parse_filters(filters)
        self._unit = "auto"
        self._known: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self._views = 0
        self._poller: _Poller | None = None
        self._handles: list[Any] = []
        self._opened: str | None = None
        self._run_seq = 0
        self._closed = False
        self._last_chart = 0.0
        self._chart_due = False
        self.on_msg(self._on_custom)
        self.observe(self._on_filters, names=["filters"])
        self.observe(self._on_tz, names=["tz"])
        self._requery(initial=True)
        _live.add(self)

    # -- queries ------------------------------------------------------------------------------
    def _read(self, fn: Any, *, flush: bool = False, **kwargs: Any) -> Any:
        return history._read(fn, flush=flush, **kwargs)

    def _with_tasks(self, rows: list[list[Any]]) -> list[list[Any]]:
        counts = self._read(q.task_counts, run_ids=[r[0] for r in rows]) if rows else {}
        return [[*r, counts.get(r[0], {})] for r in rows]

    def _remember(self, rows: list[list[Any]]) -> None:
        for r in rows:
            self._known[r[0]] = tuple(map(repr, r))
            self._known.move_to_end(r[0])
        while len(self._known) > KNOWN_MAX:
            self._known.popitem(last=False)

    def _chart(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        oldest = None
        if self._filter.since is None:
            oldest = self._read(q.oldest, f=self._filter)
        unit, start, end = browse_filters.chart_window(self._filter, oldest, now, self._unit)
        hours = self._read(q.chart, f=self._filter, start=start, end=end)
        return browse_filters.chart_buckets(hours, unit, start, end, browse_filters.zone(self.tz))

    def _requery(self, initial: bool = False) -> None:
        """Count, first page, chart and filter options for the current filter."""
        with self._lock:
            total = self._read(q.count, flush=True, f=self._filter)  # what just ran is listed
            head = self._with_tasks(self._read(q.page, f=self._filter, offset=0, limit=HEAD))
            self._known.clear()
            self._remember(head)
            chart = self._chart()
            options = self._read(q.options)
            self._last_chart = time.monotonic()
            with self.hold_sync():
                if initial:
                    self.filters = browse_filters.to_trait(self._filter, self._unit)
                self.total = total
                self.head = head
                self.chart = chart
                self.options = options
                self.generation += 1
                self.status = {"live": self._poller is not None, "updated": time.time() * 1000}

    def _on_filters(self, change: dict[str, Any]) -> None:
        values = dict(change["new"] or {})
        unit = values.pop("unit", "auto")
        try:
            new = browse_filters.parse_filters(values)
        except OrionNBError as exc:
            self.status = {**self.status, "error": str(exc)}
            return
        if new == self._filter and unit == self._unit:
            return
        self._filter, self._unit = new, unit if unit in ("hour", "day") else "auto"
        self._requery()

    def _on_tz(self, change: dict[str, Any]) -> None:
        with self._lock:
            self.chart = self._chart()

    # -- messages from the front-end ----------------------------------------------------------
    def _on_custom(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("kind")
        try:
            if kind == "page":
                self._send_page(content)
            elif kind == "view":
                self._view(bool(content.get("open")))
            elif kind == "open":
                self._open(str(content.get("id") or ""))
            elif kind == "close-run":
                self._opened = None
        except OrionNBError as exc:
            self.status = {**self.status, "error": str(exc)}

    def _send_page(self, content: dict[str, Any]) -> None:
        start = content.get("start")
        count = content.get("count")
        if not isinstance(start, int) or not isinstance(count, int) or start < 0 or count <= 0:
            return
        with self._lock:
            gen = self.generation
            if content.get("gen") != gen:
                return
            rows = self._with_tasks(
                self._read(q.page, f=self._filter, offset=start, limit=min(count, PAGE_MAX))
            )
            self._remember(rows)
        self.send({"kind": "page", "gen": gen, "start": start, "rows": rows})

    def _view(self, opened: bool) -> None:
        with self._lock:
            self._views = max(0, self._views + (1 if opened else -1))
            if self._views and self._poller is None and not self._closed:
                self._poller = _Poller(self)
                self._poller.start()
            elif not self._views and self._poller is not None:
                self._poller.stop()
                self._poller = None
            self.status = {**self.status, "live": self._poller is not None}

    def _open(self, run_id: str) -> None:
        from orion_nb.notebook.views import model_for

        self._opened = run_id or None
        if not run_id:
            return
        try:
            model = model_for(run_id)
        except OrionNBError as exc:
            self.send({"kind": "run-error", "id": run_id, "message": str(exc)})
            return
        end = model.run.get("end")
        self._run_seq += 1
        snapshot = model.snapshot(now=(end / 1000.0) if end else None)
        self.send({"kind": "run", "id": run_id, "seq": self._run_seq, "snapshot": snapshot})

    # -- live ---------------------------------------------------------------------------------
    def poll(self, after: int) -> int:
        """Send what changed since state id ``after``; returns the newest state id seen."""
        newest, ids, overflow = self._read(q.changes, after=after)
        if not ids and not overflow:
            return newest
        with self._lock:
            gen = self.generation
            if overflow:
                self.total = self._read(q.count, f=self._filter)
                self.send({"kind": "refresh", "gen": gen, "added": 0})
                self._maybe_chart(force=True)
                return newest
            rows = self._with_tasks(self._read(q.rows_for, f=self._filter, ids=ids))
            matched = {r[0] for r in rows}
            gone = [i for i in ids if i in self._known and i not in matched]
            new = [r for r in rows if r[0] not in self._known]
            changed = [
                r for r in rows if r[0] in self._known and self._known[r[0]] != tuple(map(repr, r))
            ]
            for i in gone:
                self._known.pop(i, None)
            if new or gone:
                top = self.head[0][COLUMNS.index("created")] if self.head else None
                added = sum(1 for r in new if top is None or (r[5] or 0) >= top)
                self.total = self._read(q.count, f=self._filter)
                self.head = self._with_tasks(
                    self._read(q.page, f=self._filter, offset=0, limit=HEAD)
                )
                self._remember(self.head)
                self.send({"kind": "refresh", "gen": gen, "added": added})
            elif changed:
                self._remember(changed)
                self.send({"kind": "rows", "gen": gen, "rows": changed})
            if new or gone or changed:
                self._maybe_chart()
        if self._opened and self._opened in ids:
            self._open(self._opened)
        return newest

    def _maybe_chart(self, force: bool = False) -> None:
        if force or time.monotonic() - self._last_chart >= CHART_EVERY:
            self._last_chart = time.monotonic()
            self.chart = self._chart()
            self._chart_due = False
        else:
            self._chart_due = True

    # -- output -------------------------------------------------------------------------------
    def _static(self) -> dict[str, str]:
        now = time.time() * 1000.0
        caption = browse_filters.describe(self._filter)
        return {
            "text/plain": browser_static.summary(self.total, caption),
            "text/html": browser_static.render_html(
                list(self.columns), list(self.head), self.total, caption, now
            ),
        }

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        base = super()._repr_mimebundle_(**kwargs)
        if base is None:
            return None
        data, metadata = base if isinstance(base, tuple) else (base, {})
        return {**data, **self._static()}, dict(metadata)

    def _ipython_display_(self) -> None:
        """Display with a display id, so :meth:`close` can leave the static table there."""
        from IPython.display import display

        bundle_ = self._repr_mimebundle_()
        if bundle_ is None:
            return
        data, metadata = bundle_
        self._handles.append(display(data, metadata=metadata, raw=True, display_id=True))

    def close(self) -> None:
        """Stop the live updates and leave the static table in every output of this browser."""
        if self._closed:
            return
        self._closed = True
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        static = self._static()
        for handle in self._handles:
            try:
                handle.update(static, raw=True)
            except Exception:  # pragma: no cover - a kernel going away
                pass
        self._handles.clear()
        _live.discard(self)
        super().close()

    def __repr__(self) -> str:
        return browser_static.summary(self.total, browse_filters.describe(self._filter))


class _Poller(threading.Thread):
    """Asks the history what changed every :data:`POLL_SECONDS` while a view is shown."""

    def __init__(self, browser: HistoryBrowser) -> None:
        super().__init__(name="orion-nb-browser", daemon=True)
        self._browser = weakref.ref(browser)
        self._stop_event = threading.Event()
        newest, _, _ = browser._read(q.changes, after=2**62)
        self._marks: deque[tuple[float, int]] = deque([(time.monotonic(), newest)])
        self._postgres = _dialect() == "postgresql"

    def _after(self) -> int:
        """Where to read from: the last mark, or (Postgres) the one that has settled."""
        if not self._postgres:
            return self._marks[-1][1]
        now = time.monotonic()
        settled = [m for t, m in self._marks if now - t >= SETTLE_SECONDS]
        return settled[-1] if settled else self._marks[0][1]

    def run(self) -> None:
        while not self._stop_event.wait(POLL_SECONDS):
            browser = self._browser()
            if browser is None:
                return
            try:
                newest = browser.poll(self._after())
                if getattr(browser, "_chart_due", False):
                    browser._maybe_chart()
                status = browser.status
                if status.get("error"):
                    browser.status = {"live": True, "updated": time.time() * 1000}
            except Exception as exc:  # a database outage: say so in the widget, keep trying
                browser.status = {
                    "live": True,
                    "updated": browser.status.get("updated"),
                    "error": f"Live updates paused: {type(exc).__name__}: {exc}",
                }
                continue
            self._marks.append((time.monotonic(), newest))
            while len(self._marks) > 2 and time.monotonic() - self._marks[1][0] >= SETTLE_SECONDS:
                self._marks.popleft()

    def stop(self) -> None:
        self._stop_event.set()


def _dialect() -> str:
    from orion_nb.engine import recorder

    writer = recorder.get_writer()
    return str(writer.engine.dialect.name) if writer is not None and writer.engine else ""


@atexit.register
def _leave_static_tables() -> None:
    """At interpreter exit, live browsers leave their static table in the notebook."""
    for browser in list(_live):
        try:
            browser.close()
        except Exception:  # pragma: no cover - best effort while the kernel goes away
            pass
