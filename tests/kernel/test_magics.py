"""%%flow and %orion in a real kernel: namespace, options, await, errors, interrupts."""

from __future__ import annotations

import re
import threading
import time

import pytest

pytestmark = pytest.mark.kernel

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: str) -> str:
    return ANSI.sub("", text)


@pytest.fixture(scope="module", autouse=True)
def loaded(kernel):
    r = kernel.run(
        "%load_ext orion_nb\n"
        "import orion_nb, time, threading\n"
        "from orion_nb import task\n"
        "orion_nb.configure(display='text')\n"
        "@task\n"
        "def inc(x):\n"
        "    return x + 1\n"
        "@task\n"
        "def where():\n"
        "    return threading.current_thread().name\n"
    )
    assert r["status"] == "ok", r["errors"]


def last_flow(kernel):
    return kernel.value(
        "orion_nb.flow_runs(limit=1)[['name','flow_name','state_name','run_count','parameters','tags']].iloc[0].to_dict()"
    )


def test_cell_runs_as_a_flow_and_keeps_notebook_behaviour(kernel):
    r = kernel.run(
        "%%flow squares\nprint('hello from the cell')\nys = [inc(i) for i in range(3)]\nsum(ys)"
    )
    assert r["status"] == "ok"
    assert "hello from the cell" in r["stdout"]
    assert r["results"][0]["text/plain"] == "6"  # the last expression is displayed
    assert kernel.value("ys") == [1, 2, 3]  # names assigned in the cell stay in the notebook
    row = last_flow(kernel)
    assert row["flow_name"] == "squares" and row["state_name"] == "Completed"
    n = kernel.value(
        "len(orion_nb.task_runs(flow_run_id=orion_nb.flow_runs(limit=1).iloc[0]['id']))"
    )
    assert n == 3


def test_rerunning_a_cell_makes_a_new_run(kernel):
    before = kernel.value("len(orion_nb.flow_runs(flow_name='again'))")
    for _ in range(2):
        assert kernel.run("%%flow again\n1")["status"] == "ok"
    assert kernel.value("len(orion_nb.flow_runs(flow_name='again'))") == before + 2


def test_default_name_is_derived_from_notebook_and_cell(kernel):
    assert kernel.run("%%flow\nx_default = 1")["status"] == "ok"
    assert last_flow(kernel)["flow_name"].startswith("notebook-cell")


def test_params_tags_and_task_runner(kernel):
    r = kernel.run(
        "%%flow paramflow --param n=4 --param label=hello --tag nightly --tag etl --task-runner sequential\nresult = (n, label, where.submit().result())\nresult"
    )
    assert r["status"] == "ok", r["errors"]
    n, label, thread = kernel.value("result")
    assert (n, label) == (4, "hello")
    assert thread == "MainThread"  # sequential runner: the task ran in the cell's thread
    row = last_flow(kernel)
    assert row["parameters"] == {"n": 4, "label": "hello"}
    tags = kernel.value("list(orion_nb.task_runs(limit=1)['tags'].iloc[0])")
    assert set(tags) == {"nightly", "etl"}


def test_retries_and_timeout(kernel):
    kernel.run("attempts = []")
    r = kernel.run(
        "%%flow retrying --retries 2 --retry-delay 0\nattempts.append(1)\nif len(attempts) < 2:\n    raise RuntimeError('first attempt fails')\n'ok'"
    )
    assert r["status"] == "ok", r["errors"]
    assert r["results"][0]["text/plain"] == "'ok'"
    assert last_flow(kernel)["run_count"] == 2
    t0 = time.monotonic()
    r = kernel.run("%%flow slow --timeout 0.3\nimport time\ntime.sleep(20)")
    assert time.monotonic() - t0 < 10
    assert r["status"] == "error"
    assert last_flow(kernel)["state_name"] == "TimedOut"


def test_top_level_await_runs_as_an_async_flow(kernel):
    r = kernel.run(
        "%%flow awaiting\nimport asyncio\nawait asyncio.sleep(0.01)\nawaited = inc(41)\nawaited"
    )
    assert r["status"] == "ok", r["errors"]
    assert r["results"][0]["text/plain"] == "42"
    assert kernel.value("awaited") == 42
    assert last_flow(kernel)["flow_name"] == "awaiting"


