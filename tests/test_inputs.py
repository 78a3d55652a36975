"""Upstream runs found in a call's inputs: failures, edges, and no false edges.

Every test checks what a user would see: return values, raised exceptions, and the recorded
history (through the public DataFrame API, i.e. a real SQLite file).
"""

from __future__ import annotations

import orion_nb
from orion_nb import allow_failure, flow, task
from orion_nb.errors import UpstreamFailedError
from tests._helpers import task_row


def test_upstream_failure_fails_downstream_unless_allowed():
    seen = []

    @task
    def extract():
        raise OSError("source down")

    @task
    def load(data):
        return data

    @task
    def report(data):
        seen.append(data)
        return "reported"

    captured = {}

    @flow
    def g():
        up = extract.submit()
        down = load.submit(up)
        rep = report.submit(allow_failure(up))
        down.wait()
        captured["down"] = down.state
        return rep.result()

    rep = g()
    down_state = captured["down"]
    assert rep == "reported"
    assert isinstance(seen[0], OSError)  # allow_failure hands over the exception
    assert down_state.is_failed()
    assert isinstance(down_state.result(raise_on_failure=False), UpstreamFailedError)
    row = task_row("load-0")
    st = orion_nb.states(row["id"])
    failed = st[st["name"] == "Failed"].iloc[0]
    assert failed["rule"] == "UpstreamFailed" and "extract-0" in failed["message"]


def test_edges_are_recorded_from_futures_results_nesting_and_wait_for():
    @task
    def a():
        return [1, 2]

    @task
    def b():
        return {"k": 1}

    @task
    def c(items, config=None):
        return len(items)

    @flow
    def f():
        fa = a.submit()
        rb = b()
        fc = c.submit({"inner": [fa]}, config=rb)
        gate = a.submit()
        c([1], wait_for=[gate, fc])
        return fc.result()

    f()
    edges = orion_nb.task_inputs()
    tr = orion_nb.task_runs().set_index("id")["name"]
    named = {
        (tr[r.task_run_id], tr[r.upstream_task_run_id], r.parameter) for r in edges.itertuples()
    }
    assert ("c-0", "a-0", "items") in named
    assert ("c-0", "b-0", "config") in named
    assert ("c-1", "a-1", "wait_for") in named
    assert ("c-1", "c-0", "wait_for") in named


def test_map_over_a_task_result_links_every_mapped_run():
    @task
    def rows():
        return [1, 2, 3]

    @task
    def inc(x):
        return x + 1

    @flow
    def f():
        return inc.map(rows()).result()

    assert f() == [2, 3, 4]
    edges = orion_nb.task_inputs()
    assert len(edges) == 3
    assert edges["upstream_task_run_id"].nunique() == 1


def test_no_false_edge_from_a_reused_object_address():
    """A dropped result's address may be reused by a new object: that is not an upstream."""

    class Obj:
        """A weakly referenceable result."""

    @task
    def make(n):
        return [n, n]

    @task
    def make_obj():
        return Obj()

    @task
    def use(x):
        return x

    @flow
    def f():
        make(1)  # result dropped at once
        y = [3, 4]  # CPython may give this list the dropped one's address
        use(y)
        make_obj()
        z = Obj()
        use(z)
        kept = make(2)
        use(kept)  # a real edge

    f()
    tr = orion_nb.task_runs().set_index("id")["name"]
    edges = {
        (tr[e.task_run_id], tr[e.upstream_task_run_id]) for e in orion_nb.task_inputs().itertuples()
    }
    assert edges == {("use-2", "make-1")}
