"""The ``orion-nb`` command: look at the run history from a terminal.

orion-nb runs [ls] [--limit N] [--flow NAME] [--state S] [--deployment NAME]
orion-nb view RUN            task runs and transitions of one flow run
orion-nb config              where the history lives (password masked)
orion-nb export NOTEBOOK     the notebook as a script        (orion_nb.export.cli, issue 8)
orion-nb run PATH            run a script or notebook once
orion-nb serve PATH...       run deployments on schedule
orion-nb deployments ...     ls | pause | resume | run | rm
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from orion_nb.errors import OrionNBError
from orion_nb.export import cli as export_cli

app = typer.Typer(
    help="orion_nb: workflow orchestration inside the Jupyter kernel.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


# issue 8: notebooks to scheduled jobs (orion_nb/export/cli.py)
app.add_typer(export_cli.runs_app, name="runs")
app.command()(export_cli.export)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    export_cli.run
)
app.command()(export_cli.serve)
app.add_typer(export_cli.deployments_app, name="deployments")


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
