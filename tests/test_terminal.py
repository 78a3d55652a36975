"""User text reaches the terminal as text: markup injection through names, in tables and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from orion_nb import flow, task
from orion_nb._terminal import runs_table

HOSTILE = '[link=x"><img/src="x"/onerror=alert(1)>]x[/link]'
BROKEN = "etl[/b]"


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORION_NB_HOME": str(home), "COLUMNS": "400"}
    env.pop("ORION_NB_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "orion_nb.cli", *args], capture_output=True, text=True, env=env
    )


def _hostile_runs() -> None:
    @task(name="[bold red]t[/]")
    def t():
        return 1

    @flow(name=HOSTILE, flow_run_name="[/]run")
    def hostile():
        return t()

    @flow(name=BROKEN)
    def broken():
        raise ValueError("[/] in a message")

    hostile()
    with pytest.raises(ValueError, match=r"\[/\] in a message"):
        broken()


def test_names_are_shown_as_text_in_runs_and_their_html_export():
    _hostile_runs()
    console = Console(record=True, width=400)
    console.print(runs_table())
    out = console.export_text(clear=False)
    assert HOSTILE in out and BROKEN in out and "[/]run" in out
    html = console.export_html()
    assert "<img" not in html and "onerror=alert" in html.replace("&quot;", '"')
    assert 'href="x"' not in html


def test_the_cli_lists_and_views_hostile_names_without_markup_errors(orion_home: Path):
    _hostile_runs()
    out = cli(orion_home, "runs")
    assert out.returncode == 0, out.stderr
    assert HOSTILE in out.stdout and BROKEN in out.stdout
    for name in (BROKEN, HOSTILE):
        out = cli(orion_home, "view", name)
        assert out.returncode == 0, out.stderr
        assert name in out.stdout
    out = cli(orion_home, "view", "no-such[/]run")
    assert out.returncode == 1 and "no-such[/]run" in out.stdout and "Traceback" not in out.stderr
