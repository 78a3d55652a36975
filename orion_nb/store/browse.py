"""Reads for the history browser and the run graph: pages, counts, a chart, what changed.

The browser lists flow runs newest first, 100,000 of them as smoothly as ten, so it never
loads the history: it asks for what is on screen.

- :func:`page` returns one page of the filtered list (``ORDER BY created DESC, id DESC`` with
  ``OFFSET``/``LIMIT``: the list is virtualised, and a scrollbar dragged to the middle needs
  row 50,000 without reading the 49,999 before it into Python), :func:`count` its length.
- :func:`task_counts` counts the task runs of the runs on a page by state in *one* grouped
  query, not by loading task runs.
- :func:`chart` counts runs per hour and state type over a time window (one ``GROUP BY``);
  the caller turns hours into local days.
- :func:`changes` is the cheap incremental read behind live updates: ``states`` is
  append-only with an increasing id (the writer, crash recovery and the scheduler all add a
  row for every transition, and a new run's first state is such a row), so "which runs
  changed since state id N" is a range scan of the primary key. A caller that reads Postgres
  re-reads a few seconds of ids (a transaction can commit after one with a higher id).
- :func:`edges` returns the recorded edges between the task runs of a run tree.

Filters (:class:`RunFilter`) are the browser's and ``orion_nb.browse()``'s: flow names,
states (names or types), a time range on ``created``, deployments (ids or names), tags (a run
must carry every one), a case-insensitive text search in run names (any string, no pattern
syntax), and whether subflow runs are listed. Times come back as epoch milliseconds, ids as
text, and nothing is interpreted as markup or pattern.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, desc, func, or_, select, type_coerce, union

from orion_nb.store.models import Deployment, FlowRun, FlowRunTag, StateRow, TaskRun, TaskRunInput
from orion_nb.store.queries import AnyEngine, _fetch, _since
from orion_nb.store.recovery import stored_epoch

__all__ = [
    "COLUMNS",
    "MAX_CHANGED",
    "RunFilter",
    "changes",
    "chart",
    "count",
    "edges",
    "oldest",
    "options",
    "page",
    "rows_for",
    "task_counts",
]

# the columns of a listed run (rows are lists in this order; times in epoch ms)
COLUMNS = [
    "id",
    "flow_name",
    "name",
    "state_type",
    "state_name",
    "created",
    "start",
    "end",
    "expected_start",
    "deployment_id",
    "deployment",
    "tags",
    "parent",
    "message",
]
MAX_CHANGED = 2000  # more changed runs than this in one poll: the caller refreshes what it shows
_TIME_COLUMNS = ("created", "start", "end", "expected_start")


@dataclass(frozen=True)
class RunFilter:
    """What the list shows. Empty tuples and ``None`` mean "no condition"."""

    flow: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    deployment: tuple[str, ...] = ()
    tag: tuple[str, ...] = ()
    text: str = ""
    subflows: bool = False
    ids: tuple[str, ...] = field(default=(), repr=False)

    def where(self, engine: AnyEngine) -> list[Any]:
        """The SQL conditions of this filter, for ``flow_runs``."""
        conds: list[Any] = []
        if self.flow:
            conds.append(FlowRun.flow_name.in_(self.flow))
        if self.state:
            upper = [s for s in self.state if s.upper() == s]
            named = [s for s in self.state if s.upper() != s]
            parts = []
            if upper:
                parts.append(FlowRun.state_type.in_(upper))
            if named:
                parts.append(FlowRun.state_name.in_(named))
            conds.append(or_(*parts))
        if self.since is not None:
            conds.append(_since(engine, FlowRun.created, self.since))
        if self.until is not None:
            conds.append(~_since(engine, FlowRun.created, self.until))
        if self.deployment:
            conds.append(_deployment_condition(self.deployment))
        for tag in self.tag:
            conds.append(_tag_condition(engine, tag))
        if self.text:
            conds.append(FlowRun.name.icontains(self.text, autoescape=True))
        if not self.subflows:
            conds.append(FlowRun.parent_task_run_id.is_(None))
        if self.ids:
            conds.append(FlowRun.id.in_(self.ids))
        return conds


def _deployment_condition(values: tuple[str, ...]) -> Any:
    """Deployment ids, or names looked up in ``deployments`` (a name is never cast to a uuid)."""
    ids, names = [], []
    for v in values:
        try:
            ids.append(str(uuid.UUID(v)))
        except ValueError:
            names.append(v)
    parts = []
    if ids:
        parts.append(FlowRun.deployment_id.in_(ids))
    if names:
        parts.append(
            FlowRun.deployment_id.in_(select(Deployment.id).where(Deployment.name.in_(names)))
        )
    return or_(*parts)


def _tag_condition(engine: AnyEngine, tag: str) -> Any:
    """The run carries ``tag`` (compared as a value, never as a pattern).

    Served by the ``flow_run_tags`` index, which triggers keep in step with ``flow_runs.tags``.
    """
    return FlowRun.id.in_(select(FlowRunTag.flow_run_id).where(FlowRunTag.tag == tag))


def _ms(value: Any) -> float | None:
    """A stored timestamp (SQLite text or a datetime) as epoch milliseconds."""
    seconds = stored_epoch(value)
    return None if seconds is None else seconds * 1000.0


def _list_columns(engine: AnyEngine) -> list[Any]:
    sqlite = engine.dialect.name == "sqlite"

    def raw(col: Any, name: str) -> Any:
        return type_coerce(col, String).label(name) if sqlite else col.label(name)

    return [
        FlowRun.id,
        FlowRun.flow_name,
        FlowRun.name,
        FlowRun.state_type,
        FlowRun.state_name,
        raw(FlowRun.created, "created"),
        raw(FlowRun.start_time, "start"),
        raw(FlowRun.end_time, "end"),
        raw(FlowRun.expected_start_time, "expected_start"),
        FlowRun.deployment_id,
        select(Deployment.name)
        .where(Deployment.id == FlowRun.deployment_id)
        .scalar_subquery()
        .label("deployment"),
        raw(FlowRun.tags, "tags"),
        FlowRun.parent_task_run_id,
        FlowRun.message,
    ]


def _rows(raw: list[Any]) -> list[list[Any]]:
    import json

    out = []
    idx = {c: i for i, c in enumerate(COLUMNS)}
    times = [idx[c] for c in _TIME_COLUMNS]
    for r in raw:
        row = list(r)
        for i in times:
            row[i] = _ms(row[i])
        for key in ("id", "deployment_id", "parent"):
            if row[idx[key]] is not None:
                row[idx[key]] = str(row[idx[key]])
        tags = row[idx["tags"]]
        if isinstance(tags, str):
            try:
                tags = json.loads(tags)
            except ValueError:
                tags = []
        row[idx["tags"]] = [str(t) for t in tags] if isinstance(tags, list) else []
        out.append(row)
    return out


def _order(stmt: Any) -> Any:
    return stmt.order_by(desc(FlowRun.created), desc(FlowRun.id))


async def page(engine: AnyEngine, f: RunFilter, offset: int, limit: int) -> list[list[Any]]:
    """Rows ``offset`` to ``offset + limit`` of the filtered list, newest first."""
    stmt = _order(select(*_list_columns(engine)).where(*f.where(engine)))
    stmt = stmt.offset(max(0, offset)).limit(max(0, limit))
    _, raw = await _fetch(engine, stmt)
    return _rows(raw)


async def rows_for(engine: AnyEngine, f: RunFilter, ids: list[str]) -> list[list[Any]]:
    """The rows of the runs ``ids`` that match ``f`` (runs that no longer match are absent)."""
    if not ids:
        return []
    stmt = select(*_list_columns(engine)).where(*f.where(engine), FlowRun.id.in_(ids))
    _, raw = await _fetch(engine, _order(stmt))
    return _rows(raw)


async def count(engine: AnyEngine, f: RunFilter) -> int:
    """How many runs the filtered list holds."""
    stmt = select(func.count()).select_from(FlowRun).where(*f.where(engine))
    _, raw = await _fetch(engine, stmt)
    return int(raw[0][0]) if raw else 0


async def oldest(engine: AnyEngine, f: RunFilter) -> float | None:
    """When the oldest run of the filtered list was created (epoch ms), or None."""
    created = type_coerce(FlowRun.created, String) if engine.dialect.name == "sqlite" else None
    col = created if created is not None else FlowRun.created
    stmt = select(func.min(col)).where(*f.where(engine))
    _, raw = await _fetch(engine, stmt)
    return _ms(raw[0][0]) if raw else None


async def task_counts(engine: AnyEngine, run_ids: list[str]) -> dict[str, dict[str, int]]:
    """Task runs per state name of each flow run (its own, not its subflows'), one query."""
    if not run_ids:
        return {}
    stmt = (
        select(TaskRun.flow_run_id, TaskRun.state_name, func.count())
        .where(TaskRun.flow_run_id.in_(run_ids), ~TaskRun.task_key.startswith("subflow:"))
        .group_by(TaskRun.flow_run_id, TaskRun.state_name)
    )
    _, raw = await _fetch(engine, stmt)
    out: dict[str, dict[str, int]] = {}
    for rid, name, n in raw:
        out.setdefault(str(rid), {})[str(name or "Pending")] = int(n)
    return out


async def chart(
    engine: AnyEngine, f: RunFilter, start: datetime, end: datetime
) -> list[tuple[float, str, int]]:
    """Runs per UTC hour and state type created in ``[start, end)``: (hour epoch ms, type, n)."""
    window = RunFilter(
        **{**f.__dict__, "since": _later(f.since, start), "until": _earlier(f.until, end)}
    )
    if engine.dialect.name == "sqlite":
        hour = func.substr(type_coerce(FlowRun.created, String), 1, 13)
    else:
        hour = func.date_trunc("hour", func.timezone("UTC", FlowRun.created))
    stmt = (
        select(hour.label("hour"), FlowRun.state_type, func.count())
        .where(*window.where(engine))
        .group_by(hour, FlowRun.state_type)
    )
    _, raw = await _fetch(engine, stmt)
    out = []
    for h, stype, n in raw:
        if isinstance(h, str):
            when = datetime.strptime(h, "%Y-%m-%d %H").replace(tzinfo=UTC)
        else:
            when = h.replace(tzinfo=UTC) if h.tzinfo is None else h
        out.append((when.timestamp() * 1000.0, str(stype or "PENDING"), int(n)))
    return out


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None else max(_aware(a), _aware(b))


def _earlier(a: datetime | None, b: datetime) -> datetime:
    return b if a is None else min(_aware(a), _aware(b))


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=UTC)


