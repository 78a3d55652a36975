"""Deployments and scheduled runs in the history (a real SQLite file): slots, claims, states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import orion_nb
from orion_nb import flow
from orion_nb.engine.flow_engine import scheduled_run
from orion_nb.errors import DeploymentError
from orion_nb.export import deployments as dep
from orion_nb.export.deployments import DeploymentSpec
from orion_nb.export.schedules import Schedule
from orion_nb.export.serve import plan
from orion_nb.store import deployments as sql
from tests.export.helpers import race_claims

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def names() -> str:
    return "slot-run"


@pytest.fixture
def deployment(tmp_path: Path) -> dict[str, object]:
    script = tmp_path / "job.py"
    script.write_text("print('job')\n")
    spec = DeploymentSpec("nightly", script, "job", Schedule.parse(interval=60), {"n": 2})
    return dep.register(spec)


def slots(n: int) -> list[datetime]:
    return [T0 + timedelta(minutes=i) for i in range(n)]


def test_each_slot_gets_one_scheduled_run_however_often_it_is_scheduled(deployment):
    assert dep.call(sql.schedule_slots, deployment, slots(3), T0, names) == 3
    assert dep.call(sql.schedule_slots, deployment, slots(4), T0, names) == 1
    runs = orion_nb.flow_runs(deployment="nightly")
    assert len(runs) == 4
    assert set(runs["state_name"]) == {"Scheduled"}
    assert set(runs["deployment"]) == {"nightly"}
    assert sorted(runs["expected_start_time"]) == slots(4)
    assert runs.iloc[0]["parameters"] == {"n": 2}
    first = runs.sort_values("expected_start_time").iloc[0]["id"]
    st = orion_nb.states(first)
    assert list(st["name"]) == ["Scheduled"]
    assert "deployment 'nightly': slot 2030-01-01T12:00:00+00:00" in st.iloc[0]["message"]


def test_a_slot_is_claimed_by_exactly_one_of_many_racing_claimers(deployment):
    dep.call(sql.schedule_slots, deployment, slots(1), T0, names)
    (due,) = dep.call(sql.due_runs, deployment["id"], T0)
    wins = race_claims(due["id"], 8)
    assert sorted(wins) == [False] * 7 + [True]
    assert dep.call(sql.due_runs, deployment["id"], T0) == []  # claimed: no longer due


def test_late_and_skipped_never_touch_a_claimed_run(deployment):
    dep.call(sql.schedule_slots, deployment, slots(3), T0, names)
    a, b, c = (r["id"] for r in dep.call(sql.due_runs, deployment["id"], T0 + timedelta(hours=1)))
    assert dep.call(sql.claim_run, b, "host", 4242)
    later = T0 + timedelta(hours=1)
    assert dep.call(sql.mark_late, {a: "late a", b: "late b"}, later) == [a]
    assert dep.call(sql.mark_late, {a: "late again"}, later) == []  # once is enough
    assert dep.call(sql.skip_runs, {a: "skipped a", b: "skipped b", c: "skipped c"}, later) == [
        a,
        c,
    ]
    assert [list(orion_nb.states(r).sort_values("id")["name"]) for r in (a, b, c)] == [
        ["Scheduled", "Late", "Cancelled"],
        ["Scheduled"],
        ["Scheduled", "Cancelled"],
    ]
    runs = orion_nb.flow_runs().set_index("id")
    assert runs.loc[a, "message"] == "skipped a"
    assert runs.loc[b, "state_name"] == "Scheduled"


def test_plan_runs_the_newest_due_slot_and_skips_missed_ones_unless_catching_up():
    due = [{"id": str(i), "expected_start_time": T0 + timedelta(seconds=i)} for i in range(3)]
    now = T0 + timedelta(seconds=2.5)
    p = plan(due, now, catch_up=False, late_after=15)
    assert [r["id"] for r in p.run] == ["2"]
    assert set(p.skip) == {"0", "1"} and set(p.late) == {"0", "1"}
    assert "a later one is due" in p.skip["0"] and "--catch-up" in p.skip["0"]
    p = plan(due, now, catch_up=True, late_after=15)
    assert [r["id"] for r in p.run] == ["0", "1", "2"] and not p.skip and not p.late
    p = plan(due[:1], T0 + timedelta(seconds=20), catch_up=False, late_after=15)
    assert not p.run and set(p.skip) == {"0"} and "missed by 20 s" in p.skip["0"]
    assert "not started 20 s after its slot" in p.late["0"]
    p = plan(due[:1], T0 + timedelta(seconds=20), catch_up=True, late_after=15)
    assert [r["id"] for r in p.run] == ["0"] and set(p.late) == {"0"}


def test_a_top_level_flow_takes_over_its_scheduled_run(deployment):
    dep.call(sql.schedule_slots, deployment, slots(1), T0, names)
    (due,) = dep.call(sql.due_runs, deployment["id"], T0)
    assert dep.call(sql.claim_run, due["id"], "host", 1)

    @flow(name="job")
    def job(n: int = 1) -> int:
        return sub() * n

    @flow(name="sub")
    def sub() -> int:
        return 21

    token = scheduled_run.set([due["id"]])
    try:
        assert job(n=2) == 42
        assert job(n=3) == 63  # the second top-level run is a run of its own
    finally:
        scheduled_run.reset(token)
    runs = orion_nb.flow_runs().set_index("id")
    adopted = runs.loc[due["id"]]
    assert adopted["state_name"] == "Completed"
    assert adopted["deployment"] == "nightly"
    assert adopted["expected_start_time"] == T0
    assert adopted["parameters"] == {"n": 2}
    assert adopted["name"] != "slot-run"  # the engine's record of the run wins
    assert list(orion_nb.states(due["id"]).sort_values("id")["name"]) == [
        "Scheduled",
        "Pending",
        "Running",
        "Completed",
    ]
    others = runs[runs.index != due["id"]]
    assert others["deployment"].isna().all() and len(others) == 3  # sub, job, sub


def test_pause_resume_and_remove(deployment, tmp_path):
    dep.call(sql.schedule_slots, deployment, slots(3), T0, names)
    _, removed = dep.pause("nightly", True)
    assert removed == 3 and orion_nb.flow_runs(deployment="nightly").empty
    assert dep.find("nightly")["paused"] is True
    dep.pause("nightly", False)
    assert dep.find("nightly")["paused"] is False
    dep.call(sql.schedule_slots, deployment, slots(2), T0, names)
    (first, _) = dep.call(sql.due_runs, deployment["id"], T0 + timedelta(hours=1))
    dep.call(sql.claim_run, first["id"], "host", 1)
    dep.call(sql.close_run, first["id"], "COMPLETED", "Completed", "done", T0)
    assert dep.remove("nightly")[1] == 1  # the unclaimed one
    with pytest.raises(DeploymentError, match="No deployment named 'nightly'"):
        dep.find("nightly")
    kept = orion_nb.flow_runs()
    assert list(kept["id"]) == [first["id"]]  # the run that ran stays in the history
    assert kept.iloc[0]["deployment"] is None


def test_changing_a_schedule_drops_the_slots_made_for_the_old_one(deployment, tmp_path):
    dep.call(sql.schedule_slots, deployment, slots(3), T0, names)
    same = DeploymentSpec("nightly", Path(deployment["path"]), "job", Schedule.parse(interval=60))
    dep.register(same)
    assert len(orion_nb.flow_runs(deployment="nightly")) == 3
    other = DeploymentSpec("nightly", Path(deployment["path"]), "job", Schedule.parse(interval=30))
    row = dep.register(other)
    assert row["id"] == deployment["id"] and row["interval_seconds"] == 30
    assert orion_nb.flow_runs(deployment="nightly").empty


def test_unknown_deployments_get_the_names_there_are(deployment):
    with pytest.raises(DeploymentError, match="did you mean 'nightly'"):
        dep.find("nightlly")
    with pytest.raises(DeploymentError, match="there are 'nightly'"):
        dep.find("zzz")


def test_closing_a_run_ends_its_open_task_runs_and_subflows_only(orion_home, tmp_path):
    """What serve does when the process of a run was killed: end what it left open."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "stuck.py"
    script.write_text(
        "import time\n"
        "from orion_nb import flow, task\n"
        "@task\ndef quick():\n    return 1\n"
        "@task\ndef slow():\n    print('started', flush=True)\n    time.sleep(60)\n"
        "@flow(name='inner')\ndef inner():\n    slow()\n"
        "@flow(name='outer')\ndef outer():\n    quick()\n    inner()\n"
        "outer()\n"
    )
    env = {**os.environ, "ORION_NB_HOME": str(orion_home), "ORION_NB_DISPLAY": "none"}
    env.pop("ORION_NB_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the writer commits within its flush interval
        running = orion_nb.task_runs(state="Running")
        if "slow" in set(running["task_name"]):
            break
        time.sleep(0.1)
    # stopped, not killed: its pid stays alive, so crash detection (DetectCrashedRuns, run when
    # this process opens the history for writing) leaves its runs to close_run
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        outer_id = orion_nb.flow_runs(flow_name="outer").iloc[0]["id"]
        ended = dep.call(sql.close_run, outer_id, "CANCELLED", "Cancelled", "stopped", dep.now())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert ended == 4  # outer, inner, inner's task run in outer, slow
    tasks = orion_nb.task_runs().set_index("task_name")["state_name"]
    assert tasks["quick"] == "Completed" and tasks["slow"] == "Cancelled"
    assert set(orion_nb.flow_runs()["state_name"]) == {"Cancelled"}
    assert dep.call(sql.close_run, outer_id, "CRASHED", "Crashed", "again", dep.now()) == 0
