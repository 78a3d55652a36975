"""orion_nb: workflow orchestration that lives inside the Jupyter kernel.

Decorate functions with :func:`flow` and :func:`task` (or mark a cell with ``%%flow`` after
``%load_ext orion_nb``): every call becomes a run whose states are decided by small, visible
orchestration rules, shown live in the notebook and recorded in SQLite (default) or Postgres.
:func:`flow_runs`, :func:`task_runs`, :func:`states` and :func:`logs` return that history as
pandas DataFrames.

Importing this package is cheap: no database, thread, pandas or SQLAlchemy until first use.
"""

import typing as _t

from orion_nb import errors, runtime
from orion_nb.engine.annotations import allow_failure, quote, unmapped
from orion_nb.engine.cache import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NONE,
    RUN_ID,
    TASK_SOURCE,
    CachePolicy,
    task_input_hash,
)
from orion_nb.engine.concurrency import set_concurrency_limit
from orion_nb.engine.context import get_run_context
from orion_nb.engine.flows import Flow, flow
from orion_nb.engine.futures import FutureList, TaskFuture, as_completed, wait
from orion_nb.engine.run_logging import get_run_logger
from orion_nb.engine.runners import SequentialTaskRunner, TaskRunner, ThreadPoolTaskRunner
from orion_nb.engine.tags import tags
from orion_nb.engine.tasks import Task, exponential_backoff, task
from orion_nb.engine.views import register_view_factory as _register_view_factory
from orion_nb.history import flow_runs, logs, states, task_inputs, task_runs
from orion_nb.orchestration.states import (
    AwaitingRetry,
    Cached,
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Pending,
    Running,
    Scheduled,
    State,
    StateType,
)
from orion_nb.settings import configure

__version__ = "0.1.0"

# Loaded on first use: a flow that does not use them does not pay for their imports (the
# remote-execution machinery behind both runners); ``from orion_nb import X`` works as before.
_LAZY = {
    "DaskTaskRunner": "orion_nb.engine.dask_runner",
    "get_dask_client": "orion_nb.engine.dask_runner",
    "ProcessPoolTaskRunner": "orion_nb.engine.process_runner",
}

if _t.TYPE_CHECKING:
    from orion_nb.engine.dask_runner import DaskTaskRunner, get_dask_client
    from orion_nb.engine.process_runner import ProcessPoolTaskRunner


def __getattr__(name: str) -> _t.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'orion_nb' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DEFAULT",
    "FLOW_PARAMETERS",
    "INPUTS",
    "NONE",
    "RUN_ID",
    "TASK_SOURCE",
    "AwaitingRetry",
    "CachePolicy",
    "Cached",
    "Cancelled",
    "Completed",
    "Crashed",
    "DaskTaskRunner",
    "Failed",
    "Flow",
    "FutureList",
    "Pending",
    "ProcessPoolTaskRunner",
    "Running",
    "Scheduled",
    "SequentialTaskRunner",
    "State",
    "StateType",
    "Task",
    "TaskFuture",
    "TaskRunner",
    "ThreadPoolTaskRunner",
    "__version__",
    "allow_failure",
    "as_completed",
    "browse",
    "configure",
    "errors",
    "exponential_backoff",
    "flow",
    "flow_runs",
    "get_dask_client",
    "get_run_context",
    "get_run_logger",
    "graph",
    "load_ipython_extension",
    "logs",
    "quote",
    "runtime",
    "set_concurrency_limit",
    "states",
    "tags",
    "task",
    "task_input_hash",
    "task_inputs",
    "task_runs",
    "timeline",
    "unload_ipython_extension",
    "unmapped",
    "view",
    "wait",
]


def _notebook_view(run: _t.Any, mode: str) -> _t.Any:
    """The live view of a top-level flow run: a widget in a kernel, text elsewhere."""
    from orion_nb.notebook.display import make_view

    return make_view(run, mode)


_register_view_factory(_notebook_view)


def view(run_id: str) -> _t.Any:
    """The static view of a recorded flow run (id, unique id prefix or run name).

    It renders as HTML and a one-line summary everywhere a notebook travels (saved files,
    nbconvert, code hosts); ``.widget()`` gives the interactive RunView.
    """
    from orion_nb.notebook.views import view as _view

    return _view(run_id)


def browse(**filters: _t.Any) -> _t.Any:
    """The history browser: every flow run, newest first, with filters, a chart and live updates.

    Filters (each optional): ``flow``, ``state`` (names like ``"Failed"`` or types like
    ``"FAILED"``), ``since`` / ``until`` (datetimes, ISO strings, or a timedelta for "that
    long ago"), ``deployment`` (ids or names), ``tag`` (a run must carry each), ``text`` (in
    run names), ``subflows`` (list subflow runs too). Each takes a value or a list of values.
    A saved notebook keeps a static table of the runs that were listed.
    """
    from orion_nb.notebook.browser import HistoryBrowser

    return HistoryBrowser(**filters)


def graph(run_id: str) -> _t.Any:
    """The dependency graph of a recorded flow run (id, unique id prefix or run name).

    A widget (RunView at its Graph tab: layered top to bottom, nodes coloured by state,
    mapped tasks collapsed, subflows as boxes) that leaves a static SVG in saved notebooks.
    """
    from orion_nb.notebook.views import graph as _graph

    return _graph(run_id)


def timeline(run_id: str) -> _t.Any:
    """A plotly Figure of a recorded flow run's timeline, for reports."""
    from orion_nb.notebook.views import timeline as _timeline

    return _timeline(run_id)


def load_ipython_extension(ipython: _t.Any) -> None:
    """``%load_ext orion_nb``: register the ``%%flow`` and ``%orion`` magics."""
    from orion_nb.notebook.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: _t.Any) -> None:
    from orion_nb.notebook.magics import unload_ipython_extension as _unload

    _unload(ipython)
