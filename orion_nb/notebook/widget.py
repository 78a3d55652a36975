"""The RunView widget: a flow run's live state, task table, timeline, transitions and logs.

An ``anywidget.AnyWidget`` whose front-end is ``extensions/runview.js`` (plain ES module, no
build step). The Python side only holds the view model's snapshot in synced traits; all
drawing (virtualised lists, SVG or canvas timeline) happens in the browser, and every piece
of user text is inserted with ``textContent``.

Trait contract (times are epoch milliseconds):

- ``run``: ``{id, name, flow_name, state_type, state_name, start, end, message}``
- ``task_columns`` / ``tasks``: rows of task runs (and subflow runs, ``kind == "flow"``)
- ``transitions``: the last 500 decisions ``{ts, run, kind, from, to, type, rule, message}``
- ``logs``: the last 500 log records ``{ts, level, run, message}``
- ``counts``: task runs per state name; ``total``: number of task runs; ``now``: last update
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets

__all__ = ["RunView", "extensions_dir"]


def extensions_dir() -> Path:
    """Where ``runview.js`` / ``runview.css`` are: the wheel's copy, else the source tree's."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_extensions"
    if (packaged / "runview.js").exists():
        return packaged
    return here.parent / "extensions"


class RunView(anywidget.AnyWidget):
    """Live view of one flow run (see the module docstring for the trait contract)."""

    _esm = extensions_dir() / "runview.js"
    _css = extensions_dir() / "runview.css"

    run = traitlets.Dict().tag(sync=True)
    task_columns = traitlets.List(traitlets.Unicode()).tag(sync=True)
    tasks = traitlets.List().tag(sync=True)
    transitions = traitlets.List().tag(sync=True)
    logs = traitlets.List().tag(sync=True)
    counts = traitlets.Dict().tag(sync=True)
    now = traitlets.Float(0.0).tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)

    def set_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Replace every trait at once: one comm message per update."""
        with self.hold_sync():
            for key, value in snapshot.items():
                setattr(self, key, value)

    def __repr__(self) -> str:
        run = self.run or {}
        return (
            f"RunView(run={run.get('name')!r}, state={run.get('state_name')!r}, tasks={self.total})"
        )
