"""The public surface: a sorted __all__, nothing heavy at import."""

from __future__ import annotations

import subprocess
import sys
import types

import orion_nb


def test_all_is_complete_and_names_only_the_public_surface():
    # httpx's check: every public name of the package is in __all__ and nothing else is (the
    # order is ruff's RUF022, checked by the linter). Subpackages bound by importing them are
    # the internals' modules, not the surface; the modules meant for users are listed.
    # dir(), not vars(): the task runners with heavy imports are attributes loaded on first use
    public = {
        name
        for name in dir(orion_nb)
        if not name.startswith("_") and not isinstance(getattr(orion_nb, name), types.ModuleType)
    }
    modules = {
        name for name in orion_nb.__all__ if isinstance(getattr(orion_nb, name), types.ModuleType)
    }
    assert modules == {"errors", "runtime"}
    assert set(orion_nb.__all__) == public | modules | {"__version__"}
    assert len(orion_nb.__all__) == len(set(orion_nb.__all__))
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


def test_the_remote_task_runners_load_on_first_use():
    code = (
        "import sys, orion_nb\n"
        "lazy = ('orion_nb.engine.dask_runner', 'orion_nb.engine.process_runner', "
        "'orion_nb.engine.remote')\n"
        "print([m for m in lazy if m in sys.modules])\n"
        "from orion_nb import DaskTaskRunner, ProcessPoolTaskRunner\n"
        "print(DaskTaskRunner.__module__, ProcessPoolTaskRunner.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == [
        "[]",
        "orion_nb.engine.dask_runner orion_nb.engine.process_runner",
    ]
