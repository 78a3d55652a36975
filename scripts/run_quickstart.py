#!/usr/bin/env python3
"""The README's main job: run notebooks/quickstart.ipynb headless in a real kernel, on the
default SQLite database, and print the runs it recorded.

    python3 dev.py demo        (sets up .venv, then runs this script)

The kernel runs this interpreter, so the notebook sees the same orion_nb. The executed
notebook is saved to build/quickstart.executed.ipynb. ORION_NB_HOME is honoured (default
~/.orion_nb).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
OUT = ROOT / "build" / "quickstart.executed.ipynb"


def kernel_spec_dir() -> str:
    """A temporary Jupyter data dir whose ``python3`` kernel is this interpreter."""
    data = Path(tempfile.mkdtemp(prefix="orion-nb-kernels-"))
    spec = data / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (orion_nb)",
                "language": "python",
            }
        )
    )
    return str(data)


def run_notebook(path: Path, out: Path, cwd: Path) -> object:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        filter(None, [kernel_spec_dir(), os.environ.get("JUPYTER_PATH")])
    )
    nb = nbformat.read(path, as_version=4)
    from jupyter_client import KernelManager

    # IPC sockets in a private directory: local only, and no "running over TCP" warning
    km = KernelManager(kernel_name="python3", transport="ipc")
    km.ip = str(Path(tempfile.mkdtemp(prefix="orion-nb-ipc-")) / "kernel")
    client = NotebookClient(
        nb,
        km=km,
        timeout=600,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    try:
        client.execute()
    finally:
        if km.has_kernel:  # a kernel manager handed in is not shut down by nbclient
            km.shutdown_kernel(now=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out)
    return nb, CellExecutionError


def main() -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"Running [bold]{NOTEBOOK.relative_to(ROOT)}[/] in a kernel of {sys.executable} ..."
    )
    started = datetime.now(UTC)
    try:
        run_notebook(NOTEBOOK, OUT, ROOT / "notebooks")
    except Exception as exc:  # nbclient's CellExecutionError carries the failing cell
        console.print(f"[red]The quickstart notebook failed:[/]\n{exc}")
        console.print(f"Executed notebook (up to the failure): {OUT}")
        return 1
    console.print(f"Executed notebook saved to {OUT.relative_to(ROOT)}\n")

    import orion_nb
    from orion_nb._terminal import config_table

    console.print(config_table())
    runs = orion_nb.flow_runs(since=started).sort_values("created")
    table = Table(title=f"flow runs recorded by the notebook ({len(runs)})", title_justify="left")
    for col in ("flow", "run", "state", "duration", "task runs"):
        table.add_column(col)
    all_tasks = orion_nb.task_runs(since=started)
    for r in runs.itertuples():
        n = int((all_tasks["flow_run_id"] == r.id).sum())
        table.add_row(
            str(r.flow_name),
            str(r.name),
            str(r.state_name),
            f"{r.duration.total_seconds() * 1000:.1f} ms",
            str(n),
        )
    console.print(table)
    if not runs.empty:
        first = runs.iloc[0]
        tasks = all_tasks[all_tasks["flow_run_id"] == first["id"]].sort_values("created")
        table = Table(
            title=f"task runs of {first['flow_name']} / {first['name']}", title_justify="left"
        )
        for col in ("task run", "state", "attempts", "duration"):
            table.add_column(col)
        for t in tasks.itertuples():
            table.add_row(
                str(t.name),
                str(t.state_name),
                str(t.run_count),
                f"{t.duration.total_seconds() * 1000:.2f} ms",
            )
        console.print(table)
        st = orion_nb.states()
        st = st[st["run_id"].isin(set(all_tasks["id"]))]
        decided = st[st["rule"].notna()].sort_values("id").drop_duplicates("rule")
        rules = Table(title="decisions by orchestration rules (one of each)", title_justify="left")
        rules.add_column("state")
        rules.add_column("reason", overflow="fold")
        for s in decided.itertuples():
            rules.add_row(str(s.name), str(s.message))
        console.print(rules)
    return 0


if __name__ == "__main__":
    sys.exit(main())
