"""Task runners: nested submits never deadlock the pool.

Every test checks what a user would see: return values, raised exceptions, and the recorded
history (through the public DataFrame API, i.e. a real SQLite file).
"""

from __future__ import annotations

import orion_nb
from orion_nb import flow, task


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
