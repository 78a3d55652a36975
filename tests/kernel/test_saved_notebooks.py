"""Notebooks executed headless (nbclient, papermill) keep their runs as the static view.

The saved file is what a colleague, a code host or an HTML export gets: the flow cell's one
output must hold the static view (``text/html``) and a truthful one-line ``text/plain``, and
``nbconvert --to markdown`` must carry both.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.kernel

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
BIN = Path(sys.executable).parent
EVIL = "<img src=x onerror=alert(1)>"


def notebook_of(*sources: str) -> nbformat.NotebookNode:
    """A notebook of code cells for the python3 kernel."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    return nb


def shared_notebook() -> nbformat.NotebookNode:
    return notebook_of(
        "%load_ext orion_nb\nimport orion_nb\nfrom orion_nb import task",
        (
            "%%flow shared\n"
            "@task(retries=1, retry_delay_seconds=0)\n"
            "def step(i, tries=[]):\n"
            "    tries.append(i)\n"
            "    if tries.count(i) == 1 and i == 2:\n"
            "        raise ConnectionError('try again')\n"
            "    return i\n"
            f"evil = task(name={EVIL!r})(lambda: 1)\n"
            "evil()\n"
            "total = sum(step(i) for i in range(5))"
        ),
        "orion_nb.view('shared')",
    )


def execute_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs the shared notebook with nbclient (a fresh orion_nb home) and saves it."""
    monkeypatch.setenv("ORION_NB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ORION_NB_DATABASE_URL", raising=False)
    monkeypatch.delenv("ORION_NB_DISPLAY", raising=False)
    nb = shared_notebook()
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    path = tmp_path / "shared.ipynb"
    nbformat.write(nb, path)
    return path


def env_for(home: Path) -> dict[str, str]:
    env = {**os.environ, "ORION_NB_HOME": str(home)}
    env.pop("ORION_NB_DATABASE_URL", None)
    env.pop("ORION_NB_DISPLAY", None)
    return env


def check_saved(nb: nbformat.NotebookNode) -> str:
    """Asserts what a reader of the saved notebook gets; returns the flow's summary line."""
    text = json.dumps(nb)
    assert "run=None" not in text
    flow_outputs = nb.cells[1].outputs
    assert len(flow_outputs) == 1, flow_outputs  # one output: the widget's, now the static view
    data = flow_outputs[0]["data"]
    assert WIDGET_MIME not in data
    summary = data["text/plain"]
    assert re.fullmatch(
        r"Flow run shared/[a-z]+-[a-z]+: Completed in [\d.]+ m?s, 6 task runs \(6 Completed\)",
        summary,
    ), summary
    assert "step-4" in data["text/html"] and "&lt;img src=x" in data["text/html"]
    assert "<svg" in data["text/html"] and "RetryFailedRuns" in data["text/html"]
    view = nb.cells[2].outputs[0]["data"]
    assert view["text/plain"] == summary and "step-4" in view["text/html"]
    return summary


def test_nbclient_saves_the_static_view_and_markdown_carries_it(tmp_path, monkeypatch):
    path = execute_shared(tmp_path, monkeypatch)
    summary = check_saved(nbformat.read(path, as_version=4))
    res = subprocess.run(
        [str(BIN / "jupyter-nbconvert"), "--to", "markdown", str(path), "--stdout"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env_for(tmp_path / "home"),
    )
    assert res.returncode == 0, res.stderr
    markdown = re.sub(r"```.*?```", "", res.stdout, flags=re.S)  # outputs, not the code
    # markdown keeps the HTML, which a markdown viewer renders: as text it reads the summary
    assert summary in html.unescape(re.sub(r"<[^>]+>", "", markdown))
    assert "&lt;img src=x onerror=alert(1)&gt;" in markdown and EVIL not in markdown


def test_papermill_output_notebook_carries_the_static_view(tmp_path):
    src = tmp_path / "in.ipynb"
    out = tmp_path / "out.ipynb"
    nbformat.write(shared_notebook(), src)
    res = subprocess.run(
        [str(BIN / "papermill"), str(src), str(out), "--kernel", "python3", "--cwd", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env_for(tmp_path / "home"),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    check_saved(nbformat.read(out, as_version=4))
