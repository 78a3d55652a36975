"""Every example notebook runs top to bottom in a real kernel, so the examples never rot."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.kernel

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def execute(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[nbformat.NotebookNode, Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("ORION_NB_HOME", str(home))
    monkeypatch.delenv("ORION_NB_DATABASE_URL", raising=False)
    monkeypatch.delenv("ORION_NB_DISPLAY", raising=False)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    out = tmp_path / name
    nbformat.write(nb, out)
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors, errors
    return nb, home / "orion.db"


def outputs_text(nb: nbformat.NotebookNode) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])


def test_etl_notebook(tmp_path, monkeypatch):
    nb, db = execute("etl.ipynb", tmp_path, monkeypatch)
    con = sqlite3.connect(db)
    runs = con.execute(
        "select state_name from flow_runs where flow_name='etl' order by created"
    ).fetchall()
    assert runs == [("Completed",), ("Completed",)]
    rules = {r[0] for r in con.execute("select distinct rule from states where rule is not null")}
    assert {"RetryFailedRuns", "CacheRetrieval", "CacheInsertion", "ConcurrencyLimits"} <= rules
    states = dict(
        con.execute(
            "select task_name, state_name from task_runs where task_name in ('validate','notify')"
        )
    )
    assert states == {"validate": "Failed", "notify": "Completed"}
    text = outputs_text(nb)
    assert "pipeline finished: validation failed" in text
    assert "application/vnd.plotly.v1+json" in text
    # each finished run left its static view and a truthful summary (issue 10)
    assert text.count("orion-nb-run") >= 3  # two flow cells and orion_nb.view(first_run)
    assert "Flow run etl/" in text and "run=None" not in text


def test_history_notebook(tmp_path, monkeypatch):
    nb, db = execute("history.ipynb", tmp_path, monkeypatch)
    con = sqlite3.connect(db)
    assert (
        con.execute("select count(*) from flow_runs where flow_name='nightly'").fetchone()[0] == 5
    )
    text = outputs_text(nb)
    assert "failure_rate" in text and "RetryFailedRuns" in text
    assert "application/vnd.plotly.v1+json" in text


def test_quickstart_notebook(tmp_path, monkeypatch):
    nb, db = execute("quickstart.ipynb", tmp_path, monkeypatch)
    con = sqlite3.connect(db)
    runs = con.execute("select state_name from flow_runs where flow_name='etl'").fetchall()
    assert runs == [("Completed",), ("Completed",)]
    assert (
        con.execute("select count(*) from task_runs where state_name='Cached'").fetchone()[0] == 5
    )
    extract = con.execute(
        "select id, run_count from task_runs where task_name='extract' order by created"
    ).fetchone()
    assert extract[1] == 2
    rules = {r[0] for r in con.execute("select rule from states where run_id=?", (extract[0],))}
    assert "RetryFailedRuns" in rules
    text = outputs_text(nb)
    assert "ZeroDivisionError" in text and "'Failed'" in text
    assert "run=None" not in text and "Flow run etl/" in text


def test_main_job_script(tmp_path):
    """The README's first command ends by running this script; it must work and show the runs."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ORION_NB_HOME": str(tmp_path / "home"), "COLUMNS": "160"}
    env.pop("ORION_NB_DATABASE_URL", None)
    root = NOTEBOOKS.parent
    res = subprocess.run(
        [sys.executable, str(root / "scripts" / "run_quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "flow runs recorded by the notebook (3)" in res.stdout
    assert "RetryFailedRuns: attempt 1 of 3 failed" in res.stdout
    assert str(tmp_path / "home") in res.stdout
