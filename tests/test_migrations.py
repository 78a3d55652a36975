"""Schema migrations: Alembic's migrations and the models describe the same schema."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from orion_nb.store import database
from orion_nb.store.models import Base


def _migrate(url: str, *, via_alembic: bool) -> None:
    engine = database.create_engine(url)
    with engine.begin() as conn:
        (database._upgrade if via_alembic else database._create_and_stamp)(conn)
    engine.dispose()


def test_migrations_produce_the_models_schema(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    _migrate(url, via_alembic=True)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        version = conn.execute(sa.text("select version_num from alembic_version")).scalar_one()
    assert diff == [], diff
    assert version == database.HEAD_REVISION


def test_fresh_database_shortcut_matches_the_migrations(tmp_path: Path):
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    _migrate(a, via_alembic=True)
    _migrate(b, via_alembic=False)

    def schema(url: str) -> dict[str, list[tuple[str, str, bool]]]:
        insp = sa.inspect(sa.create_engine(url))
        return {
            t: sorted((c["name"], str(c["type"]), bool(c["nullable"])) for c in insp.get_columns(t))
            for t in insp.get_table_names()
        } | {
            f"{t}#indexes": sorted(
                (i["name"], ",".join(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(t)
            )
            for t in insp.get_table_names()
        }

    assert schema(a) == schema(b)


def alembic(conn: sa.Connection, action: str, revision: str) -> None:
    """Run Alembic's ``upgrade``/``downgrade`` to ``revision`` on a sync connection."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(database.MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    getattr(command, action)(cfg, revision)


def test_a_0001_database_upgrades_to_head_keeping_its_runs(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = database.create_engine(url)
    with engine.begin() as conn:
        alembic(conn, "upgrade", "0001")
        conn.execute(
            sa.text(
                "insert into flow_runs (id, flow_name, name, parameters, created, run_count, tags)"
                " values ('00000000-0000-0000-0000-000000000001', 'etl', 'old-run', '{}',"
                " '2026-01-01 00:00:00.000000', 1, '[]')"
            )
        )
    with engine.begin() as conn:
        database._migrate_conn(conn)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select name from flow_runs")).scalar_one() == "old-run"
        cols = {c["name"] for c in sa.inspect(conn).get_columns("task_runs")}
        version = conn.execute(sa.text("select version_num from alembic_version")).scalar_one()
    engine.dispose()
    assert {"host", "pid", "worker", "heartbeat_at"} <= cols
    assert version == database.HEAD_REVISION


def test_partial_indexes_and_autoincrement_are_the_same_either_way(tmp_path: Path):
    """What the inspector does not compare: index WHERE clauses and AUTOINCREMENT tables."""
    import re
    import sqlite3

    a, b = tmp_path / "a.db", tmp_path / "b.db"
    _migrate(f"sqlite:///{a}", via_alembic=True)
    _migrate(f"sqlite:///{b}", via_alembic=False)

    def traits(path: Path) -> dict[str, str | bool]:
        con = sqlite3.connect(path)
        try:
            found = con.execute(
                "select type, name, sql from sqlite_master where sql is not null"
            ).fetchall()
        finally:
            con.close()
        out: dict[str, str | bool] = {}
        for kind, name, sql in found:
            if kind == "table":
                out[name] = "AUTOINCREMENT" in sql.upper()
            elif kind == "index" and " WHERE " in sql.upper():
                where = sql[sql.upper().index(" WHERE ") + 7 :]
                out[name] = re.sub(r"[\s\"'()]", "", where).lower()
        return out

    got = traits(a)
    assert got == traits(b)
    assert got["states"] is True
    assert got["ix_task_runs__final_state_id"] == "final_state_idisnotnull"
    assert got["ix_task_runs__cache_key_end"] == "cache_keyisnotnull"
