"""Shared helpers for the export tests: notebooks written with nbformat, scripts run for real."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[2]


def notebook(path: Path, *cells: Any, metadata: dict[str, Any] | None = None) -> Path:
    """Write a notebook: each cell is source text, ``("md", text)`` or ``(source, [tags])``."""
    nb = nbformat.v4.new_notebook()
    for cell in cells:
        if isinstance(cell, tuple) and cell[0] == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(cell[1]))
        elif isinstance(cell, tuple):
            c = nbformat.v4.new_code_cell(cell[0])
            c.metadata["tags"] = list(cell[1])
            nb.cells.append(c)
        else:
            nb.cells.append(nbformat.v4.new_code_cell(cell))
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell{i:04d}"  # stable ids: the same notebook must give the same script
    nb.metadata.update(metadata or {})
    nbformat.write(nb, str(path))
    return path


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "ORION_NB_HOME": str(home), "PYTHONUNBUFFERED": "1", **extra}
    env.pop("ORION_NB_DATABASE_URL", None)
    env.pop("ORION_NB_DISPLAY", None)
    return env


def run(
    args: list[str], home: Path, *, cwd: Path | None = None, timeout: float = 240, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a subprocess against the SQLite history under ``home``."""
    return subprocess.run(
        [sys.executable, *args],
        env=env_for(home, **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli(
    home: Path, *args: str, timeout: float = 240, **env: str
) -> subprocess.CompletedProcess[str]:
    return run(["-m", "orion_nb.cli", *args], home, timeout=timeout, COLUMNS="200", **env)


def rows(home: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(home / "orion.db")
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def register(home: Path, name: str, script: Path, schedule: str, params: str = "{}") -> None:
    """Register a deployment in the history under ``home``, from another process.

    ``schedule`` is the keyword arguments of ``Schedule.parse`` as Python source.
    """
    code = (
        "from pathlib import Path\n"
        "from orion_nb.export import deployments as dep\n"
        "from orion_nb.export.schedules import Schedule\n"
        f"dep.register(dep.DeploymentSpec({name!r}, Path({str(script)!r}), 'job', "
        f"Schedule.parse({schedule}), {params}))\n"
    )
    res = run(["-c", code], home)
    assert res.returncode == 0, res.stderr


def lint(script: Path) -> None:
    """The script compiles and passes ruff's default rules with no configuration, checked
    from its own directory as its author would."""
    import py_compile

    py_compile.compile(str(script), doraise=True)
    res = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", str(script)],
        capture_output=True,
        text=True,
        cwd=script.parent,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def race_claims(run_id: str, claimers: int) -> list[bool]:
    """``claimers`` threads claim one scheduled run at the same moment; what each got."""
    import threading

    from orion_nb.export import deployments as dep
    from orion_nb.store import deployments as sql

    barrier = threading.Barrier(claimers)
    wins: list[bool] = []

    def claim(i: int) -> None:
        barrier.wait()
        wins.append(dep.call(sql.claim_run, run_id, "host", 1000 + i))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(claimers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wins
