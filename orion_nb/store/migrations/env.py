"""Alembic environment: migrations run on the connection orion_nb hands over."""

from __future__ import annotations

from alembic import context

from orion_nb.store.models import Base

target_metadata = Base.metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - orion_nb always passes a connection
    raise RuntimeError("orion_nb migrations are run through orion_nb.store.database.migrate().")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
