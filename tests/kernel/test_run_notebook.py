"""Notebooks run headless (``orion-nb run``), exported and served, with a real kernel.

The history a notebook leaves must have the same shape whichever way it ran: in a kernel cell
by cell, as ``orion-nb run`` (one parent flow run, ``%%flow`` cells as subflows), or as the
exported script run by ``python``.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.export.helpers import cli, env_for, lint, notebook, rows, run

pytestmark = pytest.mark.kernel

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def flow_shape(home: Path) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str, int]]]:
    """The flows below the notebook's own parent run and every task run (mirrors excepted)."""
    con = sqlite3.connect(home / "orion.db")
    parents = {r[0] for r in con.execute("select id from flow_runs where flow_name like '%.ipynb'")}
    flows = Counter(
        (name, state)
        for name, state, fid in con.execute("select flow_name, state_name, id from flow_runs")
        if fid not in parents
    )
    tasks = Counter(
        con.execute(
            "select task_name, state_name, run_count from task_runs "
            "where task_key not like 'subflow:%'"
        ).fetchall()
    )
    con.close()
    return flows, tasks


def run_in_kernel(
    nb_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> nbformat.NotebookNode:
    monkeypatch.setenv("ORION_NB_HOME", str(home))
    monkeypatch.delenv("ORION_NB_DATABASE_URL", raising=False)
    monkeypatch.delenv("ORION_NB_DISPLAY", raising=False)
    nb = nbformat.read(nb_path, as_version=4)
    NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(nb_path.parent)}},
    ).execute()
    return nb


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_an_example_notebook_records_the_same_flows_and_tasks_however_it_runs(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    nb_path = tmp_path / name
    nb_path.write_bytes((NOTEBOOKS / name).read_bytes())
    script = tmp_path / name.replace(".ipynb", ".py")
    res = cli(tmp_path / "h0", "export", str(nb_path), "-o", str(script))
    assert res.returncode == 0, res.stderr
    lint(script)

    res = run([str(script)], tmp_path / "script", cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    res = cli(tmp_path / "headless", "run", str(nb_path), "-o", str(tmp_path / "executed.ipynb"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run_in_kernel(nb_path, tmp_path / "kernel", monkeypatch)

    in_kernel = flow_shape(tmp_path / "kernel")
    assert in_kernel[0] and in_kernel[1]
    assert flow_shape(tmp_path / "script") == in_kernel
    assert flow_shape(tmp_path / "headless") == in_kernel
    for where in ("script", "headless"):  # one parent run, every other top-level run below it
        top = rows(
            tmp_path / where,
            "select flow_name, state_name from flow_runs where parent_task_run_id is null",
        )
        assert top == [(name, "Completed")]


def test_run_a_notebook_with_parameters_saves_the_executed_notebook(tmp_path: Path):
    nb = notebook(
        tmp_path / "report.ipynb",
        ("md", "# Report"),
        "from orion_nb import task\n\n@task\ndef square(x):\n    return x * x",
        ("n = 2\nlabel = 'daily'", ["parameters"]),
        "%%flow squares\nvalues = [square(i) for i in range(n)]\nsum(values)",
        "print(label, values)",
    )
    home = tmp_path / "home"
    res = cli(home, "run", str(nb), "--param", "n=4", "--param", "label=weekly")
    assert res.returncode == 0, res.stdout + res.stderr
    ((parent_id, params, out_path, state),) = rows(
        home,
        "select id, parameters, output_path, state_name from flow_runs "
        "where flow_name = 'report.ipynb'",
    )
    assert state == "Completed" and json.loads(params) == {"n": 4, "label": "weekly"}
    assert out_path and str(out_path) in res.stdout
    executed = nbformat.read(out_path, as_version=4)
    tags = [c.metadata.get("tags", []) for c in executed.cells]
    injected = tags.index(["injected-parameters"])
    assert tags[injected - 1] == ["parameters"]
    assert executed.cells[injected].source == "# Parameters\nn = 4\nlabel = 'weekly'\n"
    outputs = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "weekly [0, 1, 4, 9]" in outputs and '"14"' in outputs
    assert nb.read_text() != Path(out_path).read_text()  # the source notebook is untouched
    sub = rows(
        home,
        "select f.flow_name, f.state_name from flow_runs f join task_runs t "
        "on f.parent_task_run_id = t.id where t.flow_run_id = ?",
        parent_id,
    )
    assert sub == [("squares", "Completed")]
    assert rows(home, "select count(*) from task_runs where task_name = 'square'") == [(4,)]
    res = cli(home, "run", str(nb), "--param", "n=four")
    assert res.returncode == 2 and "Parameter 'n' expects an integer" in res.stderr


def test_a_failing_cell_fails_the_run_and_the_report_keeps_the_error(tmp_path: Path):
    nb = notebook(
        tmp_path / "broken.ipynb",
        "print('first')",
        "%%flow compute\n1 / 0",
        "print('never')",
    )
    home = tmp_path / "home"
    res = cli(home, "run", str(nb))
    assert res.returncode == 1
    assert "Failed in cell 2 of the executed notebook" in res.stderr
    ((state, message, out_path),) = rows(
        home,
        "select state_name, message, output_path from flow_runs where flow_name = 'broken.ipynb'",
    )
    assert state == "Failed" and "ZeroDivisionError" in message
    executed = nbformat.read(out_path, as_version=4)
    assert executed.cells[1].outputs[-1]["ename"] == "ZeroDivisionError"
    assert executed.cells[2].get("outputs") == []
    assert rows(home, "select state_name from flow_runs where flow_name = 'compute'") == [
        ("Failed",)
    ]


def test_stopping_a_notebook_run_cancels_it(tmp_path: Path):
    marker = tmp_path / "started"
    nb = notebook(
        tmp_path / "slow.ipynb",
        f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()",
        "%%flow wait\ntime.sleep(120)",
    )
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orion_nb.cli", "run", str(nb)],
        env=env_for(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)  # inside the %%flow cell by now, or about to be: either way it is cancelled
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    states = dict(rows(home, "select flow_name, state_name from flow_runs"))
    assert states["slow.ipynb"] == "Cancelled"
    assert states.get("wait", "Cancelled") == "Cancelled"


def test_a_flow_cell_may_use_ipython_syntax_in_the_kernel(kernel):
    r = kernel.run("%load_ext orion_nb")
    assert r["status"] == "ok", r["errors"]
    r = kernel.run("%%flow shell-cell\nword = 'orion'\n!echo hello $word\nfiles = !echo a b\nfiles")
    assert r["status"] == "ok", r["errors"]
    assert "hello orion" in r["stdout"]
    assert kernel.value("list(files)") == ["a b"]
    assert (
        kernel.value("orion_nb.flow_runs(flow_name='shell-cell').iloc[0]['state_name']")
        == "Completed"
    )


def test_serving_a_notebook_leaves_a_report_per_run(tmp_path: Path):
    nb = notebook(
        tmp_path / "tick.ipynb", ("n = 1", ["parameters"]), "%%flow step\nprint('n is', n)"
    )
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orion_nb.cli",
            "serve",
            str(nb),
            "--interval",
            "1",
            "--param",
            "n=3",
        ],
        env=env_for(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 180
    done: list[tuple[str, str]] = []
    while time.monotonic() < deadline and not done:
        time.sleep(0.5)
        try:
            done = rows(
                home,
                "select f.output_path, f.parameters from flow_runs f join deployments d "
                "on d.id = f.deployment_id where f.state_name = 'Completed' "
                "and f.output_path is not null",  # recorded once the notebook is saved
            )
        except sqlite3.OperationalError:
            continue  # the history file is not created yet: poll again
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and done, out
    out_path, params = done[0]
    assert json.loads(params) == {"n": 3}
    executed = nbformat.read(out_path, as_version=4)
    assert "n is 3" in json.dumps([c.get("outputs", []) for c in executed.cells])
    assert rows(
        home, "select count(*) from flow_runs where state_type in ('PENDING', 'RUNNING')"
    ) == [(0,)]


def test_a_papermill_output_notebook_runs_with_its_injected_values_as_defaults(tmp_path: Path):
    nb = notebook(
        tmp_path / "pm.ipynb",
        ("n = 1\nlabel = 'a'", ["parameters"]),
        ("# Parameters\nn = 5\n", ["injected-parameters"]),
        "print('values', n, label)",
    )
    home = tmp_path / "home"
    res = cli(home, "run", str(nb), "--param", "label=b", "-o", str(tmp_path / "out.ipynb"))
    assert res.returncode == 0, res.stdout + res.stderr
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert [c.source for c in injected] == ["# Parameters\nn = 5\nlabel = 'b'\n"]
    assert "values 5 b" in json.dumps([c.get("outputs", []) for c in executed.cells])
    assert rows(home, "select parameters from flow_runs") == [('{"n": 5, "label": "b"}',)]
