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


# -- keys as units -----------------------------------------------------------------------------


def test_code_fingerprints_follow_the_code_even_without_source():
    from orion_nb.engine.cache import code_fingerprint

    def compile_fn(body: str):
        ns: dict = {}
        exec(compile(textwrap.dedent(body), "<no source>", "exec"), ns)
        return ns["f"]

    a = compile_fn("def f(x):\n    def g():\n        return 1\n    return g() + x\n")
    same = compile_fn("def f(x):\n    def g():\n        return 1\n    return g() + x\n")
    nested_changed = compile_fn("def f(x):\n    def g():\n        return 2\n    return g() + x\n")
    name_changed = compile_fn("def f(x):\n    def g():\n        return 1\n    return h() + x\n")
    assert code_fingerprint(a) == code_fingerprint(same)
    assert code_fingerprint(a) != code_fingerprint(nested_changed)
    assert code_fingerprint(a) != code_fingerprint(name_changed)
    assert code_fingerprint(len) == repr(len).encode()  # no code object: its identity


def test_key_parts_cannot_run_into_each_other():
    from orion_nb.engine.cache import _digest

    assert _digest([b"ab", b"c"]) != _digest([b"a", b"bc"])
    assert len(_digest([b"x"])) == 32


def test_flow_parameters_policy_caches_per_flow_parameters():
    calls = []

    @task(cache_policy=orion_nb.INPUTS + orion_nb.FLOW_PARAMETERS)
    def step(x):
        calls.append(x)
        return x

    @flow
    def pipeline(day: str):
        return step(1)

    pipeline("mon")
    pipeline("mon")
    pipeline("tue")
    assert calls == [1, 1]


def test_run_id_policy_outside_a_flow_caches_standalone_calls():
    calls = []

    @task(cache_policy=orion_nb.INPUTS + orion_nb.RUN_ID)
    def step(x):
        calls.append(x)
        return x

    step(1)
    step(1)
    assert calls == [1]


def test_subtracting_keeps_the_other_parts_and_refuses_non_names():
    policy = (orion_nb.INPUTS + orion_nb.TASK_SOURCE) - "debug"
    assert repr(policy) == "INPUTS - 'debug' + TASK_SOURCE"
    assert repr(orion_nb.INPUTS - "b" - "a") == "INPUTS - 'a' - 'b'"
    assert {orion_nb.INPUTS, orion_nb.INPUTS + orion_nb.NONE - "x"} and (
        orion_nb.INPUTS + orion_nb.INPUTS == orion_nb.INPUTS
    )
    with pytest.raises(TypeError, match=r"Subtract a parameter name .* not int"):
        orion_nb.INPUTS - 3  # type: ignore[operator]


def test_an_unhashable_input_is_reported_once_with_its_type_and_reason():
    import warnings

    @task(cache_policy=orion_nb.INPUTS)
    def use(conn):
        return 1

    with pytest.warns(OrionNBWarning) as caught:
        use(sqlite3.connect(":memory:"))
    message = str(caught[0].message)
    assert (
        "Task 'use' is not cached for this call: parameter 'conn' is a Connection that cannot be pickled"
        in message
    )
    assert "cache_policy=INPUTS - 'conn'" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        use(sqlite3.connect(":memory:"))  # said once per task and parameter


def test_a_result_that_cannot_be_written_warns_and_the_run_completes(orion_home: Path):
    orion_home.mkdir(parents=True, exist_ok=True)
    (orion_home / "results").write_text("a file where the results folder should be")

    @task(persist_result=True)
    def make():
        return [1, 2]

    with pytest.warns(OrionNBWarning, match=r"Task 'make': could not write its result"):
        assert make() == [1, 2]
    assert orion_nb.task_runs().iloc[0]["state_name"] == "Completed"


def test_a_persisted_result_without_a_cache_key_is_named_by_its_run(orion_home: Path, db_path):
    import pickle

    @task(persist_result=True)
    def make():
        return {"a": 1}

    make()
    run_id = orion_nb.task_runs().iloc[0]["id"]
    con = sqlite3.connect(db_path)
    ref, key = con.execute("select result_ref, cache_key from task_runs").fetchone()
    con.close()
    assert (ref, key) == (str(orion_home / "results" / f"{run_id}.pkl"), None)
    assert pickle.loads(Path(ref).read_bytes()) == {"a": 1}


def test_a_cached_result_records_its_key_expiry_and_file(orion_home: Path, db_path):
    @task(cache_policy=orion_nb.INPUTS, cache_expiration=timedelta(hours=2))
    def make(x):
        return x

    make(1)
    con = sqlite3.connect(db_path)
    ref, key, expires = con.execute(
        "select result_ref, cache_key, cache_expiration from task_runs"
    ).fetchone()
    con.close()
    assert ref == str(orion_home / "results" / f"{key}.pkl") and len(key) == 32
    assert expires is not None


def test_an_excluded_parameter_does_not_hide_the_ones_after_it():
    calls = []

    @task(cache_policy=orion_nb.INPUTS - "a")
    def step(a, b):
        calls.append((a, b))
        return b

    assert step(1, 1) == 1
    assert step(2, 1) == 1  # only a changed: cached
    assert step(2, 2) == 2  # b changed: runs
    assert calls == [(1, 1), (2, 2)]


def test_task_input_hash_declines_quietly_for_unhashable_inputs():
    @task(cache_key_fn=orion_nb.task_input_hash)
    def add_up(xs):
        return sum(xs)

    async def agen():
        yield 1

    with pytest.warns(OrionNBWarning, match=r"parameter 'xs' is a generator"):
        assert add_up(x for x in [1, 2]) == 3
    assert not orion_nb.logs()["message"].str.contains("cache_key_fn").any()
    with pytest.warns(OrionNBWarning, match=r"parameter 'g' is a generator"):

        @task(cache_policy=orion_nb.INPUTS)
        def first(g):
            return "ran"

        assert first(agen()) == "ran"


def test_policies_name_themselves():
    assert [repr(p) for p in (orion_nb.FLOW_PARAMETERS, orion_nb.NONE, orion_nb.RUN_ID)] == [
        "FLOW_PARAMETERS",
        "NONE",
        "RUN_ID",
    ]


def test_a_cached_result_that_cannot_be_pickled_warns_with_the_task_and_type():
    @task(cache_policy=orion_nb.INPUTS)
    def connect(name):
        return sqlite3.connect(":memory:")

    with pytest.warns(OrionNBWarning) as caught:
        connect("a")
    message = str(caught[0].message)
    assert message.startswith("Task 'connect' returned a Connection, which cannot be pickled")
    assert message.endswith("Return picklable data, or set persist_result=False.")
    # kept in memory: the next call in this process is a cache hit
    assert isinstance(connect("a"), sqlite3.Connection)
    assert "Cached" in set(orion_nb.task_runs()["state_name"].astype(str))


def test_results_are_persisted_into_a_home_that_does_not_exist_yet(tmp_path: Path):
    fresh = tmp_path / "not" / "yet" / "there"
    orion_nb.configure(home=fresh)

    @task(persist_result=True)
    def make():
        return 7

    assert make() == 7
    assert [p.suffix for p in (fresh / "results").iterdir()] == [".pkl"]
