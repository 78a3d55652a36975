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

The engine pushes a whole snapshot with :meth:`RunView.set_snapshot`, which sends one comm
message per update; the front-end coalesces bursts into one redraw per animation frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets

__all__ = ["TASK_COLUMNS", "RunView", "extensions_dir"]

TASK_COLUMNS = [
    "id",
    "task_name",
    "name",
    "state_type",
    "state_name",
    "start",
    "end",
    "attempts",
    "parent",
    "depth",
    "error",
    "kind",
    "worker",  # issue 9
]


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

    _esm = _EXTENSIONS / "runview.js"
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

    _SNAPSHOT_KEYS = frozenset(
        {"run", "task_columns", "tasks", "transitions", "logs", "counts", "now", "total"}
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

    def __repr__(self) -> str:
        run = self.run or {}
        return (
            f"RunView(run={run.get('name')!r}, state={run.get('state_name')!r}, tasks={self.total})"
        )
