"""Rich renderings of the run history for terminals, shared by ``%orion`` and ``orion-nb``.

Every string that comes from a user or from the history (flow, run and task names, state
messages, rule reasons, exception text, database URLs) reaches rich as
:class:`rich.text.Text`, never as markup: a flow named ``[link=x"><img ...>]x[/link]`` is
shown as those characters, and one named ``etl[/b]`` cannot crash a table with
``MarkupError``. Styles come only from this module's own constants.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from orion_nb import history
from orion_nb.settings import get_settings, mask_url

__all__ = ["STATE_STYLES", "config_table", "run_view", "runs_table", "text"]

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


def text(value: Any, style: str = "") -> Text:
    """Any value as plain rich text (``None`` as an empty string), never parsed as markup."""
    return Text("" if value is None else str(value), style=style)


def _state(name: Any) -> Text:
    name = str(name)
    return text(name, STATE_STYLES.get(name, "white"))


def runs_table(
    limit: int = 20,
    flow: str | None = None,
    state: str | None = None,
    deployment: str | None = None,
) -> Table:
    """The most recent flow runs with their state, duration and number of task runs.

    Runs of a deployment show its name in a ``deployment`` column (when any listed run has one).
    """
    df = history.flow_runs(flow_name=flow, state=state, limit=limit, deployment=deployment)
    deployed = "deployment" in df and bool(df["deployment"].notna().any())
    counts = history.task_run_counts(list(df["id"])) if not df.empty else {}
    table = Table(title=f"orion_nb: {len(df)} most recent flow runs", title_justify="left")
    cols = ["started (UTC)", "flow", "run", "state", "duration", "tasks", "id"]
    if deployed:
        cols.insert(2, "deployment")
    for col in cols:
        table.add_column(col, overflow="fold")
    for r in df.itertuples():
        started = "-" if str(r.start_time) == "NaT" else r.start_time.strftime("%Y-%m-%d %H:%M:%S")
        dur = "-" if str(r.duration) == "NaT" else f"{r.duration.total_seconds():.2f} s"
        cells = [
            text(started),
            text(r.flow_name),
            text(r.name),
            _state(r.state_name),
            text(dur),
            text(int(counts.get(r.id, 0))),
            text(str(r.id)[-8:]),
        ]
        if deployed:
            cells.insert(2, text(r.deployment if isinstance(r.deployment, str) else ""))
        table.add_row(*cells)
    return table


def run_view(snap: dict[str, Any]) -> Group:
    """One flow run (a view model snapshot): its header and its transitions table."""
    r = snap["run"]
    header = Text.assemble(
        text(r["flow_name"], "bold"),
        " / ",
        text(r["name"]),
        ": ",
        _state(r["state_name"]),
        text(f"  ({snap['total']} task runs: {snap['counts']})"),
    )
    table = Table("run", "from", "to", "rule", "reason", title="transitions", title_justify="left")
    for t in snap["transitions"]:
        table.add_row(
            text(t["run"]), text(t["from"]), _state(t["to"]), text(t["rule"]), text(t["message"])
        )
    return Group(header, table)


def config_table() -> Table:
    """Where the history lives (password masked), the home directory and the display mode."""
    s = get_settings()
    table = Table(title="orion_nb configuration", title_justify="left", show_header=False)
    table.add_row("database", text(mask_url(s.effective_database_url)))
    table.add_row("home (ORION_NB_HOME)", text(s.home))
    table.add_row("journal", text(s.journal_dir))
    table.add_row("display", text(s.display))
    table.add_row("recording", "on" if s.persist else "off")
    return table
