"""Shared fixtures: every test gets its own orion_nb home and SQLite database."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import orion_nb
from orion_nb.engine import recorder


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def orion_home(tmp_path: Path) -> Iterator[Path]:
    """A fresh ORION_NB_HOME and database for each test; the writer is closed afterwards."""
    home = tmp_path / "orion_home"
    orion_nb.configure(
        home=home, database_url=f"sqlite:///{home / 'orion.db'}", display="none", persist=True
    )
    from orion_nb.engine.cache import result_cache

    result_cache.clear()
    yield home
    w = recorder.get_writer(start=False)
    if w is not None:
        w.flush()


@pytest.fixture
def db_path(orion_home: Path) -> Path:
    return orion_home / "orion.db"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    w = recorder.get_writer(start=False)
    if w is not None:
        w.close()


def require_or_skip(ok: bool, what: str) -> None:
    """Skip when a real component is missing — but never in CI, where it must be there."""
    if ok:
        return
    if _ci():
        pytest.fail(f"{what} is required in CI (CI=true) but is not available.")
    pytest.skip(f"{what} is not available on this machine.")


__all__ = ["require_or_skip", "shutil"]
