"""Alembic migrations on a real PostgreSQL server: up, down, up again, and the models agree."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from orion_nb._loop import get_loop_thread
from orion_nb.store import database
from orion_nb.store.models import Base
from tests.postgres.test_postgres_store import pg_url
from tests.test_migrations import alembic

pytestmark = pytest.mark.postgres
__all__ = ["pg_url"]


def _on(url: str, fn: Any) -> Any:
    engine = database.create_engine(url)

    async def go() -> Any:
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()

    return get_loop_thread().run(go())


def test_migrations_up_down_and_up_again_match_the_models(pg_url: str):
    def up_down_up(conn: Any) -> list[Any]:
        alembic(conn, "upgrade", "0001")
        alembic(conn, "upgrade", "head")
        alembic(conn, "downgrade", "0001")
        alembic(conn, "upgrade", "head")
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))

    assert _on(pg_url, up_down_up) == []
    assert _on(pg_url, database.schema_revision) == database.HEAD_REVISION


def test_a_0001_database_is_upgraded_by_the_first_run(pg_url: str):
    import orion_nb

    _on(pg_url, lambda conn: alembic(conn, "upgrade", "0001"))

    @orion_nb.flow(name="after-upgrade")
    def f():
        return 1

    assert f() == 1
    assert list(orion_nb.flow_runs()["flow_name"]) == ["after-upgrade"]
    assert _on(pg_url, database.schema_revision) == database.HEAD_REVISION
