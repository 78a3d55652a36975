"""The view model of a flow run: engine events in, the RunView widget's traits out.

One class serves the live widget (fed by engine events as they happen) and ``view(run_id)``
(fed by the same events rebuilt from the database), so a past run looks exactly as it did
live. Times in the snapshot are epoch milliseconds, as the front-end expects.
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
                return
            # a subflow: a row in its parent's table, with its own tasks nested under it
            parent_flow = self.mirror_parent.get(parent_task_run_id or "", self.root_id)
            parent_depth = self.flows.get(parent_flow or "", {}).get("depth", 0)
            parent_id = None if parent_flow == self.root_id else parent_flow
            self.flows[rid] = {"depth": parent_depth + 1}
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
        elif kind == "ran":  # issue 9: where the next attempt runs (sent before its RUNNING)
            row = self.rows.get(ev[1])
            if row is not None and ev[4] is not None:
                row[_WORKER] = ev[4]
        elif kind == "log":
            run_name = ev[6] if len(ev) > 6 else self.names.get(ev[2] or ev[1] or "", "")
            self.logs.append(
                {"ts": ev[4] * 1000.0, "level": ev[3], "run": run_name, "message": str(ev[5])}
            )

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
        if run_kind == "flow" and run_id == self.root_id:
            run = self.run
            run["state_type"] = tname
            run["state_name"] = sname
            if tname == "RUNNING" and run["start"] is None:
                run["start"] = ts
            if tname in _TERMINAL:
                run["end"] = ts
                run["message"] = message
            return
        row = self.rows.get(run_id)
        if row is None:
            return
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

    # -- output -------------------------------------------------------------------------------
    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        rows = [
            [*list(r[:_ATTEMPTS]), [list(a) for a in r[_ATTEMPTS]], *list(r[_ATTEMPTS + 1 :])]
            for r in self.rows.values()
        ]
        counts: dict[str, int] = {}
        total = 0
        for r in self.rows.values():
            if r[_KIND] == "task":
                total += 1
                counts[r[_SNAME]] = counts.get(r[_SNAME], 0) + 1
        run = {k: v for k, v in self.run.items() if k != "parameters"}
        return {
            "run": run,
            "task_columns": TASK_COLUMNS,
            "tasks": rows,
            "transitions": list(self.transitions),
            "logs": list(self.logs),
            "counts": counts,
            "now": (time.time() if now is None else now) * 1000.0,
            "total": total,
        }
