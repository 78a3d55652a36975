"""The transition log as one selectable: the ``states`` rows and the transitions left out.

The SQLite writer leaves out the three ``states`` rows of a task run that lived plainly
(Pending -> Running -> Completed, no rule, no message; see :mod:`orion_nb.store.batches`) and
keeps their ids on the run's row instead. :func:`transitions` puts them back: every reader of
the log (``states()``, ``run_tree()``, the browser's change feed) selects from it, so what
users see (rows, ids, order) is what it would be had the rows been written.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Text, cast, desc, literal, null, select, type_coerce, union_all

from orion_nb.store.batches import PLAIN_LIFE
from orion_nb.store.models import StateRow, TaskRun

__all__ = ["LEFT_OUT", "transitions"]

# (column holding the id, state type, state name, the run's time it happened at)
LEFT_OUT = tuple(
    (getattr(TaskRun, col), type_, name, getattr(TaskRun, at))
    for col, type_, name, at in PLAIN_LIFE
)


def _time(sqlite: bool, col: Any) -> Any:
    # SQLite: the stored text, converted in one vectorised step by the frame (queries._cols)
    return type_coerce(col, String) if sqlite else col


def transitions(
    sqlite: bool,
    *,
    states_where: Any = None,
    tasks_where: Any = None,
    newest: int | None = None,
) -> Any:
    """A subquery with the columns of ``states``: its rows and the left-out transitions.

    ``states_where`` / ``tasks_where`` filter the ``states`` rows and the task runs whose
    transitions are put back (both or neither, for the same runs). ``newest``: at least the
    ``newest`` highest ids are in it (each part is cut to that many first; a run's final id
    is its largest, so the runs with the ``newest`` largest final ids hold every left-out
    transition among the ``newest`` largest ids).
    """
    kept = select(
        StateRow.id,
        StateRow.run_id,
        StateRow.run_kind,
        StateRow.type,
        StateRow.name,
        _time(sqlite, StateRow.timestamp).label("timestamp"),
        StateRow.message,
        StateRow.rule,
    )
    runs = select(
        TaskRun.id,
        TaskRun.created,
        TaskRun.start_time,
        TaskRun.end_time,
        *(c for c, *_ in LEFT_OUT),
    ).where(TaskRun.final_state_id.is_not(None))
    if states_where is not None:
        kept = kept.where(states_where)
    if tasks_where is not None:
        runs = runs.where(tasks_where)
    if newest is not None:
        kept = select(*kept.order_by(desc(StateRow.id)).limit(newest).subquery().c)
        runs = runs.order_by(desc(TaskRun.final_state_id)).limit(newest)
    r = runs.subquery()
    parts = [kept]
    for id_col, type_, name, at in LEFT_OUT:
        parts.append(
            select(
                r.c[id_col.key].label("id"),
                r.c.id.label("run_id"),
                literal("task", String).label("run_kind"),
                literal(type_, String).label("type"),
                literal(name, Text).label("name"),
                _time(sqlite, r.c[at.key]).label("timestamp"),
                cast(null(), Text).label("message"),
                cast(null(), Text).label("rule"),
            )
        )
    return union_all(*parts).subquery("transitions")
