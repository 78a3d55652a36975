"""Columnar (ADBC + Arrow) history reads give exactly the frames of the row path, on SQLite.

Each test reads the same real database twice through the public API: once through ADBC and
Arrow, once through the ``sqlite3`` rows that were the only path before, and compares the
frames column by column. A log record says which path answered, so a columnar read that
silently fell back to rows fails the test.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import orion_nb
from orion_nb.errors import QueryError
from orion_nb.store import columnar, queries
from tests.history_data import HOSTILE, assert_same_frame, record_history

pytest.importorskip("adbc_driver_sqlite")  # the `arrow` extra, installed with `test`


@pytest.fixture
def history(db_path: Path) -> Path:
    record_history()
    return db_path


@pytest.fixture
def every_read_columnar(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Also small (limited) reads go through Arrow, so that limits are compared too."""
    monkeypatch.setattr(queries, "COLUMNAR_MIN_LIMIT", 0)
    yield


def both_paths(
    read: Callable[[], Any], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, Any]:
    """``read()`` through Arrow (checked to have been answered so) and through rows."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="orion_nb.store"):
        arrow = read()
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("read ") and m.endswith(" as Arrow") for m in messages), messages
    assert not any("reading rows" in m for m in messages), messages
    monkeypatch.setattr(queries, "columnar_enabled", False)
    try:
        rows = read()
    finally:
        monkeypatch.setattr(queries, "columnar_enabled", True)
    return arrow, rows


READS: dict[str, Callable[[], Any]] = {
    "flow_runs()": lambda: orion_nb.flow_runs(),
    "flow_runs(limit=2)": lambda: orion_nb.flow_runs(limit=2),
    "flow_runs(flow_name)": lambda: orion_nb.flow_runs(flow_name="parent 'quoted' flow"),
    "task_runs()": lambda: orion_nb.task_runs(),
    "task_runs(limit=10)": lambda: orion_nb.task_runs(limit=10),
    "task_runs(state=Failed)": lambda: orion_nb.task_runs(state="Failed"),
    "task_runs(state=[COMPLETED, Failed])": lambda: orion_nb.task_runs(
        state=["COMPLETED", "Failed"]
    ),
    "task_runs(task_name)": lambda: orion_nb.task_runs(task_name="cached"),
    "task_runs(nothing)": lambda: orion_nb.task_runs(task_name="no such task"),
    "states()": lambda: orion_nb.states(),
    "states(limit=7)": lambda: orion_nb.states(limit=7),
    "logs()": lambda: orion_nb.logs(),
    "task_inputs()": lambda: orion_nb.task_inputs(),
}


@pytest.mark.parametrize("name", list(READS))
def test_columnar_frames_equal_the_row_path(
    name: str,
    history: Path,
    every_read_columnar: None,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    arrow, rows = both_paths(READS[name], caplog, monkeypatch)
    assert_same_frame(arrow, rows)


def test_the_history_holds_what_breaks_naive_readers(history: Path):
    tr = orion_nb.task_runs()
    assert len(tr) > 1_500
    messages = set(tr["message"].dropna())
    assert {f"ValueError: {m}" for m in HOSTILE} <= messages  # every hostile message is back
    assert tr["cache_key"].notna().any() and tr["cache_expiration"].notna().any()
    assert tr["tags"].map(lambda t: "ünï" in t).any()
    # the oldest 1,500 rows have no message; a later one does
    assert tr["message"].iloc[-1500:].isna().all()
    assert pd.api.types.is_integer_dtype(tr["run_count"])
    fr = orion_nb.flow_runs()
    params = fr.set_index("flow_name").loc["parent 'quoted' flow", "parameters"]
    assert params["options"] == {"nested": {"a": [1, 2.5, None]}, "s": HOSTILE[2]}
    assert fr["expected_start_time"].isna().all()  # a column that is NULL in every row


def test_run_tree_is_the_same_through_arrow(
    history: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(queries, "COLUMNAR_MIN_LIMIT", -1)
    run = orion_nb.flow_runs(flow_name="parent 'quoted' flow")["id"].iloc[0]
    arrow, rows = both_paths(lambda: orion_nb.history.run_tree(run), caplog, monkeypatch)
    assert arrow.keys() == rows.keys()
    for key in arrow:
        assert_same_frame(arrow[key], rows[key])
    assert len(arrow["flows"]) == 2  # the parent and its subflow


def test_new_order_is_newest_first_with_the_last_recorded_first_among_ties(db_path: Path):
    """Rows recorded out of created order, and ties in created: both paths sort alike."""
    record_history(n_plain=3)
    con = sqlite3.connect(db_path)
    # the oldest run gets a created in the future, two runs share one created
    ids = [r[0] for r in con.execute("SELECT id FROM task_runs ORDER BY rowid")]
    con.execute(
        "UPDATE task_runs SET created = '2099-01-01 00:00:00.000000' WHERE id IN (?, ?)",
        (ids[0], ids[5]),
    )
    con.commit()
    con.close()
    arrow = orion_nb.task_runs()
    queries.columnar_enabled = False
    try:
        rows = orion_nb.task_runs()
    finally:
        queries.columnar_enabled = True
    assert_same_frame(arrow, rows)
    assert list(arrow["id"][:2]) == [ids[5], ids[0]]  # the tie: recorded last comes first
    assert arrow["created"].is_monotonic_decreasing


def test_values_the_arrow_path_cannot_hold_fall_back_to_rows(
    db_path: Path, caplog: pytest.LogCaptureFixture
):
    """SQLite stores what it is given: text in an integer column is read as rows, the same
    frame as before, and the fallback is logged."""
    record_history(n_plain=3)
    con = sqlite3.connect(db_path)
    con.execute("UPDATE task_runs SET run_count = 'many' WHERE rowid = 1")
    con.commit()
    con.close()
    queries.columnar_enabled = False
    try:
        rows = orion_nb.task_runs()
    finally:
        queries.columnar_enabled = True
    with caplog.at_level(logging.DEBUG, logger="orion_nb.store"):
        arrow = orion_nb.task_runs()
    assert any("reading rows" in r.getMessage() for r in caplog.records)
    assert_same_frame(arrow, rows)
    assert "many" in list(arrow["run_count"])


# -- dtype_backend="pyarrow" ---------------------------------------------------------------------
def test_pyarrow_backend_has_arrow_columns_with_the_same_values(history: Path):
    default = orion_nb.task_runs()
    arrow = orion_nb.task_runs(dtype_backend="pyarrow")
    assert list(arrow.columns) == list(default.columns)
    for name, dtype in arrow.dtypes.items():
        if name in ("state_name", "state_type"):
            assert isinstance(dtype, pd.CategoricalDtype)
        else:
            assert isinstance(dtype, pd.ArrowDtype), (name, dtype)
    assert str(arrow["created"].dtype) == "timestamp[us, tz=UTC][pyarrow]"
    assert str(arrow["tags"].dtype) == "list<item: string>[pyarrow]"
    assert str(arrow["run_count"].dtype) == "int64[pyarrow]"
    assert [tuple(v) for v in arrow["tags"]] == list(default["tags"])
    assert (arrow["created"].astype(default["created"].dtype) == default["created"]).all()
    assert list(arrow["message"].astype(object).where(arrow["message"].notna(), None)) == [
        None if pd.isna(v) else v for v in default["message"]
    ]


@pytest.mark.parametrize("read", ["flow_runs", "task_runs", "states", "logs"])
def test_pyarrow_backend_is_the_same_from_rows_and_from_arrow(
    read: str, history: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    fn = getattr(orion_nb, read)
    arrow, rows = both_paths(lambda: fn(dtype_backend="pyarrow"), caplog, monkeypatch)
    assert_same_frame(arrow, rows)


def test_pyarrow_backend_of_an_empty_history(orion_home: Path):
    df = orion_nb.task_runs(dtype_backend="pyarrow")
    assert df.empty
    assert str(df["created"].dtype) == "timestamp[us, tz=UTC][pyarrow]"


def test_unknown_dtype_backend_is_refused_with_the_choices():
    with pytest.raises(QueryError, match=r"dtype_backend='numpy'.*None.*'pyarrow'"):
        orion_nb.task_runs(dtype_backend="numpy")


def test_pyarrow_backend_without_pyarrow_says_what_to_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(columnar._available, "pyarrow", False)
    with pytest.raises(QueryError, match=r"pip install 'orion_nb\[arrow\]'"):
        orion_nb.flow_runs(dtype_backend="pyarrow")


def test_without_the_drivers_history_is_read_as_rows(
    history: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    before = orion_nb.task_runs()
    monkeypatch.setitem(columnar._available, "sqlite", False)
    with caplog.at_level(logging.DEBUG, logger="orion_nb.store"):
        after = orion_nb.task_runs()
    assert not any("as Arrow" in r.getMessage() for r in caplog.records)
    assert_same_frame(before, after)


# -- the new filters (store API) ----------------------------------------------------------------
def _store(fn: str, **kwargs: Any) -> pd.DataFrame:
    from orion_nb.engine import recorder

    writer = recorder.get_writer()
    assert writer is not None
    writer.flush()
    return writer._lt.run(getattr(queries, fn)(writer.engine, **kwargs))  # type: ignore[no-any-return]


def test_until_deployment_and_tags_filters(db_path: Path):
    from orion_nb.engine import recorder
    from orion_nb.engine.params import new_id

    writer = recorder.get_writer()
    assert writer is not None
    t0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    ids = []
    for i, tags in enumerate([("nightly", "prod"), ("nightly",), (), ("prod", "ünï 'q'")]):
        rid = new_id()
        ids.append(rid)
        writer.put(("flow", rid, "etl", f"r{i}", {}, tags, None, "t", "h", 1, t0 + i * 3600))
    writer.flush()
    con = sqlite3.connect(db_path)
    con.execute("UPDATE flow_runs SET deployment_id = ? WHERE id = ?", ("d" * 36, ids[1]))
    con.commit()
    con.close()

    def names(**kw: Any) -> list[str]:
        return list(_store("flow_runs", **kw)["name"])

    assert names(tags="nightly") == ["r1", "r0"]
    assert names(tags=["nightly", "prod"]) == ["r0"]
    assert names(tags="ünï 'q'") == ["r3"]
    assert names(tags="none such") == []
    assert names(deployment_id="d" * 36) == ["r1"]
    until = datetime(2026, 1, 1, 2, tzinfo=UTC)
    assert names(until=until) == ["r1", "r0"]
    assert names(since=datetime(2026, 1, 1, 1), until=until) == ["r1"]  # naive = UTC
    assert names(until=until - timedelta(hours=5)) == []
    task_until = _store("task_runs", until=until)
    assert task_until.empty


def test_flow_run_tags_follow_every_write_to_flow_runs(db_path: Path):
    """The tag index is kept by triggers: inserts, tag updates and deletes from any writer
    (plain SQL here), and only the strings of a JSON list count as tags."""
    orion_nb.flow_runs()  # creates the database
    con = sqlite3.connect(db_path)
    rows = [
        ("a" * 36, '["x", "y", "x"]'),
        ("b" * 36, '["y", 3, null, {"k": "v"}]'),
        ("c" * 36, "not json"),
        ("e" * 36, '{"x": "x"}'),
    ]
    for rid, tags in rows:
        con.execute(
            "INSERT INTO flow_runs (id, flow_name, name, parameters, created, run_count, tags) "
            "VALUES (?, 'f', 'n', '{}', '2026-01-01 00:00:00.000000', 0, ?)",
            (rid, tags),
        )
    con.commit()

    def tags() -> list[tuple[str, str]]:
        return con.execute("SELECT flow_run_id, tag FROM flow_run_tags ORDER BY 1, 2").fetchall()

    assert tags() == [("a" * 36, "x"), ("a" * 36, "y"), ("b" * 36, "y")]
    con.execute("UPDATE flow_runs SET tags = '[\"z\"]' WHERE id = ?", ("a" * 36,))
    con.execute("DELETE FROM flow_runs WHERE id = ?", ("b" * 36,))
    con.execute("UPDATE flow_runs SET state_name = 'Completed' WHERE id = ?", ("a" * 36,))
    con.commit()
    assert tags() == [("a" * 36, "z")]
    con.close()


def test_state_names_outside_the_vocabulary_come_back_on_both_paths(
    history: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    """A run may end in a state named by the user: the name is an extra category, after the
    known ones, never NaN."""
    con = sqlite3.connect(history)
    con.execute("UPDATE task_runs SET state_name = 'Skipped' WHERE rowid IN (1, 2)")
    con.execute("UPDATE task_runs SET state_name = 'Archived' WHERE rowid = 3")
    con.commit()
    con.close()
    arrow, rows = both_paths(orion_nb.task_runs, caplog, monkeypatch)
    assert_same_frame(arrow, rows)
    cats = list(arrow["state_name"].cat.categories)
    assert cats[: len(queries.STATE_NAMES)] == queries.STATE_NAMES
    assert cats[len(queries.STATE_NAMES) :] == ["Archived", "Skipped"]
    assert (arrow["state_name"] == "Skipped").sum() == 2
