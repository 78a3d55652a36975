"""The live RunView in a real kernel: widget messages are emitted and their rate is bounded."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.kernel

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module", autouse=True)
def loaded(kernel):
    r = kernel.run(
        "%load_ext orion_nb\nimport orion_nb, time\nfrom orion_nb import task\norion_nb.configure(display='widget')"
    )
    assert r["status"] == "ok", r["errors"]


def widget_updates(msgs):
    opens = [m for m in msgs if m["msg_type"] == "comm_open"]
    updates = [
        m
        for m in msgs
        if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update"
    ]
    return opens, updates


def test_flow_cell_displays_a_widget_and_streams_updates(kernel):
    code = "%%flow live\n@task\ndef nap(i):\n    time.sleep(0.02)\n    return i\nsum(nap.map(range(60)).result())"
    r = kernel.run(code)
    assert r["status"] == "ok", r["errors"]
    assert any(WIDGET_MIME in d for d in r["displays"]), "no widget displayed"
    opens, updates = widget_updates(r["msgs"])
    assert any(o["content"].get("target_name") == "jupyter.widget" for o in opens)
    assert len(updates) >= 2  # it changed while running, not only at the end
    final = [
        u["content"]["data"]["state"] for u in updates if "run" in u["content"]["data"]["state"]
    ][-1]
    assert final["run"]["state_name"] == "Completed"
    last_counts = [
        u["content"]["data"]["state"]["counts"]
        for u in updates
        if "counts" in u["content"]["data"]["state"]
    ][-1]
    assert last_counts == {"Completed": 60}


def test_update_rate_is_bounded_for_many_tasks(kernel):
    code = "%%flow many\n@task\ndef tiny(i):\n    return i\nt0 = time.monotonic()\nfor _ in range(5):\n    tiny.map(range(2000)).result()\n    time.sleep(0.2)\nelapsed = time.monotonic() - t0\nelapsed"
    r = kernel.run(code, timeout=300)
    assert r["status"] == "ok", r["errors"]
    elapsed = kernel.value("elapsed")
    _, updates = widget_updates(r["msgs"])
    # 10,000 task runs: at most ~10 updates a second (plus the final one), never one per event
    assert 1 <= len(updates) <= 10 * elapsed + 3, (len(updates), elapsed)
    payload = sum(len(json.dumps(u["content"])) for u in updates)
    assert payload < 50_000_000


def test_quiet_shows_nothing_and_text_mode_prints(kernel):
    r = kernel.run("%%flow hush --quiet\n1")
    assert not any(WIDGET_MIME in d for d in r["displays"])
    kernel.run("orion_nb.configure(display='text')")
    r = kernel.run("%%flow texty\n1")
    assert "finished in state Completed" in r["stderr"]
    kernel.run("orion_nb.configure(display='widget')")


def test_view_of_a_past_run_rebuilds_the_widget(kernel):
    r = kernel.run("w = orion_nb.view('live')\nw")
    assert r["status"] == "ok", r["errors"]
    assert any(WIDGET_MIME in d for d in r["results"])
    assert kernel.value("w.run['state_name']") == "Completed"
    assert kernel.value("len(w.tasks)") == 60
