"""SQLAlchemy models of the history database (DESIGN.md, "Data model").

Types behave the same on SQLite and Postgres: ids are ``Uuid`` (text on SQLite, ``uuid`` on
Postgres), timestamps are stored in UTC and read back timezone-aware, JSON columns use the
generic ``JSON`` type (``JSONB`` on Postgres).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    event,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import CreateIndex
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "Deployment",
    "FlowRun",
    "FlowRunTag",
    "Log",
    "StateRow",
    "TaskRun",
    "TaskRunInput",
    "WriteBatch",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s__%(column_0_N_name)s",
    "uq": "uq_%(table_name)s__%(column_0_N_name)s",
    "ck": "ck_%(table_name)s__%(constraint_name)s",
    "fk": "fk_%(table_name)s__%(column_0_name)s__%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC that always comes back timezone-aware.

    SQLite has no timezone-aware type, so values are stored as naive UTC there and the
    timezone is reattached on the way out; Postgres uses ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, (int, float)):
            value = datetime.fromtimestamp(value, UTC)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONType(TypeDecorator[Any]):
    """JSON everywhere, ``jsonb`` on Postgres.

    The Postgres type is looked up only when a Postgres dialect asks for it, so SQLite users
    never import SQLAlchemy's Postgres dialect (a tenth of the first run's import time).
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


# UUIDs as 36-character text on SQLite, the native uuid type on Postgres
IdType = Uuid(as_uuid=False).with_variant(String(36), "sqlite")
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FlowRun(Base):
    __tablename__ = "flow_runs"
    __table_args__ = (
        # a scheduled slot is claimed by inserting its run: a second claim of the same slot
        # (another serve process) fails on this key (NULLs, i.e. unscheduled runs, never clash)
        UniqueConstraint("deployment_id", "expected_start_time"),
    )

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    flow_name: Mapped[str] = mapped_column(Text)  # indexed with created (issue 11, below)
    name: Mapped[str] = mapped_column(Text)
    parameters: Mapped[Any] = mapped_column(JSONType, default=dict)
    state_type: Mapped[str | None] = mapped_column(String(20))
    state_name: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    tags: Mapped[Any] = mapped_column(JSONType, default=list)
    parent_task_run_id: Mapped[str | None] = mapped_column(IdType, index=True)
    deployment_id: Mapped[str | None] = mapped_column(IdType)
    source: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    # opaque identity of the process start (so a reused pid is not taken for the same process)
    pid_start: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message: Mapped[str | None] = mapped_column(Text)
    # the scheduled slot this run fills (deployment runs); None for runs started by hand
    expected_start_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # a file the run left behind for people to read (e.g. the executed notebook)
    output_path: Mapped[str | None] = mapped_column(Text)


class TaskRun(Base):
    __tablename__ = "task_runs"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    # flow_run_id and task_name are indexed with created (issue 11, below)
    flow_run_id: Mapped[str | None] = mapped_column(IdType)
    task_name: Mapped[str] = mapped_column(Text)
    task_key: Mapped[str] = mapped_column(Text)
    dynamic_key: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    cache_key: Mapped[str | None] = mapped_column(Text)
    cache_expiration: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result_ref: Mapped[str | None] = mapped_column(Text)
    state_type: Mapped[str | None] = mapped_column(String(20))
    state_name: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    tags: Mapped[Any] = mapped_column(JSONType, default=list)
    message: Mapped[str | None] = mapped_column(Text)
    # where the run executed: host and pid of the process that ran the user's code, and the
    # task runner's worker (a Dask worker address, a process-pool pid) when it was not the
    # flow's own process; heartbeat for standalone task runs (crash detection)
    host: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    pid_start: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A run whose whole life was Pending -> Running -> Completed, with no rule or message, has
    # no rows in ``states`` (the SQLite writer leaves them out: three rows less per task run).
    # Its three transitions are these ids of the ``states`` sequence, at ``created``,
    # ``start_time`` and ``end_time``; queries.py puts them back into every transition log, so
    # readers see the same rows, ids and order as if they had been written. NULL otherwise.
    pending_state_id: Mapped[int | None] = mapped_column(BigId)
    running_state_id: Mapped[int | None] = mapped_column(BigId)
    final_state_id: Mapped[int | None] = mapped_column(BigId)


class TaskRunInput(Base):
    """An edge: ``task_run_id`` received data from (or waited for) ``upstream_task_run_id``."""

    __tablename__ = "task_run_inputs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_run_id: Mapped[str] = mapped_column(IdType, index=True)
    upstream_task_run_id: Mapped[str] = mapped_column(IdType, index=True)
    parameter: Mapped[str] = mapped_column(Text)


