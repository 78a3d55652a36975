"""The live RunView in a real kernel: what the kernel sends while a flow runs and when it ends.

While a run goes on, the widget gets numbered diffs (only what changed, keyed by run id) at a
bounded rate; when it ends, the same output (same display id) becomes the static view.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

import pytest

pytestmark = pytest.mark.kernel

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module", autouse=True)
def loaded(kernel):
    r = kernel.run(
        "%load_ext orion_nb\nimport orion_nb, time\nfrom orion_nb import task\norion_nb.configure(display='widget')"
    )
    assert r["status"] == "ok", r["errors"]


def custom_messages(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The widget's custom messages (diffs and snapshots), in order."""
    return [
        m["content"]["data"]["content"]
        for m in msgs
        if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "custom"
    ]


def state_updates(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        m
        for m in msgs
        if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update"
    ]


def replay(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """What a front-end model holds after applying the messages (as runview.js does)."""
    state: dict[str, Any] = {"tasks": {}, "seq": 0}
    for m in messages:
        if m["kind"] == "snapshot":
            state = {**m, "tasks": {r[0]: r for r in m["tasks"]}}
            continue
        assert m["base"] == state["seq"], "a diff skipped a number"
        state["seq"] = m["seq"]
        for r in m["tasks"]:
            state["tasks"][r[0]] = r
        for key in ("run", "counts", "total", "now"):
            if key in m:
                state[key] = m[key]
    return state


def test_flow_cell_shows_a_live_widget_then_leaves_the_static_view(kernel):
    code = "%%flow live\n@task\ndef nap(i):\n    time.sleep(0.02)\n    return i\nsum(nap.map(range(60)).result())"
    r = kernel.run(code)
    assert r["status"] == "ok", r["errors"]
    shown = [m for m in r["msgs"] if m["msg_type"] == "display_data"]
    assert len(shown) == 1 and WIDGET_MIME in shown[0]["content"]["data"]
    plain = shown[0]["content"]["data"]["text/plain"]
    assert plain.startswith("Flow run live/") and "run=None" not in plain
    display_id = shown[0]["content"]["transient"]["display_id"]
    # it changed while running, not only at the end, and only through diffs
    messages = custom_messages(r["msgs"])
    assert len(messages) >= 2 and {m["kind"] for m in messages} == {"diff"}
    assert not [u for u in state_updates(r["msgs"]) if "tasks" in u["content"]["data"]["state"]]
    final = replay(messages)
    assert final["run"]["state_name"] == "Completed"
    assert final["counts"] == {"Completed": 60} and len(final["tasks"]) == 60
    # the run ended: the same output now holds the static view and a one-line summary
    updates = [m for m in r["msgs"] if m["msg_type"] == "update_display_data"]
    assert len(updates) == 1
    assert updates[0]["content"]["transient"]["display_id"] == display_id
    data = updates[0]["content"]["data"]
    assert WIDGET_MIME not in data
    assert (
        data["text/plain"].startswith("Flow run live/")
        and "60 task runs (60 Completed)" in data["text/plain"]
    )
    assert "nap-59" in data["text/html"] and "<svg" in data["text/html"]


def test_updates_of_ten_thousand_task_runs_carry_only_what_changed(kernel):
    """Issue 11's figure: bytes per update once 10,000 task runs exist (diffs, not snapshots)."""
    code = (
        "%%flow many\n@task\ndef tiny(i):\n    return i\n"
        "@task\ndef slow(i):\n    time.sleep(0.25)\n    return i\n"
        "t0 = time.monotonic()\n"
        "tiny.map(range(10_000)).result()\n"
        "for i in range(16):\n    slow(i)\n"
        "elapsed = time.monotonic() - t0\nelapsed"
    )
    r = kernel.run(code, timeout=300)
    assert r["status"] == "ok", r["errors"]
    elapsed = kernel.value("elapsed")
    messages = [
        m
        for m in r["msgs"]
        if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "custom"
    ]
    contents = [m["content"]["data"]["content"] for m in messages]
    # at most ~10 updates a second (plus the final one), never one per event
    assert 1 <= len(messages) <= 10 * elapsed + 3, (len(messages), elapsed)
    assert [c["kind"] for c in contents].count("snapshot") == 0  # no front-end asked for one
    final = replay(contents)
    assert final["total"] == 10_016 and final["counts"] == {"Completed": 10_016}
    sizes = [len(json.dumps(m["content"])) for m in messages]
    full = len(json.dumps({"tasks": list(final["tasks"].values())}))
    # once the 10,000 rows exist, an update carries the slow task that moved, not the run
    steady = [
        size
        for size, c in zip(sizes, contents, strict=True)
        if c["counts"].get("Completed", 0) >= 10_000 and len(c["tasks"]) <= 5
    ]
    assert len(steady) >= 4, (len(steady), [len(c["tasks"]) for c in contents])
    assert max(steady) <= 50_000, max(steady)
    print(
        f"\nlive view, 10,000 task runs: full snapshot {full:,} bytes; "
        f"{len(sizes)} updates, median {statistics.median(sizes):,.0f} bytes, "
        f"steady-state median {statistics.median(steady):,.0f} / max {max(steady):,} bytes"
    )


def test_quiet_shows_nothing_and_text_mode_prints(kernel):
    r = kernel.run("%%flow hush --quiet\n1")
    assert not any(WIDGET_MIME in d for d in r["displays"])
    kernel.run("orion_nb.configure(display='text')")
    r = kernel.run("%%flow texty\n1")
    assert "finished in state Completed" in r["stderr"]
    kernel.run("orion_nb.configure(display='widget')")


def test_view_of_a_past_run_is_static_and_its_widget_is_one_call_away(kernel):
    r = kernel.run("report = orion_nb.view('live')\nreport")
    assert r["status"] == "ok", r["errors"]
    (data,) = r["results"]
    assert WIDGET_MIME not in data
    assert (
        data["text/plain"].startswith("Flow run live/") and "(60 Completed)" in data["text/plain"]
    )
    assert "nap-0" in data["text/html"]
    r = kernel.run("w = report.widget()\nw")
    (data,) = r["results"]
    assert WIDGET_MIME in data and data["text/plain"] == kernel.value("report.text")
    assert kernel.value("w.run['state_name']") == "Completed"
    assert kernel.value("len(w.tasks)") == 60
    r = kernel.run("%orion view live")
    (data,) = r["results"]
    assert "text/html" in data and WIDGET_MIME not in data
    r = kernel.run("%orion view live --widget")
    (data,) = r["results"]
    assert WIDGET_MIME in data and "run=None" not in data["text/plain"]
