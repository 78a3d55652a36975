"""Caching: keys that see the task's code, Prefect 3's cache policies, keys that never lie.

A cache key must change when the task's code changes (a notebook user edits a cell and re-runs
it) and must never match different inputs. Inputs that cannot be hashed faithfully mean no
caching for that call, with a warning that names the parameter.
"""

from __future__ import annotations

import linecache
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

import orion_nb
from orion_nb import flow, task
from orion_nb.engine.cache import result_cache
from orion_nb.errors import OrionNBWarning

_cells = 0


def define_cell(source: str, namespace: dict | None = None) -> dict:
    """Run ``source`` as a notebook cell would: module ``__main__``, source known to linecache."""
    global _cells
    _cells += 1
    filename = f"<ipython-input-{_cells}-cell>"
    source = textwrap.dedent(source)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    ns = namespace if namespace is not None else {"__name__": "__main__"}
    ns.update(task=task, flow=flow, orion_nb=orion_nb)
    exec(compile(source, filename, "exec"), ns)
    return ns


def test_editing_a_cached_task_runs_the_new_code():
    v1 = define_cell(
        """
        @task(cache_key_fn=orion_nb.task_input_hash)
        def load(path):
            return "old " + path
        """
    )
    assert v1["load"]("a.csv") == "old a.csv"
    assert v1["load"]("a.csv") == "old a.csv"  # a cache hit, same code
    v2 = define_cell(
        """
        @task(cache_key_fn=orion_nb.task_input_hash)
        def load(path):
            return "new " + path
        """
    )
    assert v2["load"]("a.csv") == "new a.csv"
    states = orion_nb.task_runs(task_name="load")["state_name"].astype(str).tolist()
    assert sorted(states) == ["Cached", "Completed", "Completed"]


def test_default_policy_sees_the_source_and_the_hit_reason_names_the_parts():
    v1 = define_cell(
        """
        @task(cache_policy=orion_nb.INPUTS + orion_nb.TASK_SOURCE)
        def shape(n):
            return list(range(n))
        """
    )
    v1["shape"](3)
    v1["shape"](3)
    hit = orion_nb.states()
    hit = hit[hit["name"] == "Cached"].iloc[0]
    assert hit["rule"] == "CacheRetrieval"
    assert "inputs" in hit["message"] and "task source" in hit["message"]


