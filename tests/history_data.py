"""A varied run history, recorded through the public API, for the read-path tests.

It holds what a real history holds and what breaks naive readers: failures with messages full
of quotes, backslashes, newlines and non-ASCII text; retries; cached runs with an expiry; a
subflow; logs at several levels; tags; parameters of several shapes; a text column that is
empty (NULL) for more than a thousand rows before its first value; a column that is NULL in
every row.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

import orion_nb
from orion_nb import flow, task

HOSTILE = [
    'it\'s "quoted"',
    "back\\slash \\x00 and \\n escapes",
    "line one\nline two\ttab",
    "ünïcödé ✓ 日本語 🚀",
    "'; DROP TABLE task_runs; --",
    "<b>markup</b> & entities &amp;",
]


def record_history(n_plain: int = 1_500) -> None:
    """Record the history (about ``n_plain + 30`` task runs in four flow runs)."""
    attempts: dict[int, int] = {}

    @task(retries=1, retry_delay_seconds=0)
    def flaky(i: int) -> int:
        attempts[i] = attempts.get(i, 0) + 1
        if attempts[i] == 1:
            raise ConnectionError(HOSTILE[i % len(HOSTILE)])
        return i

    @task(cache_key_fn=orion_nb.task_input_hash, cache_expiration=timedelta(hours=1))
    def cached(x: int) -> int:
        return x * 2

    @task
    def plain(i: int) -> int:
        return i

    @task
    def fails(message: str) -> None:
        raise ValueError(message)

    @flow(name="child flow")
    def child(x: int) -> int:
        orion_nb.get_run_logger().warning(f"child got {x} — ✓")
        return plain(x)

    @flow(name="parent 'quoted' flow")
    def parent(n: int, options: dict[str, Any] | None = None, names: Any = ()) -> None:
        log = orion_nb.get_run_logger()
        # NULL messages for the first n rows: a reader that guesses types from the first rows
        # must not fail on the messages that follow
        for i in range(n):
            plain(i)
        log.info(HOSTILE[0])
        with orion_nb.tags("io", "ünï"):
            for i in range(6):
                flaky(i)
        for x in (1, 2, 1):
            cached(x)
        for msg in HOSTILE:
            fails.submit(msg).wait()
        child(7)
        log.error(HOSTILE[3])

    parent(n_plain, options={"nested": {"a": [1, 2.5, None]}, "s": HOSTILE[2]}, names=["x"])

    @flow(name="tiny")
    def tiny() -> int:
        return plain(0)

    tiny()


def assert_same_frame(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal columns, dtypes and values, cell by cell (tags tuples, parameter dicts too)."""
    assert list(a.columns) == list(b.columns)
    assert a.dtypes.to_dict() == b.dtypes.to_dict(), (a.dtypes, b.dtypes)
    for name, dtype in a.dtypes.items():  # equal dtypes may still carry different tz objects
        if isinstance(dtype, pd.DatetimeTZDtype):
            assert repr(dtype.tz) == repr(b[name].dtype.tz) == "datetime.timezone.utc", name
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for name in ("tags", "parameters"):
        if name in a:
            assert [type(v) for v in a[name]] == [type(v) for v in b[name]], name
