"""The public read API: run history as pandas DataFrames.

Each function first flushes this process's pending records, so what you just ran is there,
then queries the configured database (runs recorded by other kernels and scheduled scripts
sharing it appear too). Frames are newest first, timestamps timezone-aware UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from orion_nb.engine import recorder
from orion_nb.errors import ConfigurationError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["flow_runs", "logs", "states", "task_inputs", "task_runs"]


def _query(name: str, **kwargs: Any) -> pd.DataFrame:
    from orion_nb.store import queries

    writer = recorder.get_writer()
    if writer is None or writer.engine is None:
        raise ConfigurationError(
            "Run history is off (ORION_NB_PERSIST=0 or configure(persist=False)); turn it on to query runs."
        )
    writer.flush()
    fn = getattr(queries, name)
    return writer._lt.run(fn(writer.engine, **kwargs))  # type: ignore[no-any-return]


def flow_runs(
    flow_name: str | None = None,
    state: str | list[str] | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    *,
    dtype_backend: str | None = None,
) -> pd.DataFrame:
    """One row per flow run, newest first.

    Parameters
    ----------
    flow_name
        Only runs of this flow.
    state
        A state name (``"Failed"``), a state type (``"FAILED"``) or a list of them.
    since
        Only runs created at or after this time.
    limit
        At most this many rows.
    dtype_backend
        ``None`` (the default) for NumPy-backed columns, or ``"pyarrow"`` for
        ``pd.ArrowDtype`` columns (tags as ``list<string>``), as in ``pandas.read_sql``;
        needs ``pip install 'orion_nb[arrow]'``.
    """
    return _query(
        "flow_runs",
        flow_name=flow_name,
        state=state,
        since=since,
        limit=limit,
        dtype_backend=dtype_backend,
    )


def task_runs(
    flow_run_id: str | None = None,
    task_name: str | None = None,
    state: str | list[str] | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    *,
    dtype_backend: str | None = None,
) -> pd.DataFrame:
    """One row per task run, newest first (filters as in :func:`flow_runs`)."""
    return _query(
        "task_runs",
        flow_run_id=flow_run_id,
        task_name=task_name,
        state=state,
        since=since,
        limit=limit,
        dtype_backend=dtype_backend,
    )


def states(
    run_id: str | None = None, limit: int | None = None, *, dtype_backend: str | None = None
) -> pd.DataFrame:
    """Every recorded transition, newest first, with the rule that decided it and its reason."""
    return _query("states", run_id=run_id, limit=limit, dtype_backend=dtype_backend)


def logs(
    flow_run_id: str | None = None,
    task_run_id: str | None = None,
    level: str | None = None,
    limit: int | None = None,
    *,
    dtype_backend: str | None = None,
) -> pd.DataFrame:
    """Log records of runs (``get_run_logger()`` and ``log_prints``), newest first."""
    return _query(
        "logs",
        flow_run_id=flow_run_id,
        task_run_id=task_run_id,
        level=level,
        limit=limit,
        dtype_backend=dtype_backend,
    )


def task_inputs(flow_run_id: str | None = None) -> pd.DataFrame:
    """The recorded edges: which task run received data from (or waited for) which."""
    return _query("task_inputs", flow_run_id=flow_run_id)


def run_tree(flow_run_id: str) -> dict[str, pd.DataFrame]:
    """A flow run, its subflows, their task runs, states and logs (used by views)."""
    return _query("run_tree", flow_run_id=flow_run_id)
