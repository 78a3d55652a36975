"""The ``orion-nb`` command: look at the run history from a terminal.

orion-nb runs [--limit N] [--flow NAME] [--state S]
orion-nb runs reconcile      mark runs whose process is gone as Crashed
orion-nb view RUN            task runs and transitions of one flow run
orion-nb config              where the history lives (password masked)
orion-nb db info | upgrade | prune --older-than 30d | replay | reset

Every user string is printed as text, never as rich markup (see ``orion_nb._terminal``).
"""

from __future__ import annotations

import typer
from rich.console import Console

from orion_nb import _cli_db
from orion_nb.errors import OrionNBError

app = typer.Typer(
    help="orion_nb: workflow orchestration inside the Jupyter kernel.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
runs_app = typer.Typer(help="Recent flow runs, newest first.")
app.add_typer(runs_app, name="runs")
app.add_typer(_cli_db.app, name="db")
runs_app.command("reconcile")(_cli_db.reconcile_command)


@runs_app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context,
    limit: int = typer.Option(20, min=1, help="How many runs to show."),
    flow: str | None = typer.Option(None, help="Only runs of this flow."),
    state: str | None = typer.Option(None, help="Only runs in this state (name or type)."),
) -> None:
    """Recent flow runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from orion_nb._terminal import runs_table, text

    try:
        console.print(runs_table(limit, flow, state))
    except OrionNBError as exc:
        console.print(text(str(exc), "red"))
        raise typer.Exit(1) from None


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
