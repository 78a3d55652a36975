"""Initial schema: flow_runs, task_runs, task_run_inputs, states, logs, deployments.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column(
            "id",
            sa.Uuid(as_uuid=False).with_variant(sa.String(length=36), "sqlite"),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("flow_name", sa.String(length=200), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("schedule", sa.String(length=200), nullable=True),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
        sa.UniqueConstraint("name", name=op.f("uq_deployments__name")),
    )
    op.create_table(
        "flow_runs",
        sa.Column(
            "id",
            sa.Uuid(as_uuid=False).with_variant(sa.String(length=36), "sqlite"),
            nullable=False,
        ),
        sa.Column("flow_name", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("state_type", sa.String(length=20), nullable=True),
        sa.Column("state_name", sa.String(length=40), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "parent_task_run_id",
            sa.Uuid(as_uuid=False).with_variant(sa.String(length=36), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "deployment_id",
            sa.Uuid(as_uuid=False).with_variant(sa.String(length=36), "sqlite"),
            nullable=True,
        ),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_runs")),
    )
    with op.batch_alter_table("flow_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flow_runs__created"), ["created"], unique=False)
        batch_op.create_index(batch_op.f("ix_flow_runs__flow_name"), ["flow_name"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_flow_runs__parent_task_run_id"), ["parent_task_run_id"], unique=False
        )

    op.create_table(
        "logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "flow_run_id",
            sa.Uuid(as_uuid=False).with_variant(sa.String(length=36), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "task_run_id",
            sa.Uuid(as_uuid=False).with_variant(sa.String(length=36), "sqlite"),
            nullable=True,
        ),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logs")),
    )
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_logs__flow_run_id"), ["flow_run_id"], unique=False)

    op.create_table(
        "states",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "run_id",
            sa.Uuid(as_uuid=False).with_variant(sa.String(length=36), "sqlite"),
            nullable=False,
        ),
        sa.Column("run_kind", sa.String(length=8), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("rule", sa.String(length=80), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_states")),
    )
    with op.batch_alter_table("states", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_states__run_id"), ["run_id"], unique=False)

    op.create_table(
        "task_run_inputs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "task_run_id",
            sa.Uuid(as_uuid=False).with_variant(sa.String(length=36), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "upstream_task_run_id",
            sa.Uuid(as_uuid=False).with_variant(sa.String(length=36), "sqlite"),
            nullable=False,
        ),
        sa.Column("parameter", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_run_inputs")),
    )
    with op.batch_alter_table("task_run_inputs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_task_run_inputs__task_run_id"), ["task_run_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_task_run_inputs__upstream_task_run_id"),
            ["upstream_task_run_id"],
            unique=False,
        )

    op.create_table(
        "task_runs",
        sa.Column(
            "id",
            sa.Uuid(as_uuid=False).with_variant(sa.String(length=36), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "flow_run_id",
            sa.Uuid(as_uuid=False).with_variant(sa.String(length=36), "sqlite"),
            nullable=True,
        ),
        sa.Column("task_name", sa.String(length=200), nullable=False),
        sa.Column("task_key", sa.String(length=400), nullable=False),
        sa.Column("dynamic_key", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("cache_key", sa.String(length=200), nullable=True),
        sa.Column("cache_expiration", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result_ref", sa.Text(), nullable=True),
        sa.Column("state_type", sa.String(length=20), nullable=True),
        sa.Column("state_name", sa.String(length=40), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_runs")),
    )
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.create_index("ix_task_runs__cache_key_end", ["cache_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_task_runs__created"), ["created"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_task_runs__flow_run_id"), ["flow_run_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_task_runs__task_name"), ["task_name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_runs__task_name"))
        batch_op.drop_index(batch_op.f("ix_task_runs__flow_run_id"))
        batch_op.drop_index(batch_op.f("ix_task_runs__created"))
        batch_op.drop_index("ix_task_runs__cache_key_end")

    op.drop_table("task_runs")
    with op.batch_alter_table("task_run_inputs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_run_inputs__upstream_task_run_id"))
        batch_op.drop_index(batch_op.f("ix_task_run_inputs__task_run_id"))

    op.drop_table("task_run_inputs")
    with op.batch_alter_table("states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_states__run_id"))

    op.drop_table("states")
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_logs__flow_run_id"))

    op.drop_table("logs")
    with op.batch_alter_table("flow_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flow_runs__parent_task_run_id"))
        batch_op.drop_index(batch_op.f("ix_flow_runs__flow_name"))
        batch_op.drop_index(batch_op.f("ix_flow_runs__created"))

    op.drop_table("flow_runs")
    op.drop_table("deployments")
