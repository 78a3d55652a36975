"""Calling a task: direct calls, submit, map, standalone runs, definitions and their errors.

Every test checks what a user would see: return values, raised exceptions, and the recorded
history (through the public DataFrame API, i.e. a real SQLite file).
"""

from __future__ import annotations

import threading

import pytest

import orion_nb
from orion_nb import flow, task, unmapped
from orion_nb.errors import DefinitionError, ParameterError
from tests._helpers import state_names, task_row


def test_direct_call_returns_result_and_records_runs():
    @task
    def double(x):
        return 2 * x

    @flow
    def pipeline(n: int = 3):
        return [double(i) for i in range(n)]

    assert pipeline(3) == [0, 2, 4]
    fr = orion_nb.flow_runs()
    assert list(fr["flow_name"]) == ["pipeline"]
    assert fr.iloc[0]["state_name"] == "Completed"
    assert fr.iloc[0]["parameters"] == {"n": 3}
    tr = orion_nb.task_runs(flow_run_id=fr.iloc[0]["id"])
    assert sorted(tr["name"]) == ["double-0", "double-1", "double-2"]
    assert set(tr["state_name"].astype(str)) == {"Completed"}
    assert state_names(tr.iloc[0]["id"]) == ["Pending", "Running", "Completed"]


def test_failed_task_raises_the_original_exception_with_user_traceback():
    @task
    def explode():
        raise KeyError("missing-column")

    @flow
    def f():
        return explode()

    with pytest.raises(KeyError, match="missing-column") as info:
        f()
    frames = [tb.name for tb in info.traceback]
    assert "explode" in frames
    row = task_row("explode-0")
    assert row["state_name"] == "Failed"
    assert "KeyError" in row["message"]
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "Failed"


def test_return_state_gives_the_final_state_without_raising():
    @task
    def bad():
        raise ValueError("nope")

    @task
    def good():
        return 5

    @flow
    def g():
        s_bad = bad(return_state=True)
        s_good = good(return_state=True)
        assert s_bad.is_failed() and s_bad.name == "Failed"
        assert isinstance(s_bad.result(raise_on_failure=False), ValueError)
        return s_good.result()

    assert g() == 5


def test_submit_returns_future_with_result_wait_and_state():
    gate = threading.Event()

    @task
    def slow(x):
        gate.wait(5)
        return x + 1

    @flow
    def f():
        fut = slow.submit(1)
        assert fut.state.name in ("Pending", "Running")
        gate.set()
        fut.wait()
        assert fut.state.is_completed()
        return fut.result()

    assert f() == 2


def test_map_with_unmapped_and_length_mismatch():
    @task
    def scale(x, factor):
        return x * factor

    @flow
    def f():
        return scale.map([1, 2, 3], unmapped(10)).result()

    assert f() == [10, 20, 30]

    @flow
    def g():
        return scale.map([1, 2, 3], [1, 2]).result()

    with pytest.raises(ParameterError, match=r"different lengths \(x=3, factor=2\).*unmapped"):
        g()


def test_standalone_task_is_recorded_without_a_flow():
    @task
    def alone(x):
        return x

    assert alone(7) == 7
    row = task_row("alone-0")
    assert row["state_name"] == "Completed"
    assert row["flow_run_id"] is None or row["flow_run_id"] != row["flow_run_id"]  # None/NaN


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries must be a whole number >= 0"),
        ({"cache_key_fn": "not callable"}, "cache_key_fn must be callable"),
        ({"retry_delay_seconds": [1, -2]}, "retry_delay_seconds must hold numbers >= 0"),
        ({"timeout_seconds": 0}, "timeout_seconds must be a positive number"),
        ({"on_failure": print}, "on_failure must be a list of callables"),
    ],
    ids=[
        "negative retries",
        "non-callable cache_key_fn",
        "negative delay",
        "zero timeout",
        "hook not a list",
    ],
)
def test_invalid_task_options(options, message):
    with pytest.raises(DefinitionError, match=message):
        task(**options)(lambda: None)


def test_decorating_a_non_callable():
    with pytest.raises(DefinitionError, match="@task decorates functions"):
        task(42)
    with pytest.raises(DefinitionError, match="@flow decorates functions"):
        flow("etl")
    with pytest.raises(DefinitionError, match="retries must be"):
        flow(retries=-2)(lambda: None)


def test_with_options_changes_options_and_rejects_unknown_ones():
    @task
    def t():
        return 1

    renamed = t.with_options(name="renamed", retries=2)
    assert renamed.name == "renamed" and renamed.retries == 2 and t.retries == 0
    with pytest.raises(DefinitionError, match="unknown option"):
        t.with_options(retry=3)


def test_wrapped_function_keeps_its_signature_and_docs():
    import inspect

    @task
    def load(path: str, limit: int = 10) -> list[str]:
        """Load rows."""
        return []

    sig = inspect.signature(load)
    assert sig == inspect.signature(load.fn)
    assert list(sig.parameters) == ["path", "limit"] and sig.parameters["limit"].default == 10
    assert load.__doc__ == "Load rows."
    assert load.__name__ == "load"
