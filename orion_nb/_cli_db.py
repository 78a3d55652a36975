"""``orion-nb db ...`` and ``orion-nb runs reconcile``: looking after the history database.

    orion-nb db info                      revision, counts, size, pending journal
    orion-nb db upgrade                   migrate to the newest schema (one transaction, locked)
    orion-nb db prune --older-than 30d    delete finished runs older than that
    orion-nb db replay                    write the journal of records that could not be written
    orion-nb db reset --yes               delete every run: an empty history
    orion-nb runs reconcile               mark runs whose process is gone as Crashed

Every command works on the configured database (``ORION_NB_DATABASE_URL`` or the SQLite file
in ``ORION_NB_HOME``), shows it with its password masked, and turns errors into one clear
line and exit status 1, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from orion_nb._terminal import text
from orion_nb.errors import OrionNBError
from orion_nb.settings import get_settings, mask_url

__all__ = ["app", "reconcile_command"]

app = typer.Typer(help="Look after the history database.", no_args_is_help=True)
console = Console()
T = TypeVar("T")


def _url() -> str:
    return get_settings().effective_database_url


def _guard(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (OrionNBError, ValueError) as exc:
        console.print(text(f"Error: {exc}", "red"))
        raise typer.Exit(1) from None


@app.command()
def info() -> None:
    """Schema revision, how many runs, states and logs, size and pending journal."""
    from orion_nb.store import maintenance

    url = _url()
    data = _guard(lambda: maintenance.info(url))
    table = Table(title="orion_nb history", title_justify="left", show_header=False)
    table.add_row("database", text(mask_url(url)))
    for key, value in data.items():
        table.add_row(text(key), text(f"{value:,}" if isinstance(value, int) else value))
    console.print(table)


@app.command()
def upgrade() -> None:
    """Migrate the database to the newest schema (nothing changes if it is current)."""
    from orion_nb.store import maintenance

    url = _url()
    before, after = _guard(lambda: maintenance.upgrade(url))
    what = "is current" if before == after else f"upgraded from {before or 'empty'}"
    console.print(text(f"{mask_url(url)}: schema {after} ({what})."))


@app.command()
def prune(
    older_than: str = typer.Option(..., help="Age of runs to delete, e.g. 30d, 12h, 2w."),
) -> None:
    """Delete finished runs (with their task runs, states, logs) older than the given age."""
    from orion_nb.store import maintenance

    url = _url()
    counts = _guard(lambda: maintenance.prune(url, maintenance.parse_age(older_than)))
    console.print(
        text(
            f"{mask_url(url)}: deleted " + ", ".join(f"{v:,} {k}" for k, v in counts.items()) + "."
        )
    )


@app.command()
def replay() -> None:
    """Write the records kept in the journal (each batch exactly once)."""
    from orion_nb.store import maintenance

    url = _url()
    r = _guard(lambda: maintenance.replay(url))
    console.print(
        text(
            f"{mask_url(url)}: wrote {r['batches']:,} journaled batches ({r['rows']:,} records); "
            f"{r['left']:,} left in {r['dir']}."
        )
    )
    for key, name, n in r["others"]:
        console.print(
            text(
                f"Journal {key} holds {n:,} batches for another database ({name}); set "
                "ORION_NB_DATABASE_URL to it and run `orion-nb db replay` again."
            )
        )


@app.command()
def reset(yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Delete every recorded run: the database becomes an empty orion_nb history."""
    from orion_nb.store import maintenance

    url = _url()
    if not yes and not typer.confirm(f"Delete every run in {mask_url(url)}?"):
        raise typer.Exit(1)
    _guard(lambda: maintenance.reset(url))
    console.print(text(f"{mask_url(url)}: reset to an empty history."))


def reconcile_command(
    grace: float | None = typer.Option(
        None, help="Seconds without heartbeat before a run is presumed crashed."
    ),
) -> None:
    """Mark runs whose process is gone (or silent past the grace period) as Crashed."""
    from orion_nb.store import maintenance

    url = _url()
    ids: list[Any] = _guard(lambda: maintenance.reconcile(url, grace))
    console.print(text(f"{mask_url(url)}: marked {len(ids)} run(s) Crashed."))
    for rid in ids:
        console.print(text(f"  {rid}"))
