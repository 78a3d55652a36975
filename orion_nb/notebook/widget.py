"""The RunView widget: a flow run's live state, task table, timeline, transitions and logs.

An ``anywidget.AnyWidget`` whose front-end is ``extensions/runview.js`` (a plain ES module, no
build step) styled by ``extensions/runview.css``. The Python side only holds the view
model's latest snapshot in synced traits; all drawing happens in the browser (virtualised run
lists, an SVG timeline that turns into a canvas above 2,000 runs), and every piece of user
text is inserted there with ``textContent``, never as markup.

Trait contract (times are epoch milliseconds):

- ``run``: ``{id, name, flow_name, state_type, state_name, start, end, message}``
- ``task_columns``: the fixed column names of ``tasks`` (:data:`TASK_COLUMNS`)
- ``tasks``: one row (a list, in column order) per task run, and per subflow run
  (``kind == "flow"``; its task runs have ``parent`` = its id and one more ``depth``);
  ``attempts`` holds ``[start, end or None, state_type]`` per try (with the worker that ran
  it as a 4th item, issue 9); ``worker`` is the task runner's worker of the latest try
  (``None`` in the kernel)
- ``transitions``: the last 500 decisions ``{ts, run, kind, from, to, type, rule, message}``
- ``logs``: the last 500 log records ``{ts, level, run, message}``
- ``counts``: task runs per state name; ``total``: the number of task runs
- ``now``: when the snapshot was taken (the elapsed clock of an unfinished run counts from it)
- ``edges``: ``[task_run_id, upstream_task_run_id, parameter]`` between rows (subflow edges
  point at the subflow's row), drawn by the Graph tab
- ``tab``: the tab shown first (``"overview"``, ``"graph"``, ``"transitions"``, ``"logs"``)

The front-end is ``runview.js`` with the modules it imports (``graph.js``, the vendored
dagre), linked into one ES module by :func:`orion_nb.notebook._bundle.bundle`.

A recorded run's view is static: :meth:`RunView.set_snapshot` assigns every trait once. A
running flow's view changes ten times a second, so it does not resend the traits: the
:class:`~orion_nb.notebook.live.WidgetView` sends custom messages that the front-end model
applies to its own copy of the traits (the module's ``initialize``, which runs once per model
before any message is handled):

- ``{kind: "diff", seq, base, tasks, transitions, logs, edges, counts, total, now[, run]}``: the rows
  that changed since message ``base`` (replaced by their ``id``, or appended), the transitions
  log records and edges appended since; applied only when the model is at ``base``.
- ``{kind: "snapshot", seq, <every trait>}``: the whole state.
- From the front-end, ``{kind: "attach", seq}``: a model that missed diffs (it was created
  after the run started, e.g. in a second browser tab) asks for a snapshot.

The front-end coalesces bursts into one redraw per animation frame either way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from orion_nb.notebook._bundle import bundle
from orion_nb.notebook.model import TASK_COLUMNS

__all__ = ["TASK_COLUMNS", "RunGraph", "RunView", "extensions_dir"]


def extensions_dir() -> Path:
    """The folder holding ``runview.js`` and ``runview.css``.

    An installed wheel carries them as ``orion_nb/_extensions`` (``force-include`` in
    ``pyproject.toml``); a source checkout or an editable install has them in
    ``<repo>/extensions``. The wheel's copy wins when both exist.
    """
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_extensions", package.parent / "extensions"):
        if (candidate / "runview.js").is_file():
            return candidate
    raise FileNotFoundError(
        f"The RunView front-end (runview.js) is neither in {package / '_extensions'} nor in "
        f"{package.parent / 'extensions'}; reinstall orion_nb or restore the extensions/ folder."
    )


_EXTENSIONS = extensions_dir()


class RunView(anywidget.AnyWidget):
    """Live view of one flow run (the module docstring describes the traits)."""

    _esm = bundle(_EXTENSIONS / "runview.js")
    _css = _EXTENSIONS / "runview.css"

    run = traitlets.Dict(help="The flow run: id, name, flow_name, state, start/end, message.").tag(
        sync=True
    )
    task_columns = traitlets.List(
        traitlets.Unicode(), default_value=TASK_COLUMNS, help="Column names of ``tasks``."
    ).tag(sync=True)
    tasks = traitlets.List(help="One row per task run or subflow run.").tag(sync=True)
    transitions = traitlets.List(help="The latest state transitions, oldest first.").tag(sync=True)
    logs = traitlets.List(help="The latest log records, oldest first.").tag(sync=True)
    counts = traitlets.Dict(help="Task runs per state name.").tag(sync=True)
    now = traitlets.Float(0.0, help="When the snapshot was taken (epoch ms).").tag(sync=True)
    total = traitlets.Int(0, help="Number of task runs.").tag(sync=True)
    edges = traitlets.List(help="[task_run_id, upstream_task_run_id, parameter] per edge.").tag(
        sync=True
    )
    tab = traitlets.Unicode("overview", help="The tab shown first.").tag(sync=True)

    _SNAPSHOT_KEYS = frozenset(
        {"run", "task_columns", "tasks", "transitions", "logs", "counts", "now", "total", "edges"}
        | {"tab"}
    )

    def set_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Assign the traits in ``snapshot`` together, so the front-end gets one message.

        Raises
        ------
        ValueError
            If ``snapshot`` has a key that is not one of the widget's traits (a typo would
            otherwise be dropped silently and the view would never change).
        """
        unknown = sorted(set(snapshot) - self._SNAPSHOT_KEYS)
        if unknown:
            raise ValueError(
                f"RunView.set_snapshot() got unknown keys {unknown}; expected some of "
                f"{sorted(self._SNAPSHOT_KEYS)}."
            )
        with self.hold_sync():
            for key, value in snapshot.items():
                setattr(self, key, value)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # set by a live WidgetView: the current header and counts (the traits lag behind a
        # live run, whose updates travel as diffs), and what to do when a view attaches
        self._describe: Callable[[], dict[str, Any]] | None = None
        self._on_attach: Callable[[], None] | None = None
        self.on_msg(self._handle_custom)

    def _handle_custom(self, _widget: Any, content: Any, _buffers: Any) -> None:
        attach = isinstance(content, dict) and content.get("kind") == "attach"
        if attach and self._on_attach is not None:
            self._on_attach()

    def _current(self) -> dict[str, Any]:
        """The run header, counts and total this widget shows now (cheap: no task rows)."""
        if self._describe is not None:
            return self._describe()
        return {"run": dict(self.run), "counts": dict(self.counts), "total": self.total}

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The widget, a truthful one-line summary, and the static view once the run ended.

        Where no widget manager runs (a code host, an HTML export, a notebook reopened
        without its widget state), readers get the ``text/html`` or ``text/plain`` entry.
        """
        from orion_nb.notebook import static

        base = super()._repr_mimebundle_(**kwargs)
        if base is None:
            return None
        data, metadata = base if isinstance(base, tuple) else (base, {})
        bundle = dict(data)
        current = self._current()
        bundle["text/plain"] = static.summary(current)
        run = current.get("run") or {}
        if self._describe is None and run.get("end") is not None:
            bundle["text/html"] = static.render_html(
                {
                    "run": dict(self.run),
                    "task_columns": list(self.task_columns),
                    "tasks": list(self.tasks),
                    "transitions": list(self.transitions),
                    "logs": list(self.logs),
                    "counts": dict(self.counts),
                    "now": self.now,
                    "total": self.total,
                }
            )
        return bundle, dict(metadata)

    def __repr__(self) -> str:
        current = self._current()
        run = current.get("run") or {}
        if not run.get("id"):
            return "RunView(no flow run yet)"
        return (
            f"RunView(flow={run.get('flow_name')!r}, run={run.get('name')!r}, "
            f"state={run.get('state_name')!r}, tasks={current.get('total', 0)})"
        )


class RunGraph(RunView):
    """A recorded run's RunView opened at its Graph tab (``orion_nb.graph(run_id)``).

    Where no widget manager runs (a saved notebook without its kernel, an export, a code
    host), its output is the static picture of the graph
    (:func:`orion_nb.notebook.graph_static.render_html`) instead of the run's table.
    """

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        from orion_nb.notebook import graph_static

        base = super()._repr_mimebundle_(**kwargs)
        if base is None:
            return None
        data, metadata = base
        snapshot = {
            "run": dict(self.run),
            "task_columns": list(self.task_columns),
            "tasks": list(self.tasks),
            "edges": list(self.edges),
        }
        return {**data, "text/html": graph_static.render_html(snapshot)}, metadata
