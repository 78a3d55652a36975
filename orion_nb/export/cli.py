"""The ``orion-nb`` commands of issue 8: export, run, serve, deployments, runs.

``orion_nb/cli.py`` registers them with one line each. Errors of orion_nb's own family are
shown as one sentence and exit status 2 (bad input) or 1; user text is printed as text, never
as markup.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orion_nb.errors import OrionNBError

__all__ = ["deployments_app", "export", "run", "runs_app", "serve"]

T = TypeVar("T")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; an orion_nb error becomes a one-line message and exit status 2."""
    try:
        return fn()
    except OrionNBError as exc:
        err.print(Text(f"Error: {exc}"))
        raise typer.Exit(2) from None


_PARAM = typer.Option(
    [], "--param", "-p", metavar="NAME=VALUE", help="A parameter, read as its default's type."
)
_CRON = typer.Option(None, "--cron", help="Cron schedule (5 fields), e.g. '0 6 * * *'.")
_INTERVAL = typer.Option(None, "--interval", help="Run every N seconds (or '15m', '2h', '1d').")
_ANCHOR = typer.Option(None, "--anchor", help="Start of the interval count (ISO date and time).")
_TZ = typer.Option(None, "--timezone", "--tz", help="IANA time zone of the schedule (default UTC).")


def export(
    notebook: Path = typer.Argument(..., help="The notebook (.ipynb) to export."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write the script here."),
    name: str | None = typer.Option(
        None, "--name", help="Flow and deployment name (default: the notebook's file name)."
    ),
    cron: str | None = _CRON,
    interval: str | None = _INTERVAL,
    anchor: str | None = _ANCHOR,
    timezone: str | None = _TZ,
    param: list[str] = _PARAM,
    emit: str | None = typer.Option(
        None, "--emit", help="Also print a 'crontab' line or 'systemd' units that run the script."
    ),
) -> None:
    """Turn a notebook into a plain, ruff-formatted Python script that runs its cells as a flow."""
    from orion_nb.export.schedules import Schedule
    from orion_nb.export.script import export_notebook

    def go() -> None:
        schedule = Schedule.parse(cron=cron, interval=interval, timezone=timezone, anchor=anchor)
        if emit is not None:
            if emit not in ("crontab", "systemd"):
                raise typer.BadParameter(
                    "use --emit crontab or --emit systemd", param_hint="--emit"
                )
            if output is None or schedule is None:
                err.print(
                    Text("Error: --emit needs -o SCRIPT.py and a schedule (--cron or --interval).")
                )
                raise typer.Exit(2)
        result = export_notebook(
            notebook, name=name, schedule=schedule, params=param, script_path=output
        )
        for note in result.notes:
            err.print(Text(f"Note: {note}"))
        if output is None:
            sys.stdout.write(result.text)
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(result.text, encoding="utf-8")
        err.print(Text(f"Wrote {output} (flow {result.flow_name!r})"))
        if emit is not None:
            assert schedule is not None
            _emit(emit, schedule, output, name or output.stem)

    _guard(go)


def _emit(kind: str, schedule: Any, script: Path, unit: str) -> None:
    import re

    from orion_nb.export import emit as e
    from orion_nb.settings import get_settings

    s = get_settings()
    url = s.database_url
    home = str(s.home)
    if kind == "crontab":
        text = e.crontab(schedule, script, database_url=url, home=home)
    else:
        unit_name = "orion-nb-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", unit).strip("-.") or "script")
        text = e.systemd_units(schedule, script, unit_name, database_url=url, home=home)
    sys.stdout.write(text)


def run(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A script (.py) or a notebook (.ipynb)."),
    param: list[str] = _PARAM,
    name: str | None = typer.Option(
        None, "--name", help="A notebook's flow name (default: its file name)."
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Where to save the executed notebook."
    ),
    kernel: str | None = typer.Option(None, "--kernel", help="Kernel for a notebook."),
    cell_timeout: float | None = typer.Option(
        None, "--cell-timeout", help="Fail a notebook cell that runs longer (seconds)."
    ),
    scheduled_run: str | None = typer.Option(None, "--scheduled-run", hidden=True),
) -> None:
    """Run a script or a notebook once, recorded as one flow run.

    A notebook runs headless in a kernel, its parameters injected as papermill does; the
    executed notebook is saved and its path recorded on the run. Extra arguments after the
    path go to a script.
    """
    from orion_nb.export.run import run_notebook, run_script

    def go() -> int:
        if not path.exists():
            err.print(Text(f"Error: no such file: {path}"))
            return 2
        if path.suffix == ".ipynb":
            return run_notebook(
                path,
                param,
                run_id=scheduled_run,
                name=name,
                output=output,
                kernel=kernel,
                cell_timeout=cell_timeout,
            ).code
        return run_script(path, param, run_id=scheduled_run, args=ctx.args).code

    code = _guard(go)
    raise typer.Exit(code)


