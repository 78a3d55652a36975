"""Persistence: all SQL of orion_nb lives in this package.

- ``models``: SQLAlchemy 2 typed models of DESIGN.md's data model.
- ``database``: engines for SQLite (sqlite3) and Postgres (asyncpg), PRAGMAs, schema set-up
  (only an empty or our own database; one transaction, under a lock; a plain SQLite file
  through ``sqlite3`` alone), clear error messages.
- ``writer``: the one background, batched writer per process: an ordered backlog of batches,
  retried through outages, journaled past a memory bound and at exit.
- ``batches``: events coalesced into self-contained batches of cleaned rows (``sanitize``).
- ``targets``: one batch in one transaction, exactly once (``write_batches``), per database.
- ``journal``: batches on disk until they can be written.
- ``recovery``: runs whose process is gone become Crashed (the decision is in
  ``orchestration.recovery_rules``); ``signals``: SIGTERM writes before the process ends.
- ``gen_sql``: compiles the SQLite path's SQL ahead of time into ``_sqlite_sql`` (generated;
  a test keeps it current), so a first run on SQLite needs no SQLAlchemy.
- ``reader``: history reads with an engine of their own (no writer needed, read-only works);
  ``queries``: read functions that return pandas DataFrames.
- ``maintenance``: ``orion-nb db ...`` (info, upgrade, prune, replay, reset, reconcile).

Nothing here is imported by ``import orion_nb``; the store loads on the first run.
"""
