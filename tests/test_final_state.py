"""The final state of a run from what its body returned (Prefect 3's rules).

- A State the user built and returned is the run's final state, as given (name, message, data).
- Futures in the return value become their States; a State from another run, or a non-empty
  list/tuple/set of States, is judged as a group: Completed when all completed, otherwise
  Failed (or Cancelled), with a message counting them; the States are the result.
- A failed State nested in other data (a tuple with a string, a dict) is plain data.
"""

from __future__ import annotations

import pytest

import orion_nb
from orion_nb import Completed, Failed, State, flow, task
from orion_nb.errors import FailedRun


@task
def ok(x):
    return x


@task
def bad(x):
    raise ValueError(f"bad {x}")


def test_a_returned_completed_state_keeps_its_name_and_message():
    @flow
    def maybe():
        return Completed(name="Skipped", message="nothing new upstream")

    state = maybe(return_state=True)
    assert (state.type.name, state.name, state.message) == (
        "COMPLETED",
        "Skipped",
        "nothing new upstream",
    )
    assert maybe() is None
    run = orion_nb.flow_runs().iloc[0]
    assert run["state_name"] == "Skipped" and run["state_type"] == "COMPLETED"
    assert "Skipped" in orion_nb.states(run["id"])["name"].astype(str).tolist()


def test_a_returned_failed_state_keeps_its_data_and_message():
    @flow
    def partial():
        return Failed(message="2 of 10 files were unreadable", data={"read": 8})

    state = partial(return_state=True)
    assert state.is_failed()
    assert state.message == "2 of 10 files were unreadable"
    assert state.result(raise_on_failure=False) == {"read": 8}
    with pytest.raises(FailedRun, match="2 of 10 files were unreadable"):
        partial()
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "Failed"


def test_a_task_that_returns_a_failed_state_is_failed_and_its_downstream_does_not_run():
    @task
    def check(x):
        return Failed(message=f"{x} is not valid") if x < 0 else x

    @task
    def use(x):
        return x

    @flow
    def pipeline():
        return use(check(-1, return_state=True), return_state=True)

    state = pipeline(return_state=True)  # returning a failed task state fails the flow
    assert state.is_failed()
    runs = orion_nb.task_runs().set_index("task_name")
    assert runs.loc["check", "state_name"] == "Failed"
    assert runs.loc["check", "message"] == "-1 is not valid"
    assert runs.loc["use", "state_name"] == "Failed"


def test_a_flow_returning_one_future_gets_its_state_back():
    @flow
    def pipeline():
        return ok.submit(3)

    result = pipeline()
    assert isinstance(result, State)
    assert result.is_completed() and result.result() == 3
    assert pipeline(return_state=True).message == "All states completed."


def test_a_flow_returning_futures_gets_states_and_fails_if_any_failed():
    @flow
    def pipeline():
        return [ok.submit(1), bad.submit(2), ok.submit(3)]

    state = pipeline(return_state=True)
    assert state.is_failed()
    assert state.message == "1/3 states failed."
    states = state.result(raise_on_failure=False)
    assert [s.name for s in states] == ["Completed", "Failed", "Completed"]
    with pytest.raises(ValueError, match="bad 2"):
        pipeline()


def test_a_flow_returning_a_list_of_completed_states_returns_the_states():
    @flow
    def pipeline():
        return [ok(1, return_state=True), ok(2, return_state=True)]

    states = pipeline()
    assert [s.result() for s in states] == [1, 2]


def test_a_failed_state_nested_in_other_data_is_plain_data():
    @flow
    def pipeline():
        return ("report", bad(1, return_state=True))

    text, state = pipeline()
    assert text == "report" and state.is_failed()
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "Completed"


def test_futures_nested_in_a_dict_become_states_and_the_flow_completes():
    @flow
    def pipeline():
        return {"a": ok.submit(1), "b": bad.submit(2)}

    out = pipeline()
    assert out["a"].is_completed() and out["b"].is_failed()
