"""Tags from ``with tags(...)`` on flow runs and their task runs; a limit of 0 aborts."""

from __future__ import annotations

import threading

import orion_nb
from orion_nb import flow, tags, task


def test_tags_context_is_recorded_on_the_flow_run_and_inherited_by_task_runs():
    @task(tags=["io"])
    def load():
        return 1

    @flow
    def pipeline():
        return load()

    with tags("nightly", "team-a"):
        pipeline()
    run = orion_nb.flow_runs().iloc[0]
    assert set(run["tags"]) == {"nightly", "team-a"}
    task_run = orion_nb.task_runs().iloc[0]
    assert set(task_run["tags"]) == {"io", "nightly", "team-a"}


def test_a_concurrency_limit_of_zero_fails_at_once_with_the_reason():
    orion_nb.set_concurrency_limit("frozen", 0)
    try:

        @task(tags=["frozen"])
        def never():
            return 1

        done = threading.Event()
        states = []

        def go():
            states.append(never(return_state=True))
            done.set()

        threading.Thread(target=go, daemon=True).start()
        assert done.wait(20), "a task with a limit of 0 waited instead of failing"
        state = states[0]
        assert state.is_failed()
        assert "limit of 0" in state.message and "set_concurrency_limit" in state.message
        assert (
            orion_nb.states(orion_nb.task_runs().iloc[0]["id"])["rule"]
            .astype(str)
            .str.contains("ConcurrencyLimits")
            .any()
        )
    finally:
        orion_nb.set_concurrency_limit("frozen", None)