def test_a_failing_cell_shows_the_users_traceback_and_fails_the_run(kernel):
    r = kernel.run(
        "%%flow failing\ndef load_rows():\n    raise ValueError('column missing')\nload_rows()"
    )
    assert r["status"] == "error"
    err = r["errors"][0]
    assert err["ename"] == "ValueError" and err["evalue"] == "column missing"
    tb = plain("\n".join(err["traceback"]))
    assert "load_rows" in tb and "raise ValueError('column missing')" in tb
    assert "orion_nb/engine" not in tb and "run_sync" not in tb
    assert last_flow(kernel)["state_name"] == "Failed"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%%flow --retries -1", "--retries must be 0 or more"),
        ("%%flow --timeout 0", "--timeout must be a positive number"),
        ("%%flow --param nope", "is not of the form NAME=VALUE"),
        ("%%flow --task-runner gpu", "invalid choice: 'gpu'"),
        ("%%flow --bogus", "unrecognized arguments: --bogus"),
    ],
    ids=["negative retries", "zero timeout", "param without =", "unknown runner", "unknown option"],
)
def test_bad_options_raise_usage_errors(kernel, line, message):
    r = kernel.run(f"{line}\n1")
    assert r["status"] == "error"
    shown = r["stderr"] + r["stdout"] + plain("".join(e["evalue"] for e in r["errors"]))
    assert message in shown
    assert "Traceback" not in plain(shown)


def test_line_form_explains_itself(kernel):
    r = kernel.run("%flow")
    assert "is a cell magic" in r["stderr"] + plain("".join(e["evalue"] for e in r["errors"]))


def test_help_lists_the_options(kernel):
    for query in ("%%flow?", "%flow?"):
        r = kernel.run(query)
        text = plain(r["pager"])
        for opt in (
            "--retries",
            "--retry-delay",
            "--timeout",
            "--tag",
            "--param",
            "--task-runner",
            "--quiet",
        ):
            assert opt in text, (query, opt)


def test_orion_line_magic(kernel):
    kernel.run("%%flow listed\n1")
    r = kernel.run("%orion runs --limit 3")
    assert r["status"] == "ok"
    text = plain(str(r["displays"]) + r["stdout"])
    assert "listed" in text and "Completed" in text
    r = kernel.run("%orion runs --flow listed --state Completed")
    assert "listed" in plain(str(r["displays"]) + r["stdout"])
    r = kernel.run(
        "orion_nb.configure(database_url='postgresql://ana:s3cret@127.0.0.1:1/db')\n%orion config"
    )
    text = plain(str(r["displays"]) + r["stdout"])
    assert "ana:***@127.0.0.1" in text and "s3cret" not in text
    kernel.run(
        "orion_nb.configure(database_url='sqlite:///' + str(orion_nb.settings.get_settings().home / 'orion.db'))"
    )
    r = kernel.run("%orion timeline listed")
    assert r["status"] == "ok", r["stderr"]
    assert any("application/vnd.plotly.v1+json" in d for d in r["results"] + r["displays"])
    r = kernel.run("%orion view no-such-run")
    assert r["status"] == "error" and "No flow run with id or name" in plain(
        str(r["errors"]) + r["stderr"]
    )
    r = kernel.run("%orion frobnicate")
    assert r["status"] == "error"


def test_interrupt_mid_flow_cancels_and_keeps_the_kernel_usable(kernel):
    code = (
        "%%flow interrupted\n"
        "@task\n"
        "def sleeper(i):\n"
        "    time.sleep(30)\n"
        "futs = sleeper.map(range(2))\n"
        "time.sleep(30)\n"
    )
    timer = threading.Timer(2.0, kernel.km.interrupt_kernel)
    timer.start()
    t0 = time.monotonic()
    r = kernel.run(code)
    timer.cancel()
    assert time.monotonic() - t0 < 25
    assert r["status"] == "error" and r["errors"][0]["ename"] == "KeyboardInterrupt"
    row = last_flow(kernel)
    assert row["flow_name"] == "interrupted" and row["state_name"] == "Cancelled"
    states = kernel.value(
        "sorted(orion_nb.task_runs(flow_run_id=orion_nb.flow_runs(limit=1).iloc[0]['id'])['state_name'].astype(str))"
    )
    assert states == ["Cancelled", "Cancelled"]
    assert kernel.run("1 + 1")["results"][0]["text/plain"] == "2"
