"""Unbounded text, where runs ran, scheduled slots, write batches.

- Names, keys, state names, rules and log levels become unbounded ``TEXT``: a record the
  database refuses for its length would otherwise be lost (Postgres enforces ``VARCHAR(n)``).
- ``flow_runs``: ``pid_start`` (a reused pid is not the same process), ``expected_start_time``
  (the scheduled slot of a deployment run, unique per deployment so a slot is claimed once),
  ``output_path`` (the executed notebook a scheduled run leaves behind).
- ``task_runs``: ``host``, ``pid``, ``pid_start``, ``worker``, ``heartbeat_at``: where the
  user's code ran, and crash detection for standalone task runs.
- ``write_batches``: one row per committed write transaction, so a batch is never written
  twice (a lost commit acknowledgement, a journal replay).
- ``deployments`` (issue 8): the schedule as the scheduler reads it (``cron``,
  ``interval_seconds``, ``timezone``, ``anchor``), ``created`` and ``updated``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# column -> its old bounded type, per table (for the downgrade)
_TEXT = {
    "flow_runs": {"flow_name": 200, "name": 200, "state_name": 40, "host": 200},
    "task_runs": {
        "task_name": 200,
        "task_key": 400,
        "dynamic_key": 40,
        "name": 200,
        "cache_key": 200,
        "state_name": 40,
    },
    "task_run_inputs": {"parameter": 200},
    "states": {"name": 40, "rule": 80},
    "logs": {"level": 10},
    "deployments": {"name": 200, "flow_name": 200, "schedule": 200},
}


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    # --- unbounded text ------------------------------------------------------------------
    for table, cols in _TEXT.items():
        with op.batch_alter_table(table) as batch_op:
            for col, length in cols.items():
                batch_op.alter_column(col, type_=sa.Text(), existing_type=sa.String(length=length))

    # --- where runs ran, scheduled slots, outputs -----------------------------------------
    with op.batch_alter_table("flow_runs") as batch_op:
        batch_op.add_column(sa.Column("pid_start", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("expected_start_time", _ts(), nullable=True))
        batch_op.add_column(sa.Column("output_path", sa.Text(), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_flow_runs__deployment_id_expected_start_time"),
            ["deployment_id", "expected_start_time"],
        )
    with op.batch_alter_table("task_runs") as batch_op:
        batch_op.add_column(sa.Column("host", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pid_start", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("worker", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", _ts(), nullable=True))

    # --- write batches ---------------------------------------------------------------------
    op.create_table(
        "write_batches",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("written_at", _ts(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_write_batches")),
    )
    with op.batch_alter_table("write_batches") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_write_batches__written_at"), ["written_at"], unique=False
        )

    # --- issue 8: deployments served by `orion-nb serve` -----------------------------------
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.add_column(sa.Column("cron", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("interval_seconds", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("timezone", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("anchor", _ts(), nullable=True))
        batch_op.add_column(sa.Column("created", _ts(), nullable=True))
        batch_op.add_column(sa.Column("updated", _ts(), nullable=True))
    # --- end issue 8 ----------------------------------------------------------------------


def downgrade() -> None:
    # --- issue 8 ---------------------------------------------------------------------------
    with op.batch_alter_table("deployments") as batch_op:
        for col in ("updated", "created", "anchor", "timezone", "interval_seconds", "cron"):
            batch_op.drop_column(col)
    # --- end issue 8 ----------------------------------------------------------------------
    with op.batch_alter_table("write_batches") as batch_op:
        batch_op.drop_index(batch_op.f("ix_write_batches__written_at"))
    op.drop_table("write_batches")
    with op.batch_alter_table("task_runs") as batch_op:
        for col in ("heartbeat_at", "worker", "pid_start", "pid", "host"):
            batch_op.drop_column(col)
    with op.batch_alter_table("flow_runs") as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_flow_runs__deployment_id_expected_start_time"), type_="unique"
        )
        for col in ("output_path", "expected_start_time", "pid_start"):
            batch_op.drop_column(col)
    for table, cols in _TEXT.items():
        with op.batch_alter_table(table) as batch_op:
            for col, length in cols.items():
                batch_op.alter_column(col, type_=sa.String(length=length), existing_type=sa.Text())
