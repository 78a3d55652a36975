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
