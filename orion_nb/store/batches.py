"""From engine events to batches of rows: coalescing, cleaning, heartbeats.

The writer drains its queue every flush window and hands the events to the coalescer
(:mod:`orion_nb.store.coalesce`), which turns them into one :class:`Batch`.

A batch is the unit of everything that can go wrong later, so it is self-contained:

- it has an id, written to ``write_batches`` in the same transaction as its rows, so a batch
  whose commit was lost on the way back, or that is replayed from the journal, is recognised
  and not written twice;
- it can be split in halves (:meth:`Batch.split`, with derived ids) to find a row the
  database refuses: rows are independent (no foreign keys), so any subset can be written;
- it serialises to plain JSON for the journal (:meth:`Batch.to_lines` / :meth:`Batch.from_lines`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

__all__ = [
    "KEYS",
    "LEFT_OUT_COLS",
    "ORPHAN_COLS",
    "PLAIN_LIFE",
    "RESULT_COLS",
    "STATE_COLS",
    "Batch",
]

# a state for a run whose row was already written as finished updates only these columns
ORPHAN_COLS = ("state_type", "state_name", "run_count", "end_time", "message")
# a result recorded for a task run whose row was already written as finished
RESULT_COLS = ("cache_key", "cache_expiration", "result_ref")
STATE_COLS = ("run_id", "run_kind", "type", "name", "timestamp", "message", "rule")
# A state row may carry an eighth item, the task run column that takes its id instead of a row
# in ``states`` (see :mod:`orion_nb.store.coalesce`): a target that writes the run's row in
# the same transaction stores the id there; any other target writes the row as usual.
# A plain life, transition by transition: (the run's column that keeps the transition's id,
# state type, state name, the run's column holding its time). The coalescer, the readers
# (store/state_log.py) and the SQLite target all read it from here.
PLAIN_LIFE = (
    ("pending_state_id", "PENDING", "Pending", "created"),
    ("running_state_id", "RUNNING", "Running", "start_time"),
    ("final_state_id", "COMPLETED", "Completed", "end_time"),
)
LEFT_OUT_COLS = tuple(col for col, *_ in PLAIN_LIFE)
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
