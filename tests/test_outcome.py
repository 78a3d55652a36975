"""The Outcome a submitted run sets once, and the collector pause around creating many runs."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time

import pytest

import orion_nb
from orion_nb import flow, task
from orion_nb._collector import collector_paused
from orion_nb.engine.outcome import Outcome
from orion_nb.orchestration.states import Cancelled, Completed


def test_the_first_state_set_wins():
    out = Outcome()
    assert not out.done()
    first, second = Completed(data=1), Cancelled()
    assert out.set(first) is True
    assert out.set(second) is False
    assert out.done() and out.result() is first


def test_wait_times_out_and_result_raises_timeout_error():
    out = Outcome()
    t0 = time.monotonic()
    assert out.wait(0.05) is False
    assert time.monotonic() - t0 >= 0.04
    with pytest.raises(TimeoutError, match="did not finish within"):
        out.result(0.01)


def test_a_waiter_in_another_thread_wakes_when_the_state_is_set():
    out = Outcome()
    got = []
    waiter = threading.Thread(target=lambda: got.append(out.result(5)))
    waiter.start()
    time.sleep(0.02)
    state = Completed(data="x")
    out.set(state)
    waiter.join(5)
    assert got == [state]


def test_callbacks_run_once_and_at_once_on_a_finished_outcome():
    out = Outcome()
    calls = []
    out.add_done_callback(lambda o: calls.append("before"))
    assert calls == []
    out.set(Completed())
    out.set(Completed())
    assert calls == ["before"]
    out.add_done_callback(lambda o: calls.append("after"))
    assert calls == ["before", "after"]


def test_a_failing_callback_is_logged_and_the_others_still_run(caplog):
    out = Outcome()
    calls = []

    def bad(_o):
        raise RuntimeError("callback broke")

    out.add_done_callback(bad)
    out.add_done_callback(lambda o: calls.append("ok"))
    with caplog.at_level(logging.ERROR, logger="orion_nb.engine"):
        out.set(Completed())
    assert calls == ["ok"]
    assert "callback broke" in caplog.text


def test_wait_async_wakes_the_loop_when_another_thread_sets_the_state():
    out = Outcome()

    async def main():
        threading.Timer(0.02, out.set, (Completed(data=3),)).start()
        await asyncio.wait_for(out.wait_async(), 5)
        return out.state.result()

    assert asyncio.run(main()) == 3


def test_the_collector_is_off_inside_a_pause_and_on_again_after():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_overlapping_pauses_in_two_threads_switch_the_collector_on_only_at_the_end():
    inside, leave = threading.Event(), threading.Event()

    def other():
        with collector_paused():
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=other)
    with collector_paused():
        t.start()
        inside.wait(5)
    assert not gc.isenabled()  # the other thread's pause is still open
    leave.set()
    t.join(5)
    assert gc.isenabled()


def test_a_pause_never_switches_on_a_collector_that_was_off():
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_as_completed_raises_timeout_error_naming_the_unfinished_futures():
    @task
    def gated(gate):
        gate.wait(5)

    @flow
    def pipeline():
        gate = threading.Event()
        fut = gated.submit(gate)
        try:
            with pytest.raises(TimeoutError, match=r"1 \(of 1\) futures unfinished"):
                list(orion_nb.as_completed([fut, fut], timeout=0.05))
        finally:
            gate.set()
        return [f.state.name for f in orion_nb.as_completed([fut, fut])]

    assert pipeline() == ["Completed"]


def test_many_outcomes_sharing_locks_are_set_and_awaited_from_many_threads():
    outcomes = [Outcome() for _ in range(2_000)]
    seen = []
    for out in outcomes[::2]:
        out.add_done_callback(lambda o: seen.append(o))

    def setter(part):
        for out in part:
            out.set(Completed(data=1))

    def waiter(part):
        for out in part:
            assert out.result(5).result() == 1

    threads = [threading.Thread(target=setter, args=(outcomes[i::4],)) for i in range(4)]
    threads += [threading.Thread(target=waiter, args=(outcomes[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(o.done() for o in outcomes)
    assert len(seen) == 1_000
