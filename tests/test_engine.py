"""Engine semantics for sync code: calls, retries, caching, timeouts, limits, upstreams, subflows.

Every test checks what a user would see: return values, raised exceptions, and the recorded
history (through the public DataFrame API, i.e. a real SQLite file).
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from datetime import timedelta

import pytest

import orion_nb
from orion_nb import allow_failure, flow, task, unmapped
from orion_nb.errors import DefinitionError, ParameterError, UpstreamFailedError


def state_names(run_id: str) -> list[str]:
    df = orion_nb.states(run_id)
    return list(df.sort_values("id")["name"].astype(str))


def task_row(name: str):
    df = orion_nb.task_runs()
    rows = df[df["name"] == name]
    assert len(rows) == 1, f"expected one task run named {name!r}, found {len(rows)}"
    return rows.iloc[0]


# -- calling ---------------------------------------------------------------------------------


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


# -- retries ---------------------------------------------------------------------------------


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


# -- caching ---------------------------------------------------------------------------------


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


# -- timeouts --------------------------------------------------------------------------------


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


def test_flow_timeout():
    @flow(timeout_seconds=0.2)
    def long():
        time.sleep(10)

    with pytest.raises(TimeoutError):
        long()
    assert orion_nb.flow_runs().iloc[0]["state_name"] == "TimedOut"


# -- concurrency limits ----------------------------------------------------------------------


def test_concurrency_limit_by_tag_is_honoured_by_threads():
    orion_nb.set_concurrency_limit("db", 1)
    lock = threading.Lock()
    active = [0]
    peak = [0]

    @task(tags=["db"])
    def query(i):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return i

    @flow
    def f():
        return query.map(range(4)).result()

    try:
        assert f() == [0, 1, 2, 3]
    finally:
        orion_nb.set_concurrency_limit("db", None)
    assert peak[0] == 1
    st = orion_nb.states()
    waits = st[st["rule"] == "ConcurrencyLimits"]
    assert len(waits) >= 1
    assert "tag 'db' is at its limit (1 of 1 slots in use)" in waits.iloc[0]["message"]


def test_tags_context_adds_tags_and_limits():
    orion_nb.set_concurrency_limit("io", 1)
    peak = [0]
    active = [0]
    lock = threading.Lock()

    @task
    def step(i):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.03)
        with lock:
            active[0] -= 1

    @flow
    def f():
        with orion_nb.tags("io"):
            futs = step.map(range(3))
        futs.wait()

    try:
        f()
    finally:
        orion_nb.set_concurrency_limit("io", None)
    assert peak[0] == 1
    assert all("io" in t for t in orion_nb.task_runs()["tags"])


# -- upstreams -------------------------------------------------------------------------------


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


# -- flows -----------------------------------------------------------------------------------


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


# -- logging ---------------------------------------------------------------------------------


def test_run_logger_and_log_prints_are_stored(capsys):
    @task(log_prints=True)
    def chatty():
        print("hello from a task")
        orion_nb.get_run_logger().warning("careful")

    @flow
    def f():
        chatty()
        orion_nb.get_run_logger().info("flow says hi")

    f()
    assert "hello from a task" in capsys.readouterr().out
    logs = orion_nb.logs()
    messages = set(logs["message"])
    assert {"hello from a task", "careful", "flow says hi"} <= messages
    warn = logs[logs["message"] == "careful"].iloc[0]
    assert warn["level"] == "WARNING"
    assert warn["task_run_id"] == task_row("chatty-0")["id"]


# -- errors ----------------------------------------------------------------------------------


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


# -- memory ----------------------------------------------------------------------------------


def test_results_are_not_kept_alive_after_use():
    class Blob:
        """A result that can be weakly referenced."""

    refs: list[weakref.ref[Blob]] = []

    @task
    def make():
        b = Blob()
        refs.append(weakref.ref(b))
        return b

    @flow
    def f():
        for _ in range(200):
            make()
        for _ in range(200):
            make.submit().result()

    f()
    from orion_nb.engine import recorder

    recorder.flush()
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert alive == 0, f"{alive} of {len(refs)} results still alive"


def test_queued_history_does_not_hold_results():
    """Between two writes the queue holds many runs: it must not hold their results."""
    import tracemalloc

    @task
    def big():
        return bytes(1_000_000)

    @flow
    def f():
        for _ in range(100):
            big()

    f()  # warm up: the first run opens the database
    orion_nb.configure(flush_interval=60)  # nothing is written while the flow runs
    try:
        tracemalloc.start()
        f()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        orion_nb.configure(flush_interval=0.05)
    assert peak < 20_000_000, f"peak {peak / 1e6:.0f} MB for 100 results of 1 MB"


def test_tasks_that_wait_for_tasks_they_submit_do_not_deadlock_the_pool():
    @task
    def child(i):
        return i

    @task
    def parent(i):
        return child.submit(i).result() + 1

    @flow(task_runner=orion_nb.ThreadPoolTaskRunner(max_workers=2))
    def f():
        return sum(parent.map(range(12)).result())

    assert f() == sum(range(12)) + 12
    assert len(orion_nb.task_runs(task_name="child")) == 12


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


def test_exponential_backoff_and_cancellation_hook():
    assert orion_nb.exponential_backoff(2)(3) == [2, 4, 8]

    @task(retries=3, retry_delay_seconds=orion_nb.exponential_backoff(0.01))
    def flaky():
        flaky.n = getattr(flaky, "n", 0) + 1  # type: ignore[attr-defined]
        if flaky.n < 3:  # type: ignore[attr-defined]
            raise OSError("again")
        return flaky.n  # type: ignore[attr-defined]

    assert flaky() == 3
    waits = orion_nb.states(orion_nb.task_runs(task_name="flaky").iloc[0]["id"])
    reasons = list(waits[waits["name"] == "AwaitingRetry"].sort_values("id")["message"])
    assert "attempt 2 in 0.01 s" in reasons[0] and "attempt 3 in 0.02 s" in reasons[1]

    seen = []

    @flow(on_cancellation=[lambda f, r, s: seen.append(s.name)])
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert seen == ["Cancelled"]


def test_text_view_reports_start_and_summary_in_a_script(tmp_path):
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import orion_nb
        @orion_nb.task
        def t(i):
            if i == 2:
                raise ValueError("bad")
            return i
        @orion_nb.flow(name="scripted")
        def f():
            return [t(i, return_state=True) for i in range(3)] and 1
        f()
        """
    )
    env = {**os.environ, "ORION_NB_HOME": str(tmp_path)}
    env.pop("ORION_NB_DATABASE_URL", None)
    env.pop("ORION_NB_DISPLAY", None)
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "of flow 'scripted' started" in res.stderr
    assert "finished in state Completed" in res.stderr
    assert "3 task runs (2 Completed, 1 Failed)" in res.stderr
