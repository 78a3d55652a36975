"""Persistence: all SQL of orion_nb lives in this package.

- ``models``: SQLAlchemy 2 typed models of DESIGN.md's data model.
- ``database``: engine creation for SQLite (sqlite3) and Postgres (asyncpg), PRAGMAs,
  URL masking, schema migrations (Alembic) on first use.
- ``writer``: the one background, batched writer per process. The engine appends events to
  its queue; the writer coalesces them and writes with executemany.
- ``queries``: read functions that return pandas DataFrames.

Nothing here is imported by ``import orion_nb``; the store loads on the first run.
"""
