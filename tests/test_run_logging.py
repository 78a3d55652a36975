"""Run loggers and log_prints: records stored with their runs.

Every test checks what a user would see: return values, raised exceptions, and the recorded
history (through the public DataFrame API, i.e. a real SQLite file).
"""

from __future__ import annotations

import orion_nb
from orion_nb import flow, task
from tests._helpers import task_row


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
