"""The public surface: a sorted __all__, nothing heavy at import."""

from __future__ import annotations

import subprocess
import sys

import orion_nb


def test_all_is_sorted_and_complete():
    assert orion_nb.__all__ == sorted(orion_nb.__all__)
    for name in orion_nb.__all__:
        assert hasattr(orion_nb, name), name
    required = {
        "flow",
        "task",
        "unmapped",
        "allow_failure",
        "get_run_logger",
        "tags",
        "task_input_hash",
        "State",
        "StateType",
        "configure",
        "set_concurrency_limit",
        "flow_runs",
        "task_runs",
        "states",
        "logs",
    }
    assert required <= set(orion_nb.__all__)


def test_import_is_light():
    code = (
        "import sys, orion_nb; heavy = [m for m in ('pandas', 'sqlalchemy', 'plotly', 'ipywidgets', "
        "'anywidget', 'IPython') if m in sys.modules]; "
        "import threading; print(heavy, threading.active_count())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[] 1"  # no heavy modules, no threads started


def test_errors_module_draws_the_tree():
    from orion_nb import errors

    for name in errors.__all__:
        assert name in errors.__doc__
