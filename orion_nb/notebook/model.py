"""The view model of a flow run: engine events in, the RunView widget's traits out.

One class serves the live widget (fed by engine events as they happen) and ``view(run_id)``
(fed by the same events rebuilt from the database), so a past run looks exactly as it did
live. Times in the snapshot are epoch milliseconds, as the front-end expects.

The live widget does not resend everything at each update: the model remembers what changed
since the last :meth:`RunModel.take_diff` (task rows by run id, the run header, new transitions
and log records), so an update of a run with 10,000 task runs carries the few rows that moved,
not all 10,000. :meth:`RunModel.snapshot` is the full state, sent when a view attaches.

Edges (``edge`` events: data passed between task runs, ``wait_for``) feed the Graph tab. An
edge into or out of a subflow names the subflow's *mirror* task run in its parent; the model
turns that into the subflow's own row id, and holds an edge back until both of its ends are
rows it knows (a subflow's edges arrive before the subflow run itself), so a view never gets
an edge it cannot draw, and never loses one.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

__all__ = ["TASK_COLUMNS", "RunModel"]

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
    # issue 9: the task runner's worker of the latest attempt (None: ran in the kernel); each
    # attempt [start, end, type] carries its own worker as a 4th item when it has one
    "worker",
]
_ID, _TASK, _NAME, _TYPE, _SNAME, _START, _END, _ATTEMPTS, _PARENT, _DEPTH, _ERROR, _KIND = range(
    12
)
_WORKER = 12
_TERMINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
MAX_TRANSITIONS = 500
MAX_LOGS = 500


class RunModel:
    """Aggregates the events of one top-level flow run (and its subflows)."""

    def __init__(self) -> None:
        self.root_id: str | None = None
        self.run: dict[str, Any] = {}
        self.flows: dict[str, dict[str, Any]] = {}  # flow run id -> info
        self.rows: dict[str, list[Any]] = {}  # task rows (and subflow rows), in creation order
        self.mirrors: set[str] = set()  # parent-side task runs that stand for subflows
        self.mirror_parent: dict[str, str] = {}  # mirror task run id -> the flow it runs in
        self.names: dict[str, str] = {}
        self.last_state: dict[str, str] = {}
        self.transitions: deque[dict[str, Any]] = deque(maxlen=MAX_TRANSITIONS)
        self.logs: deque[dict[str, Any]] = deque(maxlen=MAX_LOGS)
        self.version = 0
        self.counts: dict[str, int] = {}  # task runs per state name, kept as states arrive
        self.total = 0
        # what changed since the last take_diff()
        self._changed: dict[str, None] = {}  # row ids, an ordered set
        self._new_transitions = 0
        self._new_logs = 0
        self._run_changed = False
        self.mirror_child: dict[
            str, str
        ] = {}  # mirror task run id -> the subflow run it stands for
        self.edges: list[
            list[str]
        ] = []  # [task_run_id, upstream_task_run_id, parameter], by row id
        self._pending_edges: list[tuple[str, str, str]] = []
        self._new_edges = 0

    # -- events -------------------------------------------------------------------------------
    def apply(self, ev: tuple[Any, ...]) -> None:
        kind = ev[0]
        self.version += 1
        if kind == "state":
            self._state(ev[1], ev[2], ev[3], ev[4], ev[5], ev[6], ev[7], ev[9])
        elif kind == "task":
            _, rid, flow_run_id, task_name, task_key, _dyn, name, _tags, _created = ev
            self.names[rid] = name
            if isinstance(task_key, str) and task_key.startswith("subflow:"):
                self.mirrors.add(rid)
                self.mirror_parent[rid] = flow_run_id
                return
            parent = None if flow_run_id == self.root_id else flow_run_id
            depth = self.flows.get(flow_run_id, {}).get("depth", 0)
            if rid not in self.rows:
                self.total += 1
                self.counts["Pending"] = self.counts.get("Pending", 0) + 1
            else:  # the same run announced twice: its old state leaves the counts
                self._count(self.rows[rid][_SNAME], -1)
                self.counts["Pending"] = self.counts.get("Pending", 0) + 1
            self._changed[rid] = None
            self.rows[rid] = [
                rid,
                task_name,
                name,
                "PENDING",
                "Pending",
                None,
                None,
                [],
                parent,
                depth,
                None,
                "task",
                None,
            ]
        elif kind == "flow":
            _, rid, flow_name, name, params, _tags, parent_task_run_id, *_rest = ev
            self.names[rid] = name
            if self.root_id is None:
                self.root_id = rid
                self.flows[rid] = {"depth": 0}
                self.run = {
                    "id": rid,
                    "name": name,
                    "flow_name": flow_name,
                    "state_type": "PENDING",
                    "state_name": "Pending",
                    "start": None,
                    "end": None,
                    "message": None,
                    "parameters": params,
                }
                self._run_changed = True
                return
            # a subflow: a row in its parent's table, with its own tasks nested under it
            if parent_task_run_id:
                self.mirror_child[parent_task_run_id] = rid
            parent_flow = self.mirror_parent.get(parent_task_run_id or "", self.root_id)
            parent_depth = self.flows.get(parent_flow or "", {}).get("depth", 0)
            parent_id = None if parent_flow == self.root_id else parent_flow
            self.flows[rid] = {"depth": parent_depth + 1}
            self._changed[rid] = None
            self.rows[rid] = [
                rid,
                flow_name,
                name,
                "PENDING",
                "Pending",
                None,
                None,
                [],
                parent_id,
                parent_depth,
                None,
                "flow",
                None,
            ]
        elif kind == "edge":
            self._pending_edges.append((str(ev[1]), str(ev[2]), str(ev[3])))
        elif kind == "ran":  # where the next attempt runs (sent before its RUNNING)
            row = self.rows.get(ev[1])
            if row is not None and ev[4] is not None:
                row[_WORKER] = ev[4]
                self._changed[ev[1]] = None
        elif kind == "log":
            run_name = ev[6] if len(ev) > 6 else self.names.get(ev[2] or ev[1] or "", "")
            self.logs.append(
                {"ts": ev[4] * 1000.0, "level": ev[3], "run": run_name, "message": str(ev[5])}
            )
            self._new_logs += 1

    def _state(
        self,
        run_id: str,
        run_kind: str,
        tname: str,
        sname: str,
        ts_s: float,
        message: str | None,
        rule: str | None,
        error: str | None,
    ) -> None:
        ts = ts_s * 1000.0
        prev = self.last_state.get(run_id)
        self.last_state[run_id] = sname
        name = self.names.get(run_id, run_id[-8:])
        if run_id in self.mirrors:
            return
        self.transitions.append(
            {
                "ts": ts,
                "run": name,
                "kind": run_kind,
                "from": prev,
                "to": sname,
                "type": tname,
                "rule": rule,
                "message": message,
            }
        )
        self._new_transitions += 1
        if run_kind == "flow" and run_id == self.root_id:
            run = self.run
            run["state_type"] = tname
            run["state_name"] = sname
            if tname == "RUNNING" and run["start"] is None:
                run["start"] = ts
            if tname in _TERMINAL:
                run["end"] = ts
                run["message"] = message
            self._run_changed = True
            return
        row = self.rows.get(run_id)
        if row is None:
            return
        self._changed[run_id] = None
        if row[_KIND] == "task" and row[_SNAME] != sname:
            self._count(row[_SNAME], -1)
            self._count(sname, 1)
        row[_TYPE] = tname
        row[_SNAME] = sname
        attempts = row[_ATTEMPTS]
        if attempts and attempts[-1][1] is None and tname != "RUNNING":
            attempts[-1][1] = ts
            attempts[-1][2] = "FAILED" if sname == "AwaitingRetry" else tname
        if tname == "RUNNING":
            if row[_START] is None:
                row[_START] = ts
            worker = row[_WORKER] if len(row) > _WORKER else None
            attempts.append(
                [ts, None, "RUNNING"] if worker is None else [ts, None, "RUNNING", worker]
            )
        if tname in _TERMINAL:
            row[_END] = ts
            if row[_START] is None:
                row[_START] = ts
            if tname != "COMPLETED":
                row[_ERROR] = error or message

    def _count(self, name: str, delta: int) -> None:
        n = self.counts.get(name, 0) + delta
        if n > 0:
            self.counts[name] = n
        else:
            self.counts.pop(name, None)

    # -- output -------------------------------------------------------------------------------
    def _resolve_edges(self) -> None:
        """Move the edges whose two ends are known rows from pending to :attr:`edges`."""
        if not self._pending_edges:
            return
        waiting = []
        for down, up, param in self._pending_edges:
            a = self.mirror_child.get(down, down)
            b = self.mirror_child.get(up, up)
            if a in self.rows and b in self.rows:
                self.edges.append([a, b, param])
                self._new_edges += 1
            else:
                waiting.append((down, up, param))
        self._pending_edges = waiting

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The whole view: what a view needs when it attaches (traits of the RunView widget)."""
        self._resolve_edges()
        return {
            "run": self._run_header(),
            "task_columns": TASK_COLUMNS,
            "tasks": [_copy_row(r) for r in self.rows.values()],
            "transitions": list(self.transitions),
            "logs": list(self.logs),
            "counts": dict(self.counts),
            "now": (time.time() if now is None else now) * 1000.0,
            "total": self.total,
            "edges": [list(e) for e in self.edges],
        }

    def take_diff(self, now: float | None = None) -> dict[str, Any]:
        """What changed since the last call (or :meth:`clear_changes`), and forget it.

        ``tasks`` holds the changed rows whole, keyed by their ``id`` column: a view replaces
        the row with that id or appends it (new rows come in creation order, so a view's rows
        stay in the model's order). ``transitions`` and
        ``logs`` are the records appended since (a view appends them and keeps its last 500).
        ``run`` is there only when the header changed; ``counts``, ``total`` and ``now``
        always (they are small). ``edges`` are the edges resolved since (a view appends them).
        """
        self._resolve_edges()
        diff: dict[str, Any] = {
            "tasks": [_copy_row(self.rows[rid]) for rid in self._changed if rid in self.rows],
            "transitions": _tail(self.transitions, self._new_transitions),
            "logs": _tail(self.logs, self._new_logs),
            "counts": dict(self.counts),
            "total": self.total,
            "now": (time.time() if now is None else now) * 1000.0,
            "edges": [list(e) for e in self.edges[len(self.edges) - self._new_edges :]]
            if self._new_edges
            else [],
        }
        if self._run_changed:
            diff["run"] = self._run_header()
        self.clear_changes()
        return diff

    def clear_changes(self) -> None:
        """Forget what changed (after a full snapshot went out)."""
        self._changed = {}
        self._new_transitions = 0
        self._new_logs = 0
        self._run_changed = False
        self._new_edges = 0

    @property
    def changed(self) -> bool:
        """Whether anything changed since the last diff."""
        self._resolve_edges()
        return bool(
            self._changed
            or self._new_transitions
            or self._new_logs
            or self._run_changed
            or self._new_edges
        )

    def _run_header(self) -> dict[str, Any]:
        return {k: v for k, v in self.run.items() if k != "parameters"}


def _copy_row(r: list[Any]) -> list[Any]:
    """A row whose attempt lists the model will not change later (it keeps mutating its own)."""
    return [*r[:_ATTEMPTS], [list(a) for a in r[_ATTEMPTS]], *r[_ATTEMPTS + 1 :]]


def _tail(records: deque[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    n = min(n, len(records))
    return list(records)[-n:] if n else []
