"""From engine events to batches of rows: coalescing, cleaning, heartbeats.

The writer drains its queue every flush window and hands the events to :class:`Coalescer`,
which turns them into one :class:`Batch`: what happened to each run within the window is
merged into one ``flow_runs``/``task_runs`` row (three transitions of a short task become
three ``states`` rows but one ``task_runs`` row), and every text value is cleaned
(:mod:`orion_nb.store.sanitize`) on the way in.

A batch is the unit of everything that can go wrong later, so it is self-contained:

- it has an id, written to ``write_batches`` in the same transaction as its rows, so a batch
  whose commit was lost on the way back, or that is replayed from the journal, is recognised
  and not written twice;
- it can be split in halves (:meth:`Batch.split`, with derived ids) to find a row the
  database refuses: rows are independent (no foreign keys), so any subset can be written;
- it serialises to plain JSON for the journal (:meth:`Batch.to_lines` / :meth:`Batch.from_lines`).

The coalescer also knows which runs of this process are still open: those get a heartbeat
every ``heartbeat_interval`` seconds (an ``UPDATE`` in the next batch), which is what lets
another process tell a live run from one whose process is gone.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

from orion_nb.store.sanitize import clean_json, clean_text

__all__ = ["KEYS", "Batch", "Coalescer"]

_TERMINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
# a state for a run whose row was already written as finished updates only these columns
ORPHAN_COLS = ("state_type", "state_name", "run_count", "end_time", "message")
# a result recorded for a task run whose row was already written as finished
RESULT_COLS = ("cache_key", "cache_expiration", "result_ref")
STATE_COLS = ("run_id", "run_kind", "type", "name", "timestamp", "message", "rule")
# A state row may carry an eighth item, the task run column that takes its id instead of a row
# in ``states`` (see :meth:`Coalescer.leave_out_plain`): a target that writes the run's row in
# the same transaction stores the id there; any other target writes the row as usual.
LEFT_OUT_COLS = ("pending_state_id", "running_state_id", "final_state_id")
_PENDING_ID, _RUNNING_ID, _FINAL_ID = ((c,) for c in LEFT_OUT_COLS)
# state names the engine uses, already clean (any other name is cleaned)
_CLEAN_NAMES = frozenset(
    {
        "Scheduled",
        "Late",
        "AwaitingRetry",
        "Pending",
        "Running",
        "Retrying",
        "Paused",
        "Completed",
        "Cached",
        "Failed",
        "TimedOut",
        "Crashed",
        "Cancelled",
    }
)
# the order in which a batch's parts are written
KEYS = (
    "upsert_flow",
    "upsert_task",
    "states",
    "edges",
    "logs",
    "update_flow",
    "update_task",
    "update_task_result",
    "heartbeat_flow",
    "heartbeat_task",
)


class Batch:
    """Rows for one transaction, by statement key, in :data:`KEYS` order.

    ``parts`` maps a key to its rows: dicts for run rows, edges and logs; tuples in
    :data:`STATE_COLS` order for states (the bulk path binds them as they are); ``(id, ts)``
    pairs for heartbeats.
    """

    __slots__ = ("id", "origin", "parts")

    def __init__(self, parts: dict[str, list[Any]], id: str | None = None) -> None:
        self.id = id or uuid.uuid4().hex
        self.parts = {k: v for k, v in parts.items() if v}
        # for a batch loaded from the journal: [file, pieces not yet written] shared by the
        # pieces a split makes; the file is removed when the last piece is written
        self.origin: list[Any] | None = None

    def __len__(self) -> int:
        return sum(len(v) for v in self.parts.values())

    def __repr__(self) -> str:
        return f"Batch({self.id!r}, {', '.join(f'{k}={len(v)}' for k, v in self.parts.items())})"

    def items(self) -> Iterator[tuple[str, list[Any]]]:
        for key in KEYS:
            rows = self.parts.get(key)
            if rows:
                yield key, rows

    def rows(self) -> list[tuple[str, Any]]:
        return [(key, row) for key, rows in self.items() for row in rows]

    def split(self) -> tuple[Batch, Batch]:
        """Two halves (ids derived from this one, so a replay splits the same way).

        Transitions marked as left out become plain state rows again: a half may not hold
        the run row that would keep their ids.
        """
        flat = [
            (key, row[:7] if key == "states" and len(row) > 7 else row) for key, row in self.rows()
        ]
        half = len(flat) // 2
        a = Batch(_group(flat[:half]), _child_id(self.id, "0"))
        b = Batch(_group(flat[half:]), _child_id(self.id, "1"))
        if self.origin is not None:
            self.origin[1] += 1
            a.origin = b.origin = self.origin
        return a, b

    def without_heartbeats(self) -> Batch:
        parts = {k: v for k, v in self.items() if not k.startswith("heartbeat_")}
        return Batch(parts, self.id)

    def to_lines(self) -> list[list[Any]]:
        return [[key, row] for key, row in self.rows()]

    @classmethod
    def from_lines(cls, lines: list[list[Any]], id: str) -> Batch:
        flat = [(key, tuple(row) if key == "states" else row) for key, row in lines]
        return cls(_group(flat), id)


def _group(flat: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    parts: dict[str, list[Any]] = {}
    for key, row in flat:
        parts.setdefault(key, []).append(row)
    return parts


def _child_id(parent: str, bit: str) -> str:
    child = f"{parent}{bit}" if "." in parent else f"{parent}.{bit}"
    if len(child) > 64:  # the write_batches key is 64 characters: fold deep paths
        child = uuid.uuid5(uuid.NAMESPACE_OID, child).hex + ".x"
    return child


def process_start() -> str | None:
    """An opaque identity of this process's start, so a reused pid is not taken for it."""
    from orion_nb.store.recovery import process_start_of

    return process_start_of(os.getpid())


