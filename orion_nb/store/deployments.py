"""Deployments and their scheduled runs: all the SQL of ``orion-nb serve`` (issue 8).

Every function takes a *sync* SQLAlchemy ``Connection`` inside a transaction (on Postgres the
caller runs it through ``AsyncConnection.run_sync``), so one body of code serves both
databases.

How a slot is run exactly once, by any number of ``serve`` processes on any hosts:

1. each process inserts the slots it wants ahead as ``Scheduled`` flow runs; the unique key
   on ``(deployment_id, expected_start_time)`` turns a second insert of the same slot into a
   no-op (``ON CONFLICT DO NOTHING``), so a slot has exactly one row;
2. a process *claims* a due slot with one conditional ``UPDATE`` that sets ``host``/``pid``
   only while the row is still ``SCHEDULED`` and unclaimed (``pid IS NULL``). On Postgres the
   row is first locked with ``SELECT ... FOR UPDATE SKIP LOCKED``, so a competing process
   skips it instead of queueing behind the lock. The conditional update alone is what makes
   the claim atomic, on SQLite as on Postgres; exactly one claimer sees ``rowcount == 1``;
3. the claimed run is then driven by the engine itself (Pending, Running, a final state), in
   the process that runs the script or notebook, under the slot's id.

Marking a slot Late or skipping it uses the same condition, so it can never touch a slot that
another process has claimed. A claimed row carries the claimer's host and pid, so if that
process dies the next process on the host marks the run Crashed (``store.writer``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from orion_nb.store.models import Deployment, FlowRun, StateRow, TaskRun

__all__ = [
    "claim_run",
    "close_run",
    "create_run",
    "delete_deployment",
    "due_runs",
    "get_deployment",
    "latest_slot",
    "list_deployments",
    "mark_late",
    "run_info",
    "schedule_slots",
    "set_deployment",
    "set_next_run_at",
    "set_output_path",
    "set_paused",
    "skip_runs",
    "upsert_deployment",
]

_OPEN = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED")
_T_DEP: Any = Deployment.__table__
_T_FLOW: Any = FlowRun.__table__
_T_TASK: Any = TaskRun.__table__
_T_STATE: Any = StateRow.__table__


def _row(r: Any) -> dict[str, Any]:
    out = dict(r._mapping)
    for k in ("id", "deployment_id"):
        if out.get(k) is not None:
            out[k] = str(out[k])
    return out


def _state(conn: Any, run_id: str, type_: str, name: str, ts: datetime, message: str) -> None:
    conn.execute(
        insert(_T_STATE).values(
            run_id=run_id,
            run_kind="flow",
            type=type_,
            name=name,
            timestamp=ts,
            message=message,
            rule=None,
        )
    )


def _insert_ignoring(conn: Any, table: Any, keys: list[str]) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=keys)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing(index_elements=keys)


# -- deployments -------------------------------------------------------------------------------


_SCHEDULE_COLS = ("cron", "interval_seconds", "timezone", "anchor")


def upsert_deployment(conn: Any, values: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Create the deployment ``values["name"]`` or update it; returns the stored row.

    An existing deployment keeps its id, its paused flag and its creation time. When its
    schedule changes, the runs scheduled ahead for the old one are removed.
    """
    existing = conn.execute(select(_T_DEP).where(_T_DEP.c.name == values["name"])).first()
    if existing is None:
        row = {"id": str(uuid.uuid4()), "paused": False, "created": now, **values, "updated": now}
        result = conn.execute(_insert_ignoring(conn, _T_DEP, ["name"]).values(**row))
        if result.rowcount == 0:  # another process registered it a moment ago
            return upsert_deployment(conn, values, now)
    else:
        old = _row(existing)
        if any(_same(old.get(c)) != _same(values.get(c)) for c in _SCHEDULE_COLS):
            _delete_runs(conn, _unclaimed_ids(conn, str(existing.id)))
        conn.execute(update(_T_DEP).where(_T_DEP.c.id == existing.id).values(**values, updated=now))
    found = get_deployment(conn, values["name"])
    assert found is not None
    return found


