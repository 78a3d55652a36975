"""What the writer says about a row the database refused (one row, after bisecting a batch).

The row is dropped; an ERROR log entry of its run takes its place, naming what was lost and
the database's reason (without a password: :func:`~orion_nb.settings.redact`).
"""

from __future__ import annotations

from typing import Any

from orion_nb.settings import redact
from orion_nb.store.sanitize import clean_text

__all__ = ["describe", "refusal", "unreadable"]


def refusal(
    key: str, row: Any, exc: BaseException, url: str
) -> tuple[str | None, str | None, str, str, str]:
    """(flow run id, task run id, what the row was, the reason, the ERROR log message)."""
    flow_id, task_id, what = describe(key, row)
    error = redact(f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}", url)
    message = clean_text(
        f"orion_nb could not store {what} in the history and dropped it; the database "
        f"refused it: {error[:500]}",
        limit=2000,
    )
    return flow_id, task_id, what, error, message


def unreadable(n: int, exc: BaseException) -> str:
    """What the writer says when it could not turn ``n`` events into records (a bug)."""
    return (
        f"orion_nb could not turn {n:,} run events into history records "
        f"({type(exc).__name__}: {exc}); they were dropped and the writer goes on with the "
        "next ones. This is a bug in orion_nb: please report it with this message."
    )


def describe(key: str, row: Any) -> tuple[str | None, str | None, str]:
    """The run a row belongs to (flow run id, task run id) and how to name the row."""
    if key == "upsert_flow":
        return row["id"], None, f"the record of flow run {row['id']!s:.40}"
    if key == "upsert_task":
        return row["flow_run_id"], row["id"], f"the record of task run {row['id']!s:.40}"
    if key == "states":
        flow = row[0] if row[1] == "flow" else None
        task = row[0] if row[1] == "task" else None
        return flow, task, f"a {row[3]!s:.40} state of {row[1]} run {row[0]!s:.40}"
    if key == "logs":
        return row["flow_run_id"], row["task_run_id"], "a log record"
    if key == "edges":
        return None, row["task_run_id"], "an input edge"
    if key.startswith("update_"):
        kind = key.removeprefix("update_")
        ids = (row["_id"], None) if kind == "flow" else (None, row["_id"])
        return ids[0], ids[1], f"a state update of {kind} run {row['_id']!s:.40}"
    return None, None, f"a {key} row"
