"""The ``orion-nb`` command: look at the run history from a terminal.

orion-nb runs [--limit N] [--flow NAME] [--state S]
orion-nb view RUN            task runs and transitions of one flow run
orion-nb config              where the history lives (password masked)
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from orion_nb.errors import OrionNBError

app = typer.Typer(
    help="orion_nb: workflow orchestration inside the Jupyter kernel.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


@app.command()
def runs(
    limit: int = typer.Option(20, min=1, help="How many runs to show."),
    flow: str | None = typer.Option(None, help="Only runs of this flow."),
    state: str | None = typer.Option(None, help="Only runs in this state (name or type)."),
) -> None:
    """Recent flow runs, newest first."""
    from orion_nb.notebook.tables import runs_table

    console.print(runs_table(limit, flow, state))


@app.command()
def view(
    run: str = typer.Argument(..., help="Flow run id, id prefix, run name or flow name."),
) -> None:
    """The task runs and state transitions of one flow run."""
    from orion_nb.notebook.views import model_for

    try:
        snap = model_for(run).snapshot()
    except OrionNBError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    r = snap["run"]
    console.print(
        f"[bold]{r['flow_name']}[/] / {r['name']}: {r['state_name']}  ({snap['total']} task runs: {snap['counts']})"
    )
    table = Table("run", "from", "to", "rule", "reason", title="transitions", title_justify="left")
    for t in snap["transitions"]:
        table.add_row(t["run"], t["from"] or "", t["to"], t["rule"] or "", t["message"] or "")
    console.print(table)


@app.command()
def config() -> None:
    """Where the history lives, the home directory and the display mode."""
    from orion_nb.notebook.tables import config_table

    console.print(config_table())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
