"""Rich tables of the run history, shared by ``%orion`` and the ``orion-nb`` command."""

from __future__ import annotations

from rich.table import Table

from orion_nb import history
from orion_nb.settings import get_settings, mask_url

__all__ = ["STATE_STYLES", "config_table", "runs_table"]

STATE_STYLES = {
    "Completed": "green",
    "Cached": "green",
    "Failed": "red",
    "TimedOut": "red",
    "Crashed": "magenta",
    "Cancelled": "yellow",
    "Running": "blue",
    "Retrying": "blue",
}


def runs_table(
    limit: int = 20,
    flow: str | None = None,
    state: str | None = None,
    deployment: str | None = None,
) -> Table:
    """The most recent flow runs with their state, duration and number of task runs.

    Runs of a deployment (issue 8) show its name in a ``deployment`` column.
    """
    df = history.flow_runs(flow_name=flow, state=state, limit=limit, deployment=deployment)
    deployed = "deployment" in df and bool(df["deployment"].notna().any())
    counts = history.task_runs()["flow_run_id"].value_counts() if not df.empty else {}
    table = Table(title=f"orion_nb: {len(df)} most recent flow runs", title_justify="left")
    cols = ["started (UTC)", "flow", "run", "state", "duration", "tasks", "id"]
    if deployed:
        cols.insert(2, "deployment")
    for col in cols:
        table.add_column(col, overflow="fold")
    for r in df.itertuples():
        started = "-" if str(r.start_time) == "NaT" else r.start_time.strftime("%Y-%m-%d %H:%M:%S")
        dur = "-" if str(r.duration) == "NaT" else f"{r.duration.total_seconds():.2f} s"
        name = str(r.state_name)
        style = STATE_STYLES.get(name, "white")
        cells = [
            started,
            str(r.flow_name),
            str(r.name),
            f"[{style}]{name}[/]",
            dur,
            str(int(counts.get(r.id, 0))),
            str(r.id)[-8:],
        ]
        if deployed:
            cells.insert(2, str(r.deployment) if isinstance(r.deployment, str) else "")
        table.add_row(*cells)
    return table


def config_table() -> Table:
    """Where the history lives (password masked), the home directory and the display mode."""
    s = get_settings()
    table = Table(title="orion_nb configuration", title_justify="left", show_header=False)
    table.add_row("database", mask_url(s.effective_database_url))
    table.add_row("home (ORION_NB_HOME)", str(s.home))
    table.add_row("display", s.display)
    table.add_row("recording", "on" if s.persist else "off")
    return table