def get_deployment(conn: Any, key: str) -> dict[str, Any] | None:
    """The deployment named ``key`` (or with that id)."""
    row = conn.execute(select(_T_DEP).where(_T_DEP.c.name == key)).first()
    if row is None:
        try:
            uuid.UUID(key)
        except ValueError:
            return None
        row = conn.execute(select(_T_DEP).where(_T_DEP.c.id == key)).first()
    return None if row is None else _row(row)


def list_deployments(conn: Any) -> list[dict[str, Any]]:
    """Every deployment with its next scheduled slot and its latest run (name order)."""
    rows = [_row(r) for r in conn.execute(select(_T_DEP).order_by(_T_DEP.c.name)).all()]
    for d in rows:
        nxt = conn.execute(
            select(func.min(_T_FLOW.c.expected_start_time)).where(
                _T_FLOW.c.deployment_id == d["id"],
                _T_FLOW.c.state_type == "SCHEDULED",
                _T_FLOW.c.pid.is_(None),
            )
        ).scalar()
        d["next_slot"] = nxt
        last = conn.execute(
            select(_T_FLOW.c.state_name, _T_FLOW.c.start_time, _T_FLOW.c.end_time)
            .where(_T_FLOW.c.deployment_id == d["id"], _T_FLOW.c.state_type != "SCHEDULED")
            .order_by(_T_FLOW.c.created.desc())
            .limit(1)
        ).first()
        d["last_state"] = None if last is None else last.state_name
        d["last_end"] = None if last is None else last.end_time
    return rows


def set_deployment(conn: Any, deployment_id: str, **values: Any) -> None:
    """Update some columns of a deployment (``flow_name`` learnt from a run, for example)."""
    conn.execute(update(_T_DEP).where(_T_DEP.c.id == deployment_id).values(**values))


def set_next_run_at(conn: Any, deployment_id: str, when: datetime | None) -> None:
    conn.execute(update(_T_DEP).where(_T_DEP.c.id == deployment_id).values(next_run_at=when))


def _unclaimed(deployment_id: str) -> Any:
    return (
        (_T_FLOW.c.deployment_id == deployment_id)
        & (_T_FLOW.c.state_type == "SCHEDULED")
        & _T_FLOW.c.pid.is_(None)
    )


