"""Parameters: bad ones are recorded failures, annotated ones are coerced as Prefect does."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pydantic
import pytest

import orion_nb
from orion_nb import flow, task
from orion_nb.errors import ParameterError


class Config(pydantic.BaseModel):
    path: str
    retries: int = 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: f(n=1, pth="x"), "unexpected parameter 'pth'; did you mean 'path'"),
        (lambda f: f(path="x"), "missing the required parameter 'n'"),
        (lambda f: f(n="many", path="x"), "parameter 'n' expects int"),
    ],
    ids=["unknown", "missing", "wrong type"],
)
def test_bad_parameters_are_a_recorded_failure_with_hooks(call, message):
    failures = []

    @flow(on_failure=[lambda flow, run, state: failures.append(state.message)])
    def load(n: int, path: str):
        return n

    with pytest.raises(ParameterError, match=message):
        call(load)
    state = call(lambda *a, **kw: load(*a, **kw, return_state=True))
    assert state.is_failed() and message.split(";")[0] in state.message
    runs = orion_nb.flow_runs()
    assert list(runs["state_name"].astype(str)) == ["Failed", "Failed"]
    assert all(message.split(";")[0] in m for m in runs["message"])
    assert len(failures) == 2


def test_a_task_called_with_a_bad_parameter_is_recorded_failed():
    @task
    def add(x, y):
        return x + y

    states = []

    @flow
    def pipeline():
        states.append(add(1, z=2, return_state=True))

    pipeline()  # the failed call does not fail the flow: it was not returned
    state = states[0]
    assert state.is_failed() and "unexpected parameter 'z'" in state.message
    assert orion_nb.task_runs().iloc[0]["state_name"] == "Failed"


def test_container_model_and_datetime_annotations_are_coerced():
    seen = {}

    @flow
    def report(
        ids: list[int],
        weights: dict[str, float],
        config: Config,
        since: datetime,
        limit: int | None = None,
    ):
        seen.update(ids=ids, weights=weights, config=config, since=since, limit=limit)

    report(["1", 2], {"a": "0.5"}, {"path": "x.csv"}, "2026-01-02T03:04:05+00:00", None)
    assert seen["ids"] == [1, 2]
    assert seen["weights"] == {"a": 0.5}
    assert seen["config"] == Config(path="x.csv", retries=1)
    assert seen["since"].year == 2026 and seen["since"].tzinfo is not None
    assert seen["limit"] is None


def test_a_value_that_cannot_be_coerced_names_the_parameter_and_type():
    @flow
    def report(ids: list[int]):
        return ids

    with pytest.raises(ParameterError, match=r"parameter 'ids' expects list\[int\]"):
        report(["one"])


def test_simple_annotations_do_not_import_pydantic():
    code = (
        "import sys, orion_nb\n"
        "orion_nb.configure(persist=False, display='none')\n"
        "@orion_nb.flow\n"
        "def f(n: int, name: str = 'x', ok: bool = True):\n"
        "    return n\n"
        "assert f('3') == 3\n"
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
