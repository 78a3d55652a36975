"""Flow runs: retries, timeouts, waiting for their task runs, subflows, cancellation, names, parameters.

Every test checks what a user would see: return values, raised exceptions, and the recorded
history (through the public DataFrame API, i.e. a real SQLite file).
"""

from __future__ import annotations

import threading
import time

import pytest

import orion_nb
from orion_nb import flow, task
from orion_nb.errors import ParameterError
from tests._helpers import task_row


def test_flow_retries_rerun_the_body():
    runs = []

    @flow(retries=1, retry_delay_seconds=0)
    def shaky():
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("first time")
        return len(runs)

    assert shaky() == 2
    row = orion_nb.flow_runs().iloc[0]
    assert row["run_count"] == 2 and row["state_name"] == "Completed"


def test_flow_timeout():
    @flow(timeout_seconds=0.2)
    def long():
        time.sleep(10)

    with pytest.raises(TimeoutError):
        long()
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "TimedOut"


def test_flow_completes_when_a_failed_task_is_not_returned():
    @task
    def bad():
        raise ValueError("ignored")

    @flow
    def f():
        bad(return_state=True)
        return "done"

    assert f() == "done"
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "Completed"


def test_flow_waits_for_submitted_tasks_it_did_not_wait_on():
    done = []

    @task
    def bg():
        time.sleep(0.1)
        done.append(1)

    @flow
    def f():
        bg.submit()

    f()
    assert done == [1]
    assert task_row("bg-0")["state_name"] == "Completed"


def test_subflow_is_linked_to_a_task_run_of_its_parent():
    @task
    def leaf():
        return 1

    @flow
    def child(x: int):
        return leaf() + x

    @flow
    def parent():
        return child(1) + child(2)

    assert parent() == 5
    fr = orion_nb.flow_runs()
    parent_row = fr[fr["flow_name"] == "parent"].iloc[0]
    children = fr[fr["flow_name"] == "child"]
    assert len(children) == 2
    tr = orion_nb.task_runs(flow_run_id=parent_row["id"])
    assert set(tr["task_name"]) == {"child"}
    assert set(children["parent_task_run_id"]) == set(tr["id"])
    assert set(tr["state_name"].astype(str)) == {"Completed"}


def test_keyboard_interrupt_cancels_flow_and_running_tasks():
    started = threading.Event()

    @task
    def long_running():
        started.set()
        for _ in range(1000):
            time.sleep(0.01)

    @flow
    def f():
        long_running.submit()
        started.wait(5)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        f()
    fr = orion_nb.flow_runs().iloc[0]
    assert fr["state_name"] == "Cancelled"
    row = task_row("long_running-0")
    assert row["state_name"] == "Cancelled"
    st = orion_nb.states(row["id"])
    cancelled = st[st["name"] == "Cancelled"].iloc[0]
    assert cancelled["rule"] == "PropagateCancellation"


def test_flow_run_name_and_task_run_name_templates():
    @task(task_run_name="load-{path}")
    def load(path: str):
        return path

    @flow(flow_run_name="nightly-{day}")
    def f(day: str):
        return load("a.csv")

    f("monday")
    assert orion_nb.flow_runs().iloc[0]["name"] == "nightly-monday"
    assert list(orion_nb.task_runs()["name"]) == ["load-a.csv"]


def test_validate_parameters_coerces_and_rejects():
    @flow
    def f(n: int, ratio: float = 0.5):
        return n, ratio

    assert f("3") == (3, 0.5)
    with pytest.raises(ParameterError, match=r"parameter 'n' expects int, got 'three'"):
        f("three")


def test_unknown_and_missing_parameters_are_named_with_a_suggestion():
    @task
    def load(path: str, limit: int = 10):
        return path

    with pytest.raises(
        ParameterError,
        match=r"Task 'load' got an unexpected parameter 'pth'; did you mean 'path'\?",
    ):
        load(pth="x")
    with pytest.raises(ParameterError, match=r"missing the required parameter 'path'"):
        load()

    @flow
    def f(n: int):
        return n

    with pytest.raises(ParameterError, match=r"Flow 'f' got an unexpected parameter 'm'"):
        f(m=1)
    with pytest.raises(ParameterError, match="takes 1 positional parameter"):
        f(1, 2)
    # rejected calls are recorded as failed runs that say why
    runs = orion_nb.flow_runs()
    assert list(runs["state_name"].astype(str)) == ["Failed", "Failed"]
    assert runs["message"].str.contains("takes 1 positional parameter").any()
