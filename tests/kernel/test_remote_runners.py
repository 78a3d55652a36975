"""Process and Dask workers driven from a real kernel: notebook code travels by value.

The kernel connects to a ``LocalCluster`` this test module starts (as a notebook connects
to a cluster someone else runs), and to process pools it starts itself.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_or_skip

pytestmark = pytest.mark.kernel

NOTEBOOK_CODE = """
import time
from pathlib import Path
import orion_nb
from orion_nb import DaskTaskRunner, ProcessPoolTaskRunner, flow, task

orion_nb.configure(display="none")

class Point:
    def __init__(self, x):
        self.x = x

def helper(p):
    return p.x * 10

@task
def measure(i):
    p = Point(i)
    return p, helper(p)

@task
def slow(folder, i):
    Path(folder, f"started-{i}").touch()
    for _ in range(600):
        time.sleep(0.1)
    Path(folder, f"finished-{i}").touch()
"""


@pytest.fixture(scope="module")
def cluster(kernel: Any) -> Iterator[Any]:
    require_or_skip(importlib.util.find_spec("distributed") is not None, "dask.distributed")
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as c:
        yield c
        kernel.run("from orion_nb.engine.dask_runner import close_clients; close_clients()")


@pytest.fixture(scope="module")
def notebook(kernel: Any) -> Any:
    r = kernel.run(NOTEBOOK_CODE)
    assert r["status"] == "ok", r["errors"]
    return kernel


@pytest.mark.parametrize("runner", ["processes", "dask"])
def test_functions_and_classes_defined_in_the_notebook_run_on_workers(notebook, cluster, runner):
    make = (
        "ProcessPoolTaskRunner(2)"
        if runner == "processes"
        else f"DaskTaskRunner(address={cluster.scheduler_address!r})"
    )
    r = notebook.run(
        f"@flow(task_runner={make})\n"
        "def nb_flow():\n"
        "    return measure.map(range(3)).result()\n"
        "out = nb_flow()\n"
        "print([n for _, n in out], all(isinstance(p, Point) for p, _ in out))"
    )
    assert r["status"] == "ok", r["errors"]
    assert "[0, 10, 20] True" in r["stdout"]  # the kernel's own class came back
    workers = notebook.value(
        "sorted(set(orion_nb.task_runs(flow_run_id=orion_nb.flow_runs(limit=1).iloc[0]['id'])"
        "['worker']))"
    )
    prefix = "process " if runner == "processes" else "tcp://"
    assert workers and all(w.startswith(prefix) for w in workers)


def test_flow_magic_runs_a_cell_on_the_process_runner(notebook):
    notebook.run("%load_ext orion_nb")
    r = notebook.run(
        "%%flow --task-runner processes\nres = measure.map(range(4)).result()\n[n for _, n in res]"
    )
    assert r["status"] == "ok", r["errors"]
    assert r["results"][0]["text/plain"] == "[0, 10, 20, 30]"


def test_interrupting_the_cell_cancels_its_tasks_on_the_cluster(notebook, cluster, tmp_path):
    from distributed import Client

    notebook.run(
        f"orion_nb.configure(task_runner=DaskTaskRunner(address={cluster.scheduler_address!r}))"
    )

    def interrupt_once_running() -> None:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("started-*")):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        time.sleep(0.5)  # let the kernel record the start
        notebook.km.interrupt_kernel()

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    r = notebook.run(f"%%flow on-the-cluster\nslow.map(str({str(tmp_path)!r}), range(4)).result()")
    assert r["status"] == "error" and r["errors"][0]["ename"] == "KeyboardInterrupt"
    states = notebook.value(
        "sorted(set(orion_nb.task_runs(flow_run_id=orion_nb.flow_runs(limit=1).iloc[0]['id'])"
        "['state_name'].astype(str)))"
    )
    assert states == ["Cancelled"]
    notebook.run("orion_nb.configure(task_runner='threads')")
    with Client(cluster, set_as_default=False) as client:
        deadline = time.monotonic() + 60
        while any(client.processing().values()):
            assert time.monotonic() < deadline, "the cluster kept running the cancelled tasks"
            time.sleep(0.1)
        # their threads were stopped as well: both workers take new work at once
        assert client.gather(client.map(lambda i: i, range(2), pure=False)) == [0, 1]
    assert not list(Path(tmp_path).glob("finished-*"))


def test_the_example_notebook_runs_on_processes_and_dask(tmp_path, monkeypatch):
    require_or_skip(importlib.util.find_spec("distributed") is not None, "dask.distributed")
    from tests.kernel.test_example_notebooks import execute

    nb, _ = execute("task_runners.ipynb", tmp_path, monkeypatch)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    texts = " ".join(str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "Score(5," in texts and "True" in texts
    import sqlite3

    db = sqlite3.connect(tmp_path / "home" / "orion.db")
    workers = {w for (w,) in db.execute("select distinct worker from task_runs")}
    assert any(w.startswith("process ") for w in workers)
    assert any(w.startswith("tcp://") for w in workers)