def test_editing_a_persisted_cached_task_in_another_kernel_runs_the_new_code(orion_home: Path):
    script = textwrap.dedent(
        """
        import sys, orion_nb
        orion_nb.configure(home=sys.argv[1], display="none")
        from orion_nb import task

        @task(cache_key_fn=orion_nb.task_input_hash, persist_result=True)
        def load(path):
            return BODY

        print(load("a.csv"))
        """
    )
    outputs = []
    for body in ('"v1"', '"v1"', '"v2"'):
        src = script.replace("BODY", body)
        res = subprocess.run(
            [sys.executable, "-c", src, str(orion_home)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr
        outputs.append(res.stdout.strip())
    assert outputs == ["v1", "v1", "v2"]


def test_a_cache_key_alone_persists_the_result_for_other_processes(orion_home: Path):
    src = textwrap.dedent(
        """
        import sys, orion_nb
        orion_nb.configure(home=sys.argv[1], display="none")
        calls = []

        @orion_nb.task(cache_policy=orion_nb.INPUTS)
        def load(path):
            calls.append(path)
            return {"rows": 3}

        print(load("a.csv"), len(calls))
        """
    )
    outs = [
        subprocess.run(
            [sys.executable, "-c", src, str(orion_home)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        for _ in range(2)
    ]
    assert [o.returncode for o in outs] == [0, 0], outs[-1].stderr
    assert [o.stdout.strip() for o in outs] == ["{'rows': 3} 1", "{'rows': 3} 0"]


def test_different_tasks_with_equal_inputs_never_share_a_key():
    @task(cache_key_fn=orion_nb.task_input_hash)
    def first(x):
        return ("first", x)

    @task(cache_key_fn=orion_nb.task_input_hash)
    def second(x):
        return ("second", x)

    assert first(1) == ("first", 1)
    assert second(1) == ("second", 1)


def test_generator_inputs_are_not_cached_and_the_parameter_is_named():
    @task(cache_key_fn=orion_nb.task_input_hash)
    def total(xs):
        return sum(xs)

    with pytest.warns(OrionNBWarning, match=r"parameter 'xs'.*generator"):
        assert total(x for x in [1, 2, 3]) == 6
    assert total(x for x in [10, 20, 30]) == 60  # warned once per task and parameter


def test_objects_with_equal_reprs_do_not_share_a_result():
    class Conn:
        def __init__(self, name):
            self.name = name
            self.lock = sqlite3.connect(":memory:")  # cannot be pickled

        def __repr__(self):
            return "Conn()"

    @task(cache_key_fn=orion_nb.task_input_hash)
    def who(conn):
        return conn.name

    with pytest.warns(OrionNBWarning, match="parameter 'conn'"):
        assert who(Conn("a")) == "a"
    assert who(Conn("b")) == "b"


def test_run_id_policy_caches_only_within_one_flow_run():
    calls = []

    @task(cache_policy=orion_nb.INPUTS + orion_nb.RUN_ID)
    def fetch(x):
        calls.append(x)
        return x

    @flow
    def pipeline():
        return fetch(1) + fetch(1)

    assert pipeline() == 2
    assert pipeline() == 2
    assert calls == [1, 1]  # one run per flow run, the second call in each is Cached


def test_none_policy_never_caches_and_inputs_minus_a_parameter_ignores_it():
    calls = []

    @task(cache_policy=orion_nb.NONE)
    def never(x):
        calls.append(x)
        return x

    never(1)
    never(1)
    assert calls == [1, 1]

    @task(cache_policy=orion_nb.INPUTS - "debug")
    def load(path, debug=False):
        calls.append(path)
        return path

    load("a", debug=False)
    load("a", debug=True)
    assert calls == [1, 1, "a"]


def test_cache_policies_compose_and_describe_themselves():
    policy = orion_nb.INPUTS + orion_nb.TASK_SOURCE + orion_nb.RUN_ID
    assert repr(policy) == "INPUTS + TASK_SOURCE + RUN_ID"
    assert policy == orion_nb.DEFAULT
    with pytest.raises(TypeError, match="cache policy"):
        orion_nb.INPUTS + "x"  # type: ignore[operator]


def test_cache_policy_and_cache_key_fn_together_is_a_definition_error():
    with pytest.raises(
        orion_nb.errors.DefinitionError, match="either cache_policy or cache_key_fn"
    ):

        @task(cache_policy=orion_nb.INPUTS, cache_key_fn=orion_nb.task_input_hash)
        def both(x):
            return x


def test_unpicklable_result_with_persist_result_warns_and_leaves_no_file(orion_home: Path):
    @task(persist_result=True)
    def make_lock():
        return sqlite3.connect(":memory:")

    with pytest.warns(OrionNBWarning, match=r"make_lock.*Connection"):
        conn = make_lock()
    assert isinstance(conn, sqlite3.Connection)
    row = orion_nb.task_runs(task_name="make_lock").iloc[0]
    assert row["state_name"] == "Completed"
    results = orion_home / "results"
    assert not results.exists() or list(results.iterdir()) == []


def test_a_result_read_from_disk_stays_in_memory_for_the_next_lookup(orion_home: Path):
    calls = []

    @task(cache_key_fn=orion_nb.task_input_hash, persist_result=True)
    def load(path):
        calls.append(path)
        return [path]

    load("x")
    result_cache.clear()
    assert load("x") == ["x"]  # from disk
    for f in (orion_home / "results").iterdir():
        f.unlink()
    assert load("x") == ["x"]  # from memory, kept after the disk read
    assert calls == ["x"]


def test_the_in_memory_cache_is_bounded_least_recently_used_first_out():
    from orion_nb.engine.cache import ResultCache

    cache = ResultCache(max_entries=2)
    cache.put("a", 1, None, "run-a", persist=False)
    cache.put("b", 2, None, "run-b", persist=False)
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", 3, None, "run-c", persist=False)
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None


def test_cache_expiration_keeps_the_users_timedelta_and_expires():
    calls = []

    @task(cache_key_fn=lambda ctx, params: "fixed-key", cache_expiration=timedelta(seconds=0.2))
    def fetch():
        calls.append(1)
        return len(calls)

    assert fetch.cache_expiration == timedelta(seconds=0.2)
    assert fetch() == 1
    assert fetch() == 1
    time.sleep(0.25)
    assert fetch() == 2


def test_cache_hit_skips_the_function_and_records_cached():
    calls = []

    @task(cache_key_fn=orion_nb.task_input_hash, cache_expiration=timedelta(hours=1))
    def expensive(x):
        calls.append(x)
        return x * 100

    @flow
    def f(x: int):
        return expensive(x)

    assert f(2) == 200
    assert f(2) == 200
    assert f(3) == 300
    assert calls == [2, 3]
    cached = orion_nb.task_runs(state="Cached")
    assert len(cached) == 1
    st = orion_nb.states(cached.iloc[0]["id"])
    hit = st[st["name"] == "Cached"].iloc[0]
    assert hit["rule"] == "CacheRetrieval" and "cache hit for key" in hit["message"]


def test_cache_expiration_and_refresh_cache():
    calls = []

    @task(cache_key_fn=lambda ctx, params: "fixed-key", cache_expiration=0.2)
    def fetch():
        calls.append(1)
        return len(calls)

    assert fetch() == 1
    assert fetch() == 1  # cached
    time.sleep(0.25)
    assert fetch() == 2  # expired: runs again
    refreshing = fetch.with_options(refresh_cache=True)
    assert refreshing() == 3


def test_persisted_cache_survives_the_in_memory_cache():
    from orion_nb.engine.cache import result_cache

    calls = []

    @task(cache_key_fn=orion_nb.task_input_hash, persist_result=True)
    def load(path):
        calls.append(path)
        return {"rows": 3}

    assert load("a.csv") == {"rows": 3}
    result_cache.clear()  # as in a new process
    assert load("a.csv") == {"rows": 3}
    assert calls == ["a.csv"]