# the columns of a run row that its states fill in later
_NOT_STARTED = {
    "state_type": None,
    "state_name": None,
    "start_time": None,
    "end_time": None,
    "run_count": 0,
    "message": None,
}


class Coalescer:
    """Turns events into batches and remembers this process's open runs (writer thread only).

    ``elide``: mark the transitions of task runs whose whole plain life falls in one batch as
    left out (:meth:`leave_out_plain`); the SQLite target honours the mark.
    """

    def __init__(self, elide: bool = False) -> None:
        self.elide = elide
        self._memo: dict[Any, Any] = {}
        self.flow_rows: dict[str, dict[str, Any]] = {}
        self.task_rows: dict[str, dict[str, Any]] = {}
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.pid_start = process_start()

    def _clean_repeated(self, value: Any) -> Any:
        """:func:`clean_text` for values that repeat across runs (a task's name and key)."""
        memo = self._memo
        try:
            return memo[value]
        except (KeyError, TypeError):  # TypeError: not hashable, cleaned every time
            cleaned = clean_text(value)
            if len(memo) >= 4096:
                memo.clear()
            try:
                memo[value] = cleaned
            except TypeError:
                pass
            return cleaned

    def open_runs(self) -> tuple[list[str], list[str]]:
        """Ids of this process's unfinished flow runs and standalone task runs."""
        flows = [rid for rid, r in self.flow_rows.items() if r["pid"] == self.pid]
        tasks = [rid for rid, r in self.task_rows.items() if r["flow_run_id"] is None]
        return flows, tasks

    def heartbeat(self, now: float) -> dict[str, list[Any]]:
        flows, tasks = self.open_runs()
        return {
            "heartbeat_flow": [(rid, now) for rid in flows],
            "heartbeat_task": [(rid, now) for rid in tasks],
        }

    def reinsert_open_runs(self) -> Batch:
        """Rows of every open run again (after the database file was replaced)."""
        return Batch(
            {
                "upsert_flow": list(self.flow_rows.values()),
                "upsert_task": list(self.task_rows.values()),
            }
        )

    def batch(self, events: list[tuple[Any, ...]], extra: dict[str, list[Any]] | None) -> Batch:
        flow_rows = self.flow_rows
        task_rows = self.task_rows
        dirty_flows: dict[str, dict[str, Any]] = {}
        dirty_tasks: dict[str, dict[str, Any]] = {}
        orphans: dict[str, dict[str, dict[str, Any]]] = {"flow": {}, "task": {}}
        states: list[Any] = []
        edges: list[dict[str, Any]] = []
        logs: list[dict[str, Any]] = []
        late_results: dict[str, dict[str, Any]] = {}
        # task runs created in this batch -> the positions of their states in ``states``
        fresh: dict[str, list[int]] | None = {} if self.elide else None
        clean = clean_text
        for ev in events:
            kind = ev[0]
            if kind == "state":
                _, run_id, run_kind, t, state_name, ts, message, rule, run_count, _error = ev
                if state_name.__class__ is not str or state_name not in _CLEAN_NAMES:
                    state_name = clean(state_name)
                if message is not None:
                    message = clean(message)
                if rule is not None:
                    rule = clean(rule)
                rows = task_rows if run_kind == "task" else flow_rows
                row = rows.get(run_id)
                if row is None:
                    row = orphans["task" if run_kind == "task" else "flow"].setdefault(
                        run_id, {"_id": run_id}
                    )
                    for c in ORPHAN_COLS:
                        row.setdefault(c, None)
                else:
                    (dirty_tasks if run_kind == "task" else dirty_flows)[run_id] = row
                row["state_type"] = t
                row["state_name"] = state_name
                row["run_count"] = run_count
                if t == "RUNNING" and "start_time" in row and row["start_time"] is None:
                    row["start_time"] = ts
                    if run_kind == "task" and row["host"] is None:
                        # no "ran" event said otherwise: it ran in this process
                        row["host"], row["pid"] = self.host, self.pid
                if t in _TERMINAL:
                    row["end_time"] = ts
                    if "start_time" in row and row["start_time"] is None:
                        # never ran (cached, upstream failed, cancelled while pending)
                        row["start_time"] = ts
                    row["message"] = message
                if fresh is not None and run_kind == "task":
                    seen = fresh.get(run_id)
                    if seen is not None:
                        seen.append(len(states))
                states.append((run_id, run_kind, t, state_name, ts, message, rule))
            elif kind == "task":
                _, rid, flow_run_id, task_name, task_key, dyn, name, tags, created = ev
                standalone = flow_run_id is None
                row = {
                    "id": rid,
                    "flow_run_id": flow_run_id,
                    "task_name": self._clean_repeated(task_name),
                    "task_key": self._clean_repeated(task_key),
                    "dynamic_key": clean(dyn),
                    "name": clean(name),
                    "tags": [clean(t) for t in tags] if tags else [],
                    "created": created,
                    **_NOT_STARTED,
                    "cache_key": None,
                    "cache_expiration": None,
                    "result_ref": None,
                    "host": self.host if standalone else None,
                    "pid": self.pid if standalone else None,
                    "pid_start": self.pid_start if standalone else None,
                    "worker": None,
                    "heartbeat_at": created if standalone else None,
                    "pending_state_id": None,
                    "running_state_id": None,
                    "final_state_id": None,
                }
                task_rows[rid] = row
                dirty_tasks[rid] = row
                if fresh is not None:
                    fresh[rid] = []
            elif kind == "flow":
                _, rid, flow_name, name, params, tags, parent, source, host, pid, created = ev
                row = {
                    "id": rid,
                    "flow_name": clean(flow_name),
                    "name": clean(name),
                    "parameters": clean_json(params) if params else {},
                    "tags": [clean(t) for t in tags] if tags else [],
                    "parent_task_run_id": parent,
                    "deployment_id": None,
                    "source": clean(source),
                    "host": clean(host),
                    "pid": pid,
                    "created": created,
                    "heartbeat_at": created,
                    "pid_start": self.pid_start if pid == self.pid else None,
                    "expected_start_time": None,
                    "output_path": None,
                    **_NOT_STARTED,
                }
                flow_rows[rid] = row
                dirty_flows[rid] = row
            elif kind == "edge":
                edges.append(
                    {"task_run_id": ev[1], "upstream_task_run_id": ev[2], "parameter": clean(ev[3])}
                )
            elif kind == "log":
                logs.append(
                    {
                        "flow_run_id": ev[1],
                        "task_run_id": ev[2],
                        "level": clean(ev[3]),
                        "timestamp": ev[4],
                        "message": clean(ev[5]),
                    }
                )
            elif kind == "ran":  # where a task run executes (task runners' workers)
                row = task_rows.get(ev[1])
                if row is not None:
                    row["host"], row["pid"], row["worker"] = clean(ev[2]), ev[3], clean(ev[4])
                    dirty_tasks[ev[1]] = row
            elif kind == "cache":
                row = task_rows.get(ev[1])
                if row is None:
                    # the run's final state was written in an earlier batch: update its row
                    row = late_results.setdefault(ev[1], {"_id": ev[1]})
                else:
                    dirty_tasks[ev[1]] = row
                row["cache_key"] = clean(ev[2])
                row["cache_expiration"] = ev[3]
                row["result_ref"] = clean(ev[4])
        if fresh:
            self.leave_out_plain(fresh, dirty_tasks, states)
        parts: dict[str, list[Any]] = {
            "upsert_flow": list(dirty_flows.values()),
            "upsert_task": list(dirty_tasks.values()),
            "states": states,
            "edges": edges,
            "logs": logs,
            "update_flow": list(orphans["flow"].values()),
            "update_task": list(orphans["task"].values()),
            "update_task_result": list(late_results.values()),
        }
        if extra:
            parts.update(extra)
        # finished runs need no further upserts: forget them (the batch holds their rows)
        for rows, dirty in ((flow_rows, dirty_flows), (task_rows, dirty_tasks)):
            for rid, row in dirty.items():
                if row["state_type"] in _TERMINAL:
                    rows.pop(rid, None)
        return Batch(parts)

    @staticmethod
    def leave_out_plain(
        fresh: dict[str, list[int]], rows: dict[str, dict[str, Any]], states: list[Any]
    ) -> None:
        """Mark the states of task runs that lived Pending -> Running -> Completed plainly.

        Plainly: created, run and completed within this batch, exactly those three states
        with their default names, no message and no rule, at the row's ``created``,
        ``start_time`` and ``end_time``, one attempt. Such a run's row says everything its
        three ``states`` rows would; each gets the column of the run that will hold its id.
        """
        for rid, positions in fresh.items():
            if len(positions) != 3:
                continue
            row = rows[rid]
            p, r, c = positions
            sp, sr, sc = states[p], states[r], states[c]
            if (
                sc[2:] == ("COMPLETED", "Completed", row["end_time"], None, None)
                and sr[2:] == ("RUNNING", "Running", row["start_time"], None, None)
                and sp[2:] == ("PENDING", "Pending", row["created"], None, None)
                and row["run_count"] == 1
            ):
                states[p] = sp + _PENDING_ID
                states[r] = sr + _RUNNING_ID
                states[c] = sc + _FINAL_ID
