"""DetectCrashedRuns as a table: which unfinished runs lost their process (no I/O)."""

from __future__ import annotations

import pytest

from orion_nb.orchestration.recovery_rules import (
    RULE,
    UNKNOWN_START,
    OpenRun,
    detect_crashed_runs,
)

NOW = 1_000_000.0
GRACE = 60.0
ME = {"host": "here", "pid": 100, "pid_start": "500.00"}


def run(**kw) -> OpenRun:
    base = {
        "run_id": "r",
        "kind": "flow",
        "state_type": "RUNNING",
        "host": "here",
        "pid": 200,
        "pid_start": "700.00",
        "last_seen": NOW - 1,
    }
    return OpenRun(**(base | kw))


CASES = [
    # (id, run, processes, crashed?, words in the reason)
    (
        "a deployment's slot no process has claimed yet, long quiet",
        run(state_type="SCHEDULED", host=None, pid=None, pid_start=None, last_seen=NOW - 86400),
        {},
        False,
        (),
    ),
    (
        "a claimed scheduled run whose process is gone",
        run(state_type="SCHEDULED"),
        {200: None},
        True,
        ("pid 200",),
    ),
    ("this process's own run", run(pid=100, pid_start="500.00"), {}, False, ()),
    ("same host, pid gone", run(), {200: None}, True, ("pid 200", "host here", "killed")),
    (
        "same host, pid reused by another process (a container's pid 1)",
        run(pid=1),
        {1: "900.00"},
        True,
        ("another process",),
    ),
    (
        "same host, the very process alive and quiet",
        run(last_seen=NOW - 3600),
        {200: "700.00"},
        False,
        (),
    ),
    (
        "same host, alive but start unreadable, heartbeat fresh",
        run(),
        {200: UNKNOWN_START},
        False,
        (),
    ),
    (
        "same host, alive but start unreadable, heartbeat stale",
        run(last_seen=NOW - 120),
        {200: UNKNOWN_START},
        True,
        ("no heartbeat for 120 s",),
    ),
    ("other host, heartbeat fresh", run(host="there"), {}, False, ()),
    (
        "other host, heartbeat stale",
        run(host="there", last_seen=NOW - 61),
        {},
        True,
        ("grace 60 s", "host there"),
    ),
    ("finished run is never touched", run(state_type="COMPLETED"), {200: None}, False, ()),
    (
        "failed run is never touched",
        run(state_type="FAILED", host="there", last_seen=0),
        {},
        False,
        (),
    ),
    ("never heartbeated, other host", run(host="there", last_seen=None), {}, False, ()),
]


@pytest.mark.parametrize(
    ("given", "processes", "crashed", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_detect_crashed_runs(given, processes, crashed, words):
    out = detect_crashed_runs([given], processes=processes, now=NOW, grace=GRACE, **ME)
    assert bool(out) is crashed
    if crashed:
        (c,) = out
        assert c.run_id == "r" and c.kind == "flow"
        assert c.message.startswith(f"{RULE}: ")
        for w in words:
            assert w in c.message
        assert "last heartbeat" in c.message