async def options(engine: AnyEngine, recent: int = 2000) -> dict[str, list[Any]]:
    """Values to offer in the filters: flow names, deployments, and the tags of recent runs."""
    import json

    _, flows = await _fetch(
        engine, select(FlowRun.flow_name).distinct().order_by(FlowRun.flow_name)
    )
    _, deps = await _fetch(engine, select(Deployment.id, Deployment.name).order_by(Deployment.name))
    sqlite = engine.dialect.name == "sqlite"
    tags_col = type_coerce(FlowRun.tags, String) if sqlite else FlowRun.tags
    _, tag_rows = await _fetch(
        engine, select(tags_col).order_by(desc(FlowRun.created)).limit(recent)
    )
    tags: set[str] = set()
    for (value,) in tag_rows:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, list):
            tags.update(str(t) for t in value)
    return {
        "flows": [str(r[0]) for r in flows],
        "deployments": [[str(r[0]), str(r[1])] for r in deps],
        "tags": sorted(tags),
    }


async def changes(engine: AnyEngine, after: int) -> tuple[int, list[str], bool]:
    """Flow runs with a new state, or a task run with a new state, since state id ``after``.

    Returns the newest state id, the flow run ids (at most :data:`MAX_CHANGED`), and whether
    there were more (then the caller refreshes what it shows instead of single rows).
    """
    _, top = await _fetch(
        engine,
        select(
            select(func.max(StateRow.id)).scalar_subquery(),
            select(func.max(TaskRun.final_state_id)).scalar_subquery(),
        ),
    )
    newest = max((int(v) for v in (top[0] if top else ()) if v is not None), default=0)
    if newest <= after:
        return newest, [], False
    recent = select(StateRow.run_id, StateRow.run_kind).where(StateRow.id > after)
    recent_sq = recent.subquery()
    flows = select(recent_sq.c.run_id).where(recent_sq.c.run_kind == "flow")
    tasks = (
        select(TaskRun.flow_run_id)
        .join(recent_sq, TaskRun.id == recent_sq.c.run_id)
        .where(recent_sq.c.run_kind == "task")
    )
    # task runs whose transitions the writer left out (store/state_log.py): their final id
    # is the largest of the three
    plain = select(TaskRun.flow_run_id).where(TaskRun.final_state_id > after)
    stmt = union(flows, tasks, plain).limit(MAX_CHANGED + 1)
    _, raw = await _fetch(engine, stmt)
    ids = [str(r[0]) for r in raw if r[0] is not None]
    return newest, ids[:MAX_CHANGED], len(ids) > MAX_CHANGED


async def edges(engine: AnyEngine, flow_run_ids: list[str]) -> list[tuple[str, str, str]]:
    """The edges (task run, upstream task run, parameter) into task runs of these flow runs."""
    if not flow_run_ids:
        return []
    stmt = (
        select(TaskRunInput.task_run_id, TaskRunInput.upstream_task_run_id, TaskRunInput.parameter)
        .join(TaskRun, TaskRun.id == TaskRunInput.task_run_id)
        .where(TaskRun.flow_run_id.in_(flow_run_ids))
        .order_by(TaskRunInput.id)
    )
    _, raw = await _fetch(engine, stmt)
    return [(str(a), str(b), str(p)) for a, b, p in raw]
