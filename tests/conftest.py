"""Shared fixtures: every test gets its own orion_nb home and SQLite database."""

from __future__ import annotations

import os
import subprocess
import sys
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


def child_env(home: Path, database_url: str | None = None) -> dict[str, str]:
    """The environment of a child process using ``home`` (and ``database_url``, if given)."""
    env = {**os.environ, "ORION_NB_HOME": str(home)}
    env.pop("ORION_NB_DATABASE_URL", None)
    if database_url:
        env["ORION_NB_DATABASE_URL"] = database_url
    return env


# flows of trivial task runs: ``python -c FLOWS_SCRIPT FLOWS TASKS_PER_FLOW``
FLOWS_SCRIPT = """
import sys, orion_nb
orion_nb.configure(display="none")
@orion_nb.task
def t(i):
    return i
@orion_nb.flow(name="load")
def f(k):
    for i in range(k):
        t(i)
for _ in range(int(sys.argv[1])):
    f(int(sys.argv[2]))
"""


def spawn(code: str, env: dict[str, str], *args: str, talk: bool = False) -> subprocess.Popen[str]:
    """Start ``python -c code``; with ``talk`` its stdin and stdout are pipes to converse."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdin=subprocess.PIPE if talk else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_all(procs: list[subprocess.Popen[str]], timeout: float = 180) -> None:
    """Wait for every process; fail with their stderr unless all exited 0."""
    errors = [p.communicate(timeout=timeout)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), errors


__all__ = ["FLOWS_SCRIPT", "child_env", "require_or_skip", "spawn", "wait_all"]
