"""The ``orion-nb`` command: look at the run history from a terminal.

orion-nb runs [ls] [--limit N] [--flow NAME] [--state S] [--deployment NAME]
orion-nb runs reconcile      mark runs whose process is gone as Crashed
orion-nb view RUN            task runs and transitions of one flow run
orion-nb config              where the history lives (password masked)
orion-nb db info | upgrade | prune --older-than 30d | replay | reset
orion-nb export NOTEBOOK     the notebook as a script
orion-nb run PATH            run a script or notebook once
orion-nb serve PATH...       run deployments on schedule
orion-nb deployments ...     ls | pause | resume | run | rm

Every user string is printed as text, never as rich markup (see ``orion_nb._terminal``).
"""

from __future__ import annotations

import typer
from rich.console import Console

from orion_nb import _cli_db
from orion_nb.errors import OrionNBError
from orion_nb.export import cli as export_cli

app = typer.Typer(
    help="orion_nb: workflow orchestration inside the Jupyter kernel.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
app.add_typer(export_cli.runs_app, name="runs")
app.add_typer(_cli_db.app, name="db")
export_cli.runs_app.command("reconcile")(_cli_db.reconcile_command)


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
    from orion_nb._terminal import run_view, text
    from orion_nb.notebook.views import model_for

    try:
        snap = model_for(run).snapshot()
    except OrionNBError as exc:
        console.print(text(str(exc), "red"))
        raise typer.Exit(1) from None
    console.print(run_view(snap))


@app.command()
def config() -> None:
    """Where the history lives, the home directory and the display mode."""
    from orion_nb._terminal import config_table

    console.print(config_table())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