class StateRow(Base):
    """One transition of a flow or task run, with the rule that decided it (if any)."""

    __tablename__ = "states"
    # AUTOINCREMENT on SQLite: the writer takes ids for the transitions it leaves out (see
    # TaskRun.pending_state_id) by moving the table's sequence, so no later insert reuses them
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(IdType, index=True)
    run_kind: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    message: Mapped[str | None] = mapped_column(Text)
    rule: Mapped[str | None] = mapped_column(Text)


class Log(Base):
    __tablename__ = "logs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    flow_run_id: Mapped[str | None] = mapped_column(IdType, index=True)
    task_run_id: Mapped[str | None] = mapped_column(IdType)
    level: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    message: Mapped[str] = mapped_column(Text)


class Deployment(Base):
    """A notebook exported to a script that runs on a schedule."""

    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    flow_name: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    schedule: Mapped[str | None] = mapped_column(Text)
    parameters: Mapped[Any] = mapped_column(JSONType, default=dict)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # --- issue 8: deployments served by `orion-nb serve` -----------------------------------
    # `schedule` above is the human description; these columns are what the scheduler reads,
    # so every serve process derives exactly the same slots (see orion_nb.export.schedules)
    cron: Mapped[str | None] = mapped_column(Text)
    interval_seconds: Mapped[float | None] = mapped_column(Float)
    timezone: Mapped[str | None] = mapped_column(Text)
    anchor: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # --- end issue 8 ----------------------------------------------------------------------


class WriteBatch(Base):
    """One committed write transaction of a writer, inserted in that same transaction.

    A batch whose commit was acknowledged by the server but lost on the way back (or a batch
    replayed from the journal) is recognised by its id and not written twice, so states, logs
    and edges (append-only rows) are stored exactly once without a unique key per row.
    """

    __tablename__ = "write_batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    written_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    rows: Mapped[int] = mapped_column(Integer, default=0)


# --- issue 11: indexes for the history filters ---------------------------------------------
# Each filter of flow_runs() / task_runs() (flow name, flow run, task name, deployment, state,
# time range, tag) is answered by an index whose second column is ``created``, so "the newest
# N" walks the index backwards and stops after N rows. The state indexes are partial: they
# leave out completed runs, most of any history, so recording a completed run costs nothing
# more, and a query for Failed or Running runs (what people look for) finds them at once;
# queries.py adds the matching "<> completed" term. tests/test_query_plans.py checks each plan
# on SQLite (EXPLAIN QUERY PLAN) and Postgres (EXPLAIN).
# The WHERE of each partial index. SQLite gets it as ``sqlite_where``; Postgres through the
# CREATE INDEX compiler below, because a ``postgresql_where`` option on the model would import
# SQLAlchemy's Postgres dialect on every SQLite user's first run (~40 ms).
PARTIAL_INDEXES = {
    "ix_flow_runs__state_type_created": "state_type != 'COMPLETED'",
    "ix_flow_runs__state_name_created": "state_name != 'Completed'",
    "ix_task_runs__state_type_created": "state_type != 'COMPLETED'",
    "ix_task_runs__state_name_created": "state_name != 'Completed'",
    "ix_task_runs__final_state_id": "final_state_id IS NOT NULL",
    # most runs have no cache key: they cost this index nothing
    "ix_task_runs__cache_key_end": "cache_key IS NOT NULL",
}


def _partial(name: str, *columns: Any) -> Index:
    return Index(name, *columns, sqlite_where=text(PARTIAL_INDEXES[name]))


@compiles(CreateIndex, "postgresql")
def _create_index_postgresql(create: Any, compiler: Any, **kw: Any) -> str:
    sql = str(compiler.visit_create_index(create, **kw))
    where = PARTIAL_INDEXES.get(create.element.name)
    return f"{sql} WHERE {where}" if where and " WHERE " not in sql else sql


Index("ix_flow_runs__flow_name_created", FlowRun.flow_name, FlowRun.created)
Index("ix_flow_runs__deployment_id_created", FlowRun.deployment_id, FlowRun.created)
_partial("ix_flow_runs__state_type_created", FlowRun.state_type, FlowRun.created)
_partial("ix_flow_runs__state_name_created", FlowRun.state_name, FlowRun.created)
Index("ix_task_runs__flow_run_id_created", TaskRun.flow_run_id, TaskRun.created)
Index("ix_task_runs__task_name_created", TaskRun.task_name, TaskRun.created)
_partial("ix_task_runs__state_type_created", TaskRun.state_type, TaskRun.created)
_partial("ix_task_runs__state_name_created", TaskRun.state_name, TaskRun.created)
Index("ix_logs__task_run_id", Log.task_run_id)
# the transitions left out of ``states``, newest first and after a given id (browser changes)
_partial("ix_task_runs__final_state_id", TaskRun.final_state_id)
_partial("ix_task_runs__cache_key_end", TaskRun.cache_key)


