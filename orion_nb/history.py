"""The public read API: run history as pandas DataFrames.

Each function first flushes this process's pending records, so what you just ran is there,
then queries the configured database through a reader of its own (runs recorded by other
kernels and scheduled scripts sharing it appear too; a read-only history can be read).
Frames are newest first, timestamps timezone-aware UTC.

Filter values are checked (a clear :class:`~orion_nb.errors.ParameterError` for a wrong
type) and cleaned the way stored names are (a lone surrogate or NUL is stored escaped), so
filtering by the name a run was given finds it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from orion_nb import settings
from orion_nb.engine import recorder
from orion_nb.errors import ConfigurationError, ParameterError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["flow_runs", "logs", "states", "task_inputs", "task_runs"]


_TEXT_FILTERS = ("flow_name", "task_name", "flow_run_id", "task_run_id", "run_id", "level")


def _check_filters(kwargs: dict[str, Any]) -> dict[str, Any]:
    from orion_nb.store.sanitize import clean_text

    for key in _TEXT_FILTERS:
        value = kwargs.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ParameterError(
                    f"{key} must be a string, not {type(value).__name__}; pass e.g. "
                    f"{key}='...' or leave it out."
                )
            kwargs[key] = clean_text(value)
    state = kwargs.get("state")
    if state is not None:
        values = [state] if isinstance(state, str) else state
        if not isinstance(values, (list, tuple, set)) or not all(
            isinstance(v, str) for v in values
        ):
            raise ParameterError(
                "state must be a state name ('Failed'), a state type ('FAILED') or a list of them."
            )
        kwargs["state"] = [clean_text(v) for v in values]
    limit = kwargs.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ParameterError(f"limit must be a whole number >= 0, not {limit!r:.40}.")
    since = kwargs.get("since")
    if since is not None and not isinstance(since, datetime):
        raise ParameterError(
            f"since must be a datetime (e.g. datetime.now(UTC) - timedelta(days=1)), not "
            f"{type(since).__name__}."
        )
    return kwargs


def _query(name: str, **kwargs: Any) -> Any:
    from orion_nb.store.reader import reader_for

    s = settings.get_settings()
    if not s.persist:
        raise ConfigurationError(
            "Run history is off (ORION_NB_PERSIST=0 or configure(persist=False)); turn it on to query runs."
        )
    kwargs = _check_filters(kwargs)
    recorder.flush()
    return reader_for(s.effective_database_url).query(name, **kwargs)


def _read(fn: Any, *, flush: bool = True, **kwargs: Any) -> Any:
    """Run the store read ``fn(engine, **kwargs)`` (a coroutine function of ``store/``).

    The one door to the history for reads that are not a DataFrame of :mod:`queries` (the
    history browser's pages, counts and chart in :mod:`orion_nb.store.browse`). ``flush``
    first writes what this process recorded, so what just ran is there; a poll that runs
    every few seconds passes ``flush=False`` (the engine flushes at the end of each flow run).
    """
    from orion_nb.store.reader import reader_for

    s = settings.get_settings()
    if not s.persist:
        raise ConfigurationError(
            "Run history is off (ORION_NB_PERSIST=0 or configure(persist=False)); turn it on to query runs."
        )
    if flush:
        recorder.flush()
    return reader_for(s.effective_database_url).run(fn, **kwargs)


def flow_runs(
    flow_name: str | None = None,
    state: str | list[str] | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    deployment: str | None = None,
    *,
    dtype_backend: str | None = None,
) -> pd.DataFrame:
    """One row per flow run, newest first.

    Runs of a deployment carry its name in the ``deployment`` column, their scheduled slot in
    ``expected_start_time`` and, for notebooks, the executed notebook in ``output_path``.

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
    deployment
        Only runs of the deployment with this name.
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
        deployment=deployment,
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
    return _query("run_tree", flow_run_id=flow_run_id)  # type: ignore[no-any-return]


def task_run_counts(flow_run_ids: list[str]) -> dict[str, int]:
    """The number of task runs of each of ``flow_run_ids`` (one grouped query)."""
    return _query("task_run_counts", flow_run_ids=list(flow_run_ids))  # type: ignore[no-any-return]