def serve(
    paths: list[Path] = typer.Argument(None, help="Notebooks or scripts to serve."),
    deployment: list[str] = typer.Option(
        [], "--deployment", "-d", help="Also serve this registered deployment (repeatable)."
    ),
    name: str | None = typer.Option(None, "--name", help="Deployment name (one path only)."),
    cron: str | None = _CRON,
    interval: str | None = _INTERVAL,
    anchor: str | None = _ANCHOR,
    timezone: str | None = _TZ,
    param: list[str] = _PARAM,
    catch_up: bool = typer.Option(
        False, "--catch-up", help="Run missed slots instead of skipping."
    ),
    grace: float = typer.Option(
        30.0,
        "--grace",
        help="Seconds a run may finish after SIGTERM/Ctrl-C before it is cancelled.",
    ),
    late_after: float = typer.Option(
        15.0, "--late-after", help="A slot not started this many seconds after its time is Late."
    ),
    ahead: int = typer.Option(3, "--ahead", min=1, help="How many future slots to schedule."),
    poll: float = typer.Option(5.0, "--poll", help="Longest sleep between database checks."),
) -> None:
    """Register deployments and run them on schedule, in the foreground, until stopped."""
    from orion_nb.export.serve import serve_paths

    code = _guard(
        lambda: serve_paths(
            paths or [],
            deployments=deployment,
            name=name,
            cron=cron,
            interval=interval,
            anchor=anchor,
            timezone=timezone,
            params=param,
            catch_up=catch_up,
            grace=grace,
            late_after=late_after,
            ahead=ahead,
            poll=poll,
        )
    )
    raise typer.Exit(code)


# -- deployments -------------------------------------------------------------------------------

deployments_app = typer.Typer(
    help="Registered deployments: list, pause, resume, run now, remove.", no_args_is_help=True
)


def _when(value: Any) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


@deployments_app.command("ls")
def deployments_ls() -> None:
    """Every deployment with its schedule, next slot and latest run."""
    from orion_nb.export import deployments as dep

    rows = _guard(dep.list_all)
    table = Table(title=f"{len(rows)} deployment(s)", title_justify="left")
    for col in ("name", "flow", "schedule", "status", "next slot (UTC)", "last run", "path"):
        table.add_column(col, overflow="fold")
    for d in rows:
        table.add_row(
            Text(d["name"]),
            Text(d["flow_name"]),
            Text(d.get("schedule") or "-"),
            Text("paused" if d["paused"] else "active"),
            Text("-" if d["paused"] else _when(d.get("next_slot"))),
            Text(f"{d['last_state']} {_when(d['last_end'])}" if d.get("last_state") else "-"),
            Text(d["path"]),
        )
    out.print(table)


@deployments_app.command("pause")
def deployments_pause(name: str = typer.Argument(..., help="Deployment name.")) -> None:
    """Stop scheduling runs (runs scheduled ahead are removed)."""
    from orion_nb.export import deployments as dep

    d, removed = _guard(lambda: dep.pause(name, True))
    out.print(Text(f"Paused {d['name']!r} ({removed} scheduled run(s) removed)."))


@deployments_app.command("resume")
def deployments_resume(name: str = typer.Argument(..., help="Deployment name.")) -> None:
    """Schedule runs again (serve picks the deployment up at its next check)."""
    from orion_nb.export import deployments as dep

    d, _ = _guard(lambda: dep.pause(name, False))
    out.print(Text(f"Resumed {d['name']!r}."))


@deployments_app.command("rm")
def deployments_rm(name: str = typer.Argument(..., help="Deployment name.")) -> None:
    """Remove a deployment; the runs it made stay in the history."""
    from orion_nb.export import deployments as dep

    d, removed = _guard(lambda: dep.remove(name))
    out.print(Text(f"Removed {d['name']!r} ({removed} scheduled run(s) removed)."))


@deployments_app.command("run")
def deployments_run(
    name: str = typer.Argument(..., help="Deployment name."),
    param: list[str] = _PARAM,
) -> None:
    """Run a deployment now, in the foreground, recorded with its deployment."""
    from orion_nb.export.serve import run_now

    state = _guard(lambda: run_now(name, param))
    raise typer.Exit(0 if state == "Completed" else 1)


# -- runs ----------------------------------------------------------------------------------------

runs_app = typer.Typer(help="Recent flow runs (orion-nb runs, or orion-nb runs ls).")

_LIMIT = typer.Option(20, "--limit", min=1, help="How many runs to show.")
_FLOW = typer.Option(None, "--flow", help="Only runs of this flow.")
_STATE = typer.Option(None, "--state", help="Only runs in this state (name or type).")
_DEPLOYMENT = typer.Option(None, "--deployment", help="Only runs of this deployment.")


def _runs(limit: int, flow: str | None, state: str | None, deployment: str | None) -> None:
    from orion_nb._terminal import runs_table

    if deployment is not None:
        from orion_nb.export import deployments as dep

        _guard(lambda: dep.find(deployment))
    out.print(_guard(lambda: runs_table(limit, flow, state, deployment=deployment)))


@runs_app.callback(invoke_without_command=True)
def runs_default(
    ctx: typer.Context,
    limit: int = _LIMIT,
    flow: str | None = _FLOW,
    state: str | None = _STATE,
    deployment: str | None = _DEPLOYMENT,
) -> None:
    """Recent flow runs, newest first."""
    if ctx.invoked_subcommand is None:
        _runs(limit, flow, state, deployment)


@runs_app.command("ls")
def runs_ls(
    limit: int = _LIMIT,
    flow: str | None = _FLOW,
    state: str | None = _STATE,
    deployment: str | None = _DEPLOYMENT,
) -> None:
    """Recent flow runs, newest first (filter by flow, state or deployment)."""
    _runs(limit, flow, state, deployment)
