"""``serve`` as a real process: runs on schedule, stops cleanly, leaves nothing Running.

Nothing here asserts on timing: each test waits (with a generous timeout) until the history
shows what it expects, then looks at every recorded run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.export.helpers import cli, env_for, notebook, rows

OPEN = ("SCHEDULED", "PENDING", "RUNNING")


def start(home: Path, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        env=env_for(home, COLUMNS="200"),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(check: Callable[[], Any], proc: subprocess.Popen[str], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"serve exited early ({proc.returncode}):\n{out}")
        try:
            value = check()
        except Exception:  # the database may not exist yet
            value = None
        if value:
            return value
        time.sleep(0.2)
    proc.kill()
    out = proc.stdout.read() if proc.stdout else ""
    pytest.fail(f"timed out waiting; serve said:\n{out}")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    return out


def deployment_runs(home: Path, name: str) -> list[tuple[Any, ...]]:
    return rows(
        home,
        "select f.id, f.state_type, f.state_name, f.expected_start_time, f.message, f.pid "
        "from flow_runs f join deployments d on f.deployment_id = d.id where d.name = ? "
        "order by f.expected_start_time",
        name,
    )


def completed(home: Path, name: str) -> list[tuple[Any, ...]]:
    return [r for r in deployment_runs(home, name) if r[2] == "Completed"]


def no_run_left_open(home: Path) -> None:
    """Nothing Pending or Running, no claimed slot left behind (unclaimed future slots may stay)."""
    stuck = rows(
        home,
        "select flow_name, state_name from flow_runs where state_type in ('PENDING', 'RUNNING')"
        " or (state_type = 'SCHEDULED' and pid is not null)",
    )
    assert stuck == []
    open_tasks = rows(
        home, "select count(*) from task_runs where state_type in ('PENDING', 'RUNNING')"
    )
    assert open_tasks == [(0,)]


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    nb = notebook(
        tmp_path / "tick.ipynb",
        "from orion_nb import task\n\n@task\ndef double(x):\n    return 2 * x",
        ("n = 2", ["parameters"]),
        "%%flow compute\ntotal = sum(double(i) for i in range(n))",
        "print('total', total)",
    )
    res = cli(
        tmp_path / "home", "export", str(nb), "-o", str(tmp_path / "tick.py"), "--interval", "1"
    )
    assert res.returncode == 0, res.stderr
    return tmp_path / "tick.py"


def test_a_one_second_schedule_records_several_runs_with_their_deployment(exported, tmp_path):
    home = tmp_path / "home"
    proc = start(home, str(exported), "--serve", "--param", "n=3")
    wait_for(lambda: len(completed(home, "tick.py")) >= 3, proc)
    out = stop(proc)
    assert "serving 'tick.py': every 1 s" in out and "nothing is left running" in out
    runs = deployment_runs(home, "tick.py")
    slots = [r[3] for r in runs]
    assert len(slots) == len(set(slots))  # one run per slot
    for run_id, state_type, state_name, slot, message, _pid in runs:
        assert slot is not None
        names = [
            n for (n,) in rows(home, "select name from states where run_id = ? order by id", run_id)
        ]
        if state_name == "Completed":
            assert names == ["Scheduled", "Pending", "Running", "Completed"]
            (params,) = rows(home, "select parameters from flow_runs where id = ?", run_id)[0]
            assert params == '{"n": 3}'
            subflows = rows(
                home,
                "select f.flow_name from flow_runs f join task_runs t on f.parent_task_run_id = t.id "
                "where t.flow_run_id = ?",
                run_id,
            )
            assert subflows == [("compute",)]
        elif state_name == "Cancelled":  # a slot missed while the previous run was still going
            assert names[-1] == "Cancelled" and "--catch-up" in message
        else:  # made ahead and not due yet when serve stopped
            assert state_type == "SCHEDULED" and _pid is None, (state_name, names)
    no_run_left_open(home)


def test_one_process_serves_several_deployments(tmp_path):
    home = tmp_path / "home"
    for name in ("a", "b"):
        (tmp_path / f"{name}.py").write_text(
            f"from orion_nb import flow\n\n@flow(name={name!r})\ndef job():\n    return 1\n\njob()\n"
        )
    proc = start(
        home,
        "-m",
        "orion_nb.cli",
        "serve",
        str(tmp_path / "a.py"),
        str(tmp_path / "b.py"),
        "--interval",
        "1",
        "--poll",
        "1",
    )
    wait_for(lambda: completed(home, "a.py") and completed(home, "b.py"), proc)
    stop(proc)
    flows = dict(rows(home, "select name, flow_name from deployments"))
    assert flows == {"a.py": "a", "b.py": "b"}  # learnt from the first run
    no_run_left_open(home)


def test_sigterm_lets_the_running_run_finish(tmp_path):
    home = tmp_path / "home"
    script = tmp_path / "slow.py"
    marker = tmp_path / "started"
    script.write_text(
        "import pathlib, time\nfrom orion_nb import flow\n\n@flow(name='slow')\ndef slow():\n"
        f"    pathlib.Path({str(marker)!r}).touch()\n    time.sleep(2)\n    return 'done'\n\nslow()\n"
    )
    proc = start(
        home, "-m", "orion_nb.cli", "serve", str(script), "--interval", "1", "--grace", "60"
    )
    wait_for(marker.exists, proc)
    out = stop(proc)
    assert "SIGTERM: no new runs" in out
    states = [r[2] for r in deployment_runs(home, "slow.py")]
    assert states.count("Completed") == 1
    assert "Running" not in states and "Pending" not in states
    no_run_left_open(home)


def test_a_run_still_going_after_the_grace_period_is_cancelled(tmp_path):
    home = tmp_path / "home"
    script = tmp_path / "stuck.py"
    marker = tmp_path / "started"
    script.write_text(
        "import pathlib, time\nfrom orion_nb import flow, task\n\n@task\ndef wait():\n"
        f"    pathlib.Path({str(marker)!r}).touch()\n    time.sleep(120)\n\n"
        "@flow(name='stuck')\ndef stuck():\n    wait()\n\nstuck()\n"
    )
    proc = start(
        home, "-m", "orion_nb.cli", "serve", str(script), "--interval", "1", "--grace", "1"
    )
    wait_for(marker.exists, proc)
    out = stop(proc)
    runs = [r for r in deployment_runs(home, "stuck.py") if r[1] != "SCHEDULED"]
    assert [r[2] for r in runs] == ["Cancelled"], out
    (task_state,) = rows(home, "select state_name from task_runs where task_name = 'wait'")[0]
    assert task_state == "Cancelled"
    no_run_left_open(home)


def test_a_script_that_runs_no_flow_fails_its_scheduled_run(tmp_path):
    home = tmp_path / "home"
    script = tmp_path / "plain.py"
    script.write_text("print('no flow here')\n")
    proc = start(home, "-m", "orion_nb.cli", "serve", str(script), "--interval", "1")
    failed = wait_for(
        lambda: [r for r in deployment_runs(home, "plain.py") if r[2] == "Failed"], proc
    )
    stop(proc)
    assert "exited without recording a flow run" in failed[0][4]
    no_run_left_open(home)


def test_missed_slots_are_skipped_unless_catching_up(tmp_path):
    from tests.export.helpers import run

    home = tmp_path / "home"
    script = tmp_path / "job.py"
    script.write_text(
        "from orion_nb import flow\n\n@flow(name='job')\ndef job():\n    return 1\n\njob()\n"
    )
    # a serve process that made its slots ahead, then went away for three minutes
    setup = (
        "from datetime import timedelta\n"
        "from pathlib import Path\n"
        "from orion_nb.engine.params import random_run_name\n"
        "from orion_nb.export import deployments as dep\n"
        "from orion_nb.export.schedules import Schedule\n"
        "from orion_nb.store import deployments as sql\n"
        f"spec = dep.DeploymentSpec('job.py', Path({str(script)!r}), 'job', Schedule.parse(interval=60))\n"
        "d = dep.register(spec)\n"
        "now = dep.now()\n"
        "slots = [now - timedelta(minutes=m) for m in (3, 2, 1)]\n"
        "print(dep.call(sql.schedule_slots, d, slots, now, random_run_name))\n"
    )
    res = run(["-c", setup], home)
    assert res.stdout.strip() == "3", res.stderr
    proc = start(home, "-m", "orion_nb.cli", "serve", str(script))
    skipped = wait_for(
        lambda: len([r for r in deployment_runs(home, "job.py") if r[2] == "Cancelled"]) == 3, proc
    )
    stop(proc)
    assert skipped
    for run_id, _t, _s, _slot, message, _pid in deployment_runs(home, "job.py")[:3]:
        assert "(serve --catch-up runs missed slots)" in message
        names = [
            n for (n,) in rows(home, "select name from states where run_id = ? order by id", run_id)
        ]
        assert names == ["Scheduled", "Late", "Cancelled"]
    # the same again, caught up: every missed slot runs, oldest first
    res = run(["-c", setup.replace("(3, 2, 1)", "(6, 5, 4)")], home)
    proc = start(home, "-m", "orion_nb.cli", "serve", str(script), "--catch-up")
    wait_for(lambda: len(completed(home, "job.py")) >= 3, proc)
    stop(proc)
    caught = [r for r in deployment_runs(home, "job.py") if r[2] == "Completed"]
    assert [r[3] for r in caught] == sorted(r[3] for r in caught)
    for run_id, *_ in caught[:3]:
        names = [
            n for (n,) in rows(home, "select name from states where run_id = ? order by id", run_id)
        ]
        assert names == ["Scheduled", "Late", "Pending", "Running", "Completed"]
    no_run_left_open(home)


def test_a_run_that_ignores_sigterm_is_killed_and_ended_as_cancelled(tmp_path, orion_home):
    """The last resort: the child is killed, and serve ends what it left Running."""
    from datetime import timedelta

    import orion_nb
    from orion_nb.export import deployments as dep
    from orion_nb.export.schedules import Schedule
    from orion_nb.export.serve import Server
    from orion_nb.store import deployments as sql

    marker = tmp_path / "started"
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import pathlib, signal, time\nfrom orion_nb import flow\n\n@flow(name='stubborn')\n"
        "def stubborn():\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"    pathlib.Path({str(marker)!r}).touch()\n    time.sleep(120)\n\nstubborn()\n"
    )
    d = dep.register(
        dep.DeploymentSpec("stubborn.py", script, "stubborn", Schedule.parse(interval=60))
    )
    now = dep.now()
    dep.call(sql.schedule_slots, d, [now - timedelta(seconds=1)], now, lambda: "slot")
    (run,) = dep.call(sql.due_runs, d["id"], now)
    assert dep.call(sql.claim_run, run["id"], "host", os.getpid())
    server = Server([d], grace=0, kill_after=1)
    watcher = threading.Thread(
        target=lambda: (wait_until(marker.exists), server.stop(cancel=True)), daemon=True
    )
    watcher.start()
    assert server.execute(d, run) == "Cancelled"
    row = orion_nb.flow_runs().set_index("id").loc[run["id"]]
    assert row["state_name"] == "Cancelled"
    assert "did not finish within the 0 s grace period" in row["message"]


def wait_until(check: Callable[[], Any], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.1)