class FlowRunTag(Base):
    """One tag of one flow run: the index behind ``flow_runs(tags=...)``.

    ``flow_runs.tags`` stays the record (a JSON list); this table is derived from it by
    triggers (below), so every writer (this process's, another version's, a journal replay)
    keeps it right without knowing it exists, and no JSON is parsed to filter by tag.
    """

    __tablename__ = "flow_run_tags"
    __table_args__ = (
        PrimaryKeyConstraint("flow_run_id", "tag"),
        Index("ix_flow_run_tags__tag_flow_run_id", "tag", "flow_run_id"),
    )

    flow_run_id: Mapped[str] = mapped_column(IdType)
    tag: Mapped[str] = mapped_column(Text)


# The triggers that keep flow_run_tags equal to the tags of flow_runs: a tag is every string
# in the JSON list (anything else in the column is not a tag). Migration 0002 creates the
# same triggers from these statements (0002 is not released: if they change after it is,
# copy the old statements into 0002 first).
FLOW_RUN_TAG_TRIGGERS = {
    "sqlite": (
        """CREATE TRIGGER trg_flow_runs__tags_insert AFTER INSERT ON flow_runs BEGIN
    INSERT OR IGNORE INTO flow_run_tags (flow_run_id, tag)
    SELECT NEW.id, j.value FROM json_each(CASE WHEN json_valid(NEW.tags) THEN CASE WHEN
        json_type(NEW.tags) = 'array' THEN NEW.tags END END) AS j WHERE j.type = 'text';
END""",
        """CREATE TRIGGER trg_flow_runs__tags_update AFTER UPDATE OF id, tags ON flow_runs BEGIN
    DELETE FROM flow_run_tags WHERE flow_run_id = OLD.id;
    INSERT OR IGNORE INTO flow_run_tags (flow_run_id, tag)
    SELECT NEW.id, j.value FROM json_each(CASE WHEN json_valid(NEW.tags) THEN CASE WHEN
        json_type(NEW.tags) = 'array' THEN NEW.tags END END) AS j WHERE j.type = 'text';
END""",
        """CREATE TRIGGER trg_flow_runs__tags_delete AFTER DELETE ON flow_runs BEGIN
    DELETE FROM flow_run_tags WHERE flow_run_id = OLD.id;
END""",
    ),
    "postgresql": (
        """CREATE FUNCTION flow_run_tags_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM flow_run_tags WHERE flow_run_id = OLD.id;
    END IF;
    IF TG_OP <> 'DELETE' AND jsonb_typeof(NEW.tags) = 'array' THEN
        INSERT INTO flow_run_tags (flow_run_id, tag)
        SELECT NEW.id, e #>> '{}' FROM jsonb_array_elements(NEW.tags) AS e
        WHERE jsonb_typeof(e) = 'string'
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$""",
        """CREATE TRIGGER trg_flow_runs__tags AFTER INSERT OR DELETE OR UPDATE OF id, tags
    ON flow_runs FOR EACH ROW EXECUTE FUNCTION flow_run_tags_sync()""",
    ),
}
FLOW_RUN_TAG_TRIGGERS_DROP = {
    "sqlite": (
        "DROP TRIGGER IF EXISTS trg_flow_runs__tags_insert",
        "DROP TRIGGER IF EXISTS trg_flow_runs__tags_update",
        "DROP TRIGGER IF EXISTS trg_flow_runs__tags_delete",
    ),
    "postgresql": (
        "DROP TRIGGER IF EXISTS trg_flow_runs__tags ON flow_runs",
        "DROP FUNCTION IF EXISTS flow_run_tags_sync()",
    ),
}
# the tags of runs recorded before the triggers existed (migration 0002)
FLOW_RUN_TAG_BACKFILL = {
    "sqlite": """INSERT OR IGNORE INTO flow_run_tags (flow_run_id, tag)
SELECT flow_runs.id, j.value FROM flow_runs, json_each(CASE WHEN json_valid(flow_runs.tags)
    THEN CASE WHEN json_type(flow_runs.tags) = 'array' THEN flow_runs.tags END END) AS j
WHERE j.type = 'text'""",
    "postgresql": """INSERT INTO flow_run_tags (flow_run_id, tag)
SELECT flow_runs.id, e #>> '{}' FROM flow_runs,
    jsonb_array_elements(CASE WHEN jsonb_typeof(flow_runs.tags) = 'array'
        THEN flow_runs.tags ELSE '[]'::jsonb END) AS e
WHERE jsonb_typeof(e) = 'string'
ON CONFLICT DO NOTHING""",
}

for _dialect, _statements in FLOW_RUN_TAG_TRIGGERS.items():
    for _statement in _statements:
        # created with the schema of a new database (create_all); DDL %-formats its text
        event.listen(
            Base.metadata,
            "after_create",
            DDL(_statement.replace("%", "%%")).execute_if(dialect=_dialect),
        )
