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