def _same(value: Any) -> Any:
    """A schedule column's value in a comparable form (SQLite returns naive timestamps)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _unclaimed_ids(conn: Any, deployment_id: str) -> list[str]:
    return [str(r[0]) for r in conn.execute(select(_T_FLOW.c.id).where(_unclaimed(deployment_id)))]


def _delete_runs(conn: Any, ids: list[str]) -> int:
    if not ids:
        return 0
    conn.execute(delete(_T_STATE).where(_T_STATE.c.run_id.in_(ids)))
    return int(conn.execute(delete(_T_FLOW).where(_T_FLOW.c.id.in_(ids))).rowcount or 0)


def set_paused(conn: Any, deployment_id: str, paused: bool, now: datetime) -> int:
    """Pause or resume; pausing removes the slots scheduled ahead (they are made again on resume).

    Returns how many scheduled runs were removed.
    """
    conn.execute(
        update(_T_DEP).where(_T_DEP.c.id == deployment_id).values(paused=paused, updated=now)
    )
    if not paused:
        return 0
    conn.execute(update(_T_DEP).where(_T_DEP.c.id == deployment_id).values(next_run_at=None))
    return _delete_runs(conn, _unclaimed_ids(conn, deployment_id))


def delete_deployment(conn: Any, deployment_id: str) -> int:
    """Remove a deployment and its unclaimed scheduled runs; runs that ran stay in the history.

    Returns how many scheduled runs were removed.
    """
    removed = _delete_runs(conn, _unclaimed_ids(conn, deployment_id))
    conn.execute(delete(_T_DEP).where(_T_DEP.c.id == deployment_id))
    return removed


# -- scheduled runs ----------------------------------------------------------------------------


def latest_slot(conn: Any, deployment_id: str) -> datetime | None:
    """The latest slot that has a run row (scheduled, run or skipped)."""
    value: datetime | None = conn.execute(
        select(func.max(_T_FLOW.c.expected_start_time)).where(
            _T_FLOW.c.deployment_id == deployment_id
        )
    ).scalar()
    return value


def _scheduled_row(
    deployment: dict[str, Any],
    rid: str,
    name: str,
    parameters: dict[str, Any] | None,
    slot: datetime,
    now: datetime,
) -> dict[str, Any]:
    """The ``flow_runs`` row of a run of ``deployment`` scheduled for ``slot``."""
    return {
        "id": rid,
        "flow_name": deployment["flow_name"],
        "name": name,
        "parameters": parameters or {},
        "tags": [],
        "state_type": "SCHEDULED",
        "state_name": "Scheduled",
        "created": now,
        "run_count": 0,
        "deployment_id": deployment["id"],
        "source": deployment["path"],
        "expected_start_time": slot,
    }


def schedule_slots(
    conn: Any,
    deployment: dict[str, Any],
    slots: Iterable[datetime],
    now: datetime,
    run_name: Callable[[], str],
) -> int:
    """Insert a ``Scheduled`` run for each slot that has none; returns how many were new."""
    stmt = _insert_ignoring(conn, _T_FLOW, ["deployment_id", "expected_start_time"])
    made = 0
    for slot in slots:
        rid = str(uuid.uuid4())
        row = _scheduled_row(deployment, rid, run_name(), deployment.get("parameters"), slot, now)
        result = conn.execute(stmt.values(**row))
        if result.rowcount:
            made += 1
            _state(
                conn,
                rid,
                "SCHEDULED",
                "Scheduled",
                now,
                f"deployment {deployment['name']!r}: slot {slot.isoformat()}",
            )
    return made


def create_run(
    conn: Any,
    deployment: dict[str, Any],
    parameters: dict[str, Any],
    now: datetime,
    name: str,
    host: str,
    pid: int,
) -> str:
    """A run of ``deployment`` for right now (``deployments run``), claimed by ``host``/``pid``.

    It is claimed as it is made, so no ``serve`` process can take it.
    """
    rid = str(uuid.uuid4())
    row = _scheduled_row(deployment, rid, name, parameters, now, now)
    conn.execute(insert(_T_FLOW).values(**row, host=host, pid=pid))
    _state(conn, rid, "SCHEDULED", "Scheduled", now, "started by hand (orion-nb deployments run)")
    return rid


def due_runs(conn: Any, deployment_id: str, now: datetime) -> list[dict[str, Any]]:
    """Unclaimed scheduled runs whose slot has come, oldest first."""
    rows = conn.execute(
        select(
            _T_FLOW.c.id,
            _T_FLOW.c.expected_start_time,
            _T_FLOW.c.state_name,
            _T_FLOW.c.parameters,
            _T_FLOW.c.name,
        )
        .where(_unclaimed(deployment_id), _T_FLOW.c.expected_start_time <= now)
        .order_by(_T_FLOW.c.expected_start_time)
    ).all()
    return [_row(r) for r in rows]


def _conditional(conn: Any, ids: Iterable[str], values: dict[str, Any], *extra: Any) -> list[str]:
    done = []
    for rid in ids:
        result = conn.execute(
            update(_T_FLOW)
            .where(
                _T_FLOW.c.id == rid,
                _T_FLOW.c.state_type == "SCHEDULED",
                _T_FLOW.c.pid.is_(None),
                *extra,
            )
            .values(**values)
        )
        if result.rowcount:
            done.append(rid)
    return done


def mark_late(conn: Any, messages: dict[str, str], now: datetime) -> list[str]:
    """Mark unclaimed runs Late (still SCHEDULED: they may run); returns the ids changed."""
    done = _conditional(conn, messages, {"state_name": "Late"}, _T_FLOW.c.state_name != "Late")
    for rid in done:
        _state(conn, rid, "SCHEDULED", "Late", now, messages[rid])
    return done


def skip_runs(conn: Any, messages: dict[str, str], now: datetime) -> list[str]:
    """End unclaimed runs as Cancelled (a missed slot, skipped); returns the ids changed."""
    values = {
        "state_type": "CANCELLED",
        "state_name": "Cancelled",
        "start_time": now,
        "end_time": now,
    }
    done = []
    for rid in _conditional(conn, messages, values):
        conn.execute(update(_T_FLOW).where(_T_FLOW.c.id == rid).values(message=messages[rid]))
        _state(conn, rid, "CANCELLED", "Cancelled", now, messages[rid])
        done.append(rid)
    return done


def claim_run(conn: Any, run_id: str, host: str, pid: int) -> bool:
    """Claim a scheduled run for this process; True for exactly one claimer (see the module)."""
    locked = conn.execute(
        select(_T_FLOW.c.id)
        .where(_T_FLOW.c.id == run_id, _T_FLOW.c.state_type == "SCHEDULED", _T_FLOW.c.pid.is_(None))
        .with_for_update(skip_locked=True)
    ).first()
    if locked is None:
        return False
    return bool(_conditional(conn, [run_id], {"host": host, "pid": pid}))


def run_info(conn: Any, run_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(
            _T_FLOW.c.id,
            _T_FLOW.c.flow_name,
            _T_FLOW.c.name,
            _T_FLOW.c.state_type,
            _T_FLOW.c.state_name,
            _T_FLOW.c.message,
            _T_FLOW.c.pid,
            _T_FLOW.c.output_path,
            _T_FLOW.c.deployment_id,
        ).where(_T_FLOW.c.id == run_id)
    ).first()
    return None if row is None else _row(row)


def close_run(
    conn: Any, run_id: str, state_type: str, state_name: str, message: str, now: datetime
) -> int:
    """End a run that its process left open, and its open task runs and subflows.

    Used when the process running a scheduled run exits without finishing it (killed after
    the grace period, the kernel died). Finished runs are left as they are. Returns how many
    runs were ended.
    """
    flows, frontier, tasks = [run_id], [run_id], []
    while frontier:
        found = [
            str(r[0])
            for r in conn.execute(select(_T_TASK.c.id).where(_T_TASK.c.flow_run_id.in_(frontier)))
        ]
        tasks += found
        frontier = (
            [
                str(r[0])
                for r in conn.execute(
                    select(_T_FLOW.c.id).where(_T_FLOW.c.parent_task_run_id.in_(found))
                )
            ]
            if found
            else []
        )
        flows += frontier
    ended = 0
    for kind, table, ids in (("flow", _T_FLOW, flows), ("task", _T_TASK, tasks)):
        if not ids:
            continue
        open_ids = [
            str(r[0])
            for r in conn.execute(
                select(table.c.id).where(table.c.id.in_(ids), table.c.state_type.in_(_OPEN))
            )
        ]
        if not open_ids:
            continue
        conn.execute(
            update(table)
            .where(table.c.id.in_(open_ids))
            .values(state_type=state_type, state_name=state_name, end_time=now, message=message)
        )
        conn.execute(
            insert(_T_STATE),
            [
                {
                    "run_id": i,
                    "run_kind": kind,
                    "type": state_type,
                    "name": state_name,
                    "timestamp": now,
                    "message": message,
                    "rule": None,
                }
                for i in open_ids
            ],
        )
        ended += len(open_ids)
    return ended


def set_output_path(conn: Any, run_id: str, path: str) -> None:
    """Record the file a run left behind for people to read (the executed notebook)."""
    conn.execute(update(_T_FLOW).where(_T_FLOW.c.id == run_id).values(output_path=path))
