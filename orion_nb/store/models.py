"""SQLAlchemy models of the history database (DESIGN.md, "Data model").

Types behave the same on SQLite and Postgres: ids are ``Uuid`` (text on SQLite, ``uuid`` on
Postgres), timestamps are stored in UTC and read back timezone-aware, JSON columns use the
generic ``JSON`` type (``JSONB`` on Postgres).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "Deployment",
    "FlowRun",
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
    flow_name: Mapped[str] = mapped_column(Text, index=True)
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
    __table_args__ = (Index("ix_task_runs__cache_key_end", "cache_key"),)

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    flow_run_id: Mapped[str | None] = mapped_column(IdType, index=True)
    task_name: Mapped[str] = mapped_column(Text, index=True)
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
