"""Futures and states inside containers: found, waited for, resolved and recorded as edges.

Every collection a user can pass (list, tuple, set, frozenset, dict values, ``FutureList``, other
list/dict subclasses, namedtuples, dataclass fields, pydantic model fields, nested) must reach
the task as values, after the upstream runs finished, with one edge per upstream run.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import NamedTuple

import pydantic
import pytest

import orion_nb
from orion_nb import allow_failure, flow, task, unmapped


@task
def double(x):
    return 2 * x


@task
def slow_double(x, gate: threading.Event | None = None):
    if gate is not None:
        gate.wait(5)
    return 2 * x


@task
def boom(x):
    raise ValueError(f"boom {x}")


def edges_of(name: str) -> set[tuple[str, str]]:
    """(upstream run name, parameter) pairs recorded for the task run called ``name``."""
    runs = orion_nb.task_runs()
    names = dict(zip(runs["id"], runs["name"], strict=True))
    me = runs[runs["name"] == name]["id"].iloc[0]
    inputs = orion_nb.task_inputs()
    mine = inputs[inputs["task_run_id"] == me]
    return {
        (names[u], p) for u, p in zip(mine["upstream_task_run_id"], mine["parameter"], strict=True)
    }


@dataclasses.dataclass
class Pair:
    left: object
    right: object


@dataclasses.dataclass(frozen=True)
class FrozenPair:
    left: object
    right: object


class Point(NamedTuple):
    x: object
    y: object


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    a: object
    b: object = None


def test_map_results_are_resolved_before_the_downstream_runs():
    seen = []

    @task
    def total(xs):
        seen.append(list(xs))
        return sum(xs)

    @flow
    def pipeline():
        return total(double.map([1, 2, 3]))

    assert pipeline() == 12
    assert seen == [[2, 4, 6]]
    assert edges_of("total-0") == {("double-0", "xs"), ("double-1", "xs"), ("double-2", "xs")}


CONTAINERS = {
    "list": lambda a, b: [a, b],
    "tuple": lambda a, b: (a, b),
    "dict values": lambda a, b: {"a": a, "b": b},
    "OrderedDict": lambda a, b: collections.OrderedDict(a=a, b=b),
    "defaultdict": lambda a, b: collections.defaultdict(list, a=a, b=b),
    "namedtuple": lambda a, b: Point(a, b),
    "dataclass": lambda a, b: Pair(a, b),
    "frozen dataclass": lambda a, b: FrozenPair(a, b),
    "pydantic model": lambda a, b: Model(a=a, b=b),
    "nested five deep": lambda a, b: {"k": [({"z": [a]},), b]},
}


def _values(resolved) -> list[int]:
    """The two resolved numbers, whatever container carried them."""
    if isinstance(resolved, dict) and "k" in resolved:
        return [resolved["k"][0][0]["z"][0], resolved["k"][1]]
    if isinstance(resolved, dict):
        return [resolved["a"], resolved["b"]]
    if isinstance(resolved, (Pair, FrozenPair)):
        return [resolved.left, resolved.right]
    if isinstance(resolved, Model):
        return [resolved.a, resolved.b]
    return list(resolved)


@pytest.mark.parametrize("kind", list(CONTAINERS))
def test_futures_in_any_container_are_waited_for_resolved_and_linked(kind):
    make = CONTAINERS[kind]
    received = []

    @task
    def consume(box):
        received.append(box)
        return _values(box)

    @flow
    def pipeline():
        gate = threading.Event()
        a = slow_double.submit(1, gate)
        b = slow_double.submit(2, gate)
        box = make(a, b)
        later = consume.submit(box)
        gate.set()  # the upstreams finish only now: consume must have waited for them
        return later.result()

    assert pipeline() == [2, 4]
    box = received[0]
    assert type(box) is type(make(1, 2)) or kind == "nested five deep"
    assert edges_of("consume-0") == {("slow_double-0", "box"), ("slow_double-1", "box")}


def test_sets_of_futures_are_resolved():
    @task
    def consume(values):
        return sorted(values)

    @flow
    def pipeline():
        futs = {double.submit(1), double.submit(5)}
        return consume(futs), consume(frozenset(futs))

    assert pipeline() == ([2, 10], [2, 10])


def test_a_futurelist_inside_a_dict_and_a_tuple_is_resolved():
    @task
    def consume(payload):
        return payload["xs"], payload["pair"]

    @flow
    def pipeline():
        futs = double.map([1, 2])
        return consume({"xs": futs, "pair": (futs, 0)})

    assert pipeline() == ([2, 4], ([2, 4], 0))


def test_wait_for_a_futurelist_waits_for_every_mapped_run():
    order = []

    @task
    def slow(i, gate):
        gate.wait(5)
        order.append(f"slow-{i}")

    @task
    def after():
        order.append("after")

    @flow
    def pipeline():
        gate = threading.Event()
        futs = slow.map([0, 1], gate=orion_nb.unmapped(gate))
        last = after.submit(wait_for=[futs])
        gate.set()
        last.wait()

    pipeline()
    assert order[-1] == "after" and sorted(order[:2]) == ["slow-0", "slow-1"]
    assert edges_of("after-0") == {("slow-0", "wait_for"), ("slow-1", "wait_for")}


def test_wait_for_allow_failure_of_a_futurelist_runs_after_failures():
    ran = []

    @task
    def after():
        ran.append(True)
        return "ran"

    @flow
    def pipeline():
        futs = boom.map([1, 2])
        return after(wait_for=[allow_failure(futs)])

    assert pipeline() == "ran"
    assert ran == [True]


def test_allow_failure_around_a_collection_passes_the_exceptions_in_place():
    @task
    def consume(values):
        return [type(v).__name__ if isinstance(v, Exception) else v for v in values]

    @flow
    def pipeline():
        return consume(allow_failure([double.submit(1), boom.submit(2)]))

    assert pipeline() == [2, "ValueError"]
    row = orion_nb.task_runs(task_name="consume").iloc[0]
    assert row["state_name"] == "Completed"  # never Crashed


def test_a_failed_future_in_a_collection_fails_the_downstream_with_its_name():
    @task
    def consume(values):
        return values

    states = []

    @flow
    def pipeline():
        states.append(consume([double.submit(1), boom.submit(2)], return_state=True))

    pipeline()
    assert states[0].is_failed()
    row = orion_nb.task_runs(task_name="consume").iloc[0]
    assert row["state_name"] == "Failed"
    assert "boom-0" in row["message"]


def test_a_failing_resolution_is_an_ordinary_failure_never_a_crash():
    @task
    def listy():
        return [1, 2]

    @task
    def consume(values):
        return values

    states = []

    @flow
    def pipeline():
        # a set cannot hold the unhashable result its future resolves to
        states.append(consume({listy.submit()}, return_state=True))

    pipeline()
    state = states[0]
    assert state.is_failed()
    assert "unhashable" in (state.message or "")
    states = orion_nb.task_runs(task_name="consume")["state_name"].astype(str)
    assert set(states) == {"Failed"}


def test_a_flow_returning_mapped_futures_fails_when_one_failed():
    @task
    def maybe(x):
        if x == 2:
            raise ValueError("two")
        return x

    @flow
    def pipeline():
        return maybe.map([1, 2, 3])

    state = pipeline(return_state=True)
    assert state.is_failed()
    assert state.message == "1/3 states failed."
    with pytest.raises(ValueError, match="two"):
        pipeline()


def test_self_referencing_containers_do_not_hang_the_scan():
    @task
    def consume(values):
        return len(values)

    @flow
    def pipeline():
        loop: list[object] = [double.submit(1)]
        loop.append(loop)
        return consume(loop)

    assert pipeline() == 2


def test_large_plain_lists_pass_through_untouched():
    @task
    def consume(values):
        return values

    data = list(range(200_000))

    @flow
    def pipeline():
        return consume(data)

    assert pipeline() is data


# -- the walker and the input scan as units ----------------------------------------------------


def test_scan_marks_everything_inside_allow_failure_and_sees_through_unmapped():
    from orion_nb.engine.annotations import quote
    from orion_nb.engine.walk import scan

    seen = []
    marker_a, marker_b, marker_c = object(), object(), object()
    value = [allow_failure([unmapped(marker_a)]), unmapped(marker_b), quote(marker_c)]
    scan(
        value,
        lambda node, allowed: bool(seen.append((node, allowed))) or node in (marker_a, marker_b),
    )
    assert (marker_a, True) in seen and (marker_b, False) in seen
    assert all(node is not marker_c for node, _ in seen)  # quote stops the walk


def test_the_same_container_twice_is_resolved_in_both_places():
    @task
    def consume(pair):
        return pair

    @flow
    def pipeline():
        shared = [double.submit(1)]
        return consume((shared, shared))

    assert pipeline() == ([2], [2])


def test_objects_that_only_look_like_models_are_not_entered():
    from orion_nb.engine.walk import KEEP, is_plain, transform

    class LooksLikeAModel:
        model_fields = {"a": None}  # but no model_copy: not a pydantic model

        def __init__(self, a):
            self.a = a

    odd = LooksLikeAModel(object())
    assert transform(odd, lambda node, allowed: "replaced" if node is odd.a else KEEP) is odd
    assert repr(KEEP) == "KEEP"
    assert is_plain(3) and is_plain(None) and not is_plain([3])


def test_find_upstream_names_parameters_states_and_tracked_results():
    from orion_nb.engine.inputs import find_upstream
    from orion_nb.orchestration.states import Completed, Failed

    done = Completed(data=1)
    done.run_id = "0000-run-of-state-12345678"
    failed = Failed()
    failed.run_id = "0000-failed-run-87654321"
    anonymous = Completed(data=2)  # built by hand: belongs to no run, not an upstream
    result = {"rows": 3}
    ids = {id(result): ("0000-producer-run-aaaabbbb", dict, None)}
    found = find_upstream(
        (done, allow_failure(failed), result, anonymous, "extra"),
        {},
        ["a", "b"],
        ids,
        wait_for=done,
    )
    described = [(u.parameter, u.run_id, u.name, u.allowed) for u in found]
    assert described == [
        ("a", "0000-run-of-state-12345678", "12345678", False),
        ("b", "0000-failed-run-87654321", "87654321", True),
        ("args[2]", "0000-producer-run-aaaabbbb", "aaaabbbb", False),
        ("wait_for", "0000-run-of-state-12345678", "12345678", False),
    ]
    assert found[0].state is done and found[0].as_input().state is done
    assert found[2].as_input().state.is_completed()  # known only from its result: it completed


def test_resolving_states_raises_unless_allowed():
    from orion_nb.engine.inputs import resolve, resolve_call
    from orion_nb.orchestration.states import Completed, Failed

    err = ValueError("bad")
    failed = Failed(data=err)
    assert resolve(allow_failure([failed, Completed(data=5)])) == [err, 5]
    with pytest.raises(ValueError, match="bad"):
        resolve([failed])
    args, kwargs = resolve_call((Completed(data=1),), {"k": [Completed(data=2)]})
    assert args == (1,) and kwargs == {"k": [2]}
