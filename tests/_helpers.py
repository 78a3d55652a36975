"""Small helpers shared by the engine tests: what the history says about a run."""

from __future__ import annotations

import orion_nb


def state_names(run_id: str) -> list[str]:
    df = orion_nb.states(run_id)
    return list(df.sort_values("id")["name"].astype(str))


def task_row(name: str):
    df = orion_nb.task_runs()
    rows = df[df["name"] == name]
    assert len(rows) == 1, f"expected one task run named {name!r}, found {len(rows)}"
    return rows.iloc[0]


# Task-run transitions recorded in a SQLite history: the rows of ``states`` plus the three of
# each plain run whose rows the writer left out (ids kept on the run, see store/state_log.py)
TASK_TRANSITIONS_SQL = (
    "select (select count(*) from states where run_kind='task')"
    " + 3 * (select count(*) from task_runs where final_state_id is not null)"
)
# the ids of the whole transition log, written or left out (each must appear once)
TRANSITION_IDS_SQL = (
    "select id from states union all select pending_state_id from task_runs"
    " where final_state_id is not null union all select running_state_id from task_runs"
    " where final_state_id is not null union all select final_state_id from task_runs"
    " where final_state_id is not null"
)
