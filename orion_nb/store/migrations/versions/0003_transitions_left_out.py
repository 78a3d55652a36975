"""Transitions the writer leaves out of ``states``.

A task run whose whole life was Pending -> Running -> Completed, with no rule and no message,
is fully described by its own row's times; the SQLite writer no longer writes its three
``states`` rows but takes their ids from the ``states`` sequence and keeps them on the run
(``pending_state_id``, ``running_state_id``, ``final_state_id``). Readers put the three
transitions back (orion_nb/store/queries.py), so the transition log does not change.

- ``task_runs``: the three ids, and a partial index on ``final_state_id`` (set runs only);
  the cache key index leaves out runs without a key (most of them: an index entry less to
  write per task run).
- ``states`` on SQLite becomes AUTOINCREMENT, so that ids the writer took for left-out
  transitions are never handed out again (the table is copied once; Postgres already has a
  sequence).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID_COLUMNS = ("pending_state_id", "running_state_id", "final_state_id")
_INDEX = "ix_task_runs__final_state_id"
_CACHE_INDEX = "ix_task_runs__cache_key_end"


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    from orion_nb.store.models import PARTIAL_INDEXES

    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("task_runs") as batch_op:
        for name in _ID_COLUMNS:
            batch_op.add_column(sa.Column(name, _big_id(), nullable=True))
    op.create_index(
        _INDEX,
        "task_runs",
        ["final_state_id"],
        unique=False,
        **{f"{dialect}_where": sa.text(PARTIAL_INDEXES[_INDEX])},
    )
    op.drop_index(_CACHE_INDEX, table_name="task_runs")
    op.create_index(
        _CACHE_INDEX,
        "task_runs",
        ["cache_key"],
        unique=False,
        **{f"{dialect}_where": sa.text(PARTIAL_INDEXES[_CACHE_INDEX])},
    )
    if dialect == "sqlite":
        with op.batch_alter_table(
            "states", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    # put the left-out transitions back into states before their ids go
    tasks = sa.table(
        "task_runs",
        sa.column("id"),
        sa.column("created"),
        sa.column("start_time"),
        sa.column("end_time"),
        *(sa.column(n) for n in _ID_COLUMNS),
    )
    states = sa.table(
        "states",
        sa.column("id"),
        sa.column("run_id"),
        sa.column("run_kind"),
        sa.column("type"),
        sa.column("name"),
        sa.column("timestamp"),
    )
    for id_col, type_, name, ts in (
        ("pending_state_id", "PENDING", "Pending", "created"),
        ("running_state_id", "RUNNING", "Running", "start_time"),
        ("final_state_id", "COMPLETED", "Completed", "end_time"),
    ):
        op.execute(
            states.insert().from_select(
                ["id", "run_id", "run_kind", "type", "name", "timestamp"],
                sa.select(
                    tasks.c[id_col],
                    tasks.c.id,
                    sa.literal("task"),
                    sa.literal(type_),
                    sa.literal(name),
                    tasks.c[ts],
                ).where(tasks.c.final_state_id.is_not(None)),
            )
        )
    op.drop_index(_INDEX, table_name="task_runs")
    op.drop_index(_CACHE_INDEX, table_name="task_runs")
    op.create_index(_CACHE_INDEX, "task_runs", ["cache_key"], unique=False)
    with op.batch_alter_table("task_runs") as batch_op:
        for name in reversed(_ID_COLUMNS):
            batch_op.drop_column(name)
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "states", recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass
