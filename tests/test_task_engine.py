"""Driving task runs: retries (with the rule and reason recorded), timeouts, hooks.

Every test checks what a user would see: return values, raised exceptions, and the recorded
history (through the public DataFrame API, i.e. a real SQLite file).
"""

from __future__ import annotations

import time

import pytest

import orion_nb
from orion_nb import flow, task
from tests._helpers import task_row


def test_retries_record_each_attempt_with_the_rule_and_reason():
    attempts = []

    @task(retries=2, retry_delay_seconds=0)
    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError(f"try {len(attempts)}")
        return "ok"

    @flow
    def f():
        return flaky()

    assert f() == "ok"
    row = task_row("flaky-0")
    assert row["run_count"] == 3 and row["state_name"] == "Completed"
    st = orion_nb.states(row["id"]).sort_values("id")
    assert list(st["name"].astype(str)) == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Retrying",
        "AwaitingRetry",
        "Retrying",
        "Completed",
    ]
    retry_rows = st[st["name"] == "AwaitingRetry"]
    assert set(retry_rows["rule"]) == {"RetryFailedRuns"}
    assert retry_rows.iloc[0]["message"].startswith(
        "RetryFailedRuns: attempt 1 of 3 failed (ConnectionError: try 1)"
    )


def test_retries_exhausted_fail_with_last_error():
    @task(retries=1, retry_delay_seconds=[0])
    def always():
        raise RuntimeError("still broken")

    @flow
    def f():
        always()

    with pytest.raises(RuntimeError, match="still broken"):
        f()
    assert task_row("always-0")["run_count"] == 2


def test_retry_condition_fn_can_refuse_a_retry():
    calls = []

    def only_connection_errors(task, run, state):
        return isinstance(state.result(raise_on_failure=False), ConnectionError)

    @task(retries=3, retry_delay_seconds=0, retry_condition_fn=only_connection_errors)
    def parse():
        calls.append(1)
        raise ValueError("bad data")

    with pytest.raises(ValueError):
        parse()
    assert len(calls) == 1


def test_retry_delay_is_waited():
    @task(retries=1, retry_delay_seconds=0.3)
    def once():
        once.calls += 1  # type: ignore[attr-defined]
        if once.calls == 1:  # type: ignore[attr-defined]
            raise OSError("first")
        return time.monotonic()

    once.calls = 0  # type: ignore[attr-defined]
    t0 = time.monotonic()
    finished = once()
    assert finished - t0 >= 0.3


def test_sync_timeout_interrupts_a_blocking_sleep_on_the_main_thread():
    @task(timeout_seconds=0.2)
    def hang():
        time.sleep(10)

    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        hang()
    assert time.monotonic() - t0 < 5
    row = task_row("hang-0")
    assert row["state_name"] == "TimedOut"
    st = orion_nb.states(row["id"])
    assert st.iloc[0]["rule"] == "EnforceTimeout"


def test_timeout_in_a_worker_thread():
    @task(timeout_seconds=0.2)
    def busy():
        for _ in range(500):
            time.sleep(0.01)
        return "finished"

    @flow
    def f():
        return busy.submit().result()

    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        f()
    assert time.monotonic() - t0 < 4
    assert task_row("busy-0")["state_name"] == "TimedOut"


def test_hooks_receive_the_final_state():
    seen = []

    @task(on_completion=[lambda t, r, s: seen.append(("task", s.name))])
    def t():
        return 1

    @flow(
        on_completion=[lambda f, r, s: seen.append(("flow", s.name))],
        on_failure=[lambda f, r, s: seen.append(("flow-failed", s.name))],
    )
    def f(fail: bool = False):
        t()
        if fail:
            raise RuntimeError("x")

    f()
    with pytest.raises(RuntimeError):
        f(fail=True)
    assert seen == [
        ("task", "Completed"),
        ("flow", "Completed"),
        ("task", "Completed"),
        ("flow-failed", "Failed"),
    ]


def test_exponential_backoff_delays_double_per_attempt():
    assert orion_nb.exponential_backoff(2)(3) == [2, 4, 8]
    calls = 0

    @task(retries=3, retry_delay_seconds=orion_nb.exponential_backoff(0.01))
    def flaky():
        nonlocal calls
        calls += 1
        if calls < 3:
            raise OSError("again")
        return calls

    assert flaky() == 3
    waits = orion_nb.states(orion_nb.task_runs(task_name="flaky").iloc[0]["id"])
    reasons = list(waits[waits["name"] == "AwaitingRetry"].sort_values("id")["message"])
    assert "attempt 2 in 0.01 s" in reasons[0] and "attempt 3 in 0.02 s" in reasons[1]


def test_cancellation_hook_is_called_when_a_flow_is_interrupted():
    seen = []

    @flow(on_cancellation=[lambda f, r, s: seen.append(s.name)])
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert seen == ["Cancelled"]
