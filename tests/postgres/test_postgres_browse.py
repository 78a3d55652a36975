"""The history browser's reads (``store/browse.py``) on a real Postgres server.

The same tests as on SQLite (``tests/test_browse_store.py``): the SQL differs by dialect (tag
lookups, time buckets, text search), so every behaviour is checked on both.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import test_browse_store as on_sqlite
from tests.postgres.test_postgres_store import pg_url

__all__ = ["pg_url"]  # the fixture, from the store's Postgres tests


@pytest.fixture(autouse=True)
def on_postgres(pg_url: str) -> Iterator[str]:
    yield pg_url


for _name in dir(on_sqlite):
    if _name.startswith("test_"):
        globals()[_name] = getattr(on_sqlite, _name)
