"""Loggers bound to the current run, and ``log_prints``.

``get_run_logger()`` returns a logger whose records carry the current flow and task run; a
handler queues them for the store (and live views) and a console handler prints them, as
Prefect users expect. ``log_prints=True`` makes ``print`` inside a run also log at INFO: the
builtin is wrapped once, on first use, and the wrapper does nothing unless the current run
asked for it.

On a process-pool or Dask worker the records of an attempt are not written there: while
:data:`capture` holds a list for the worker thread, the record handler appends each record's
fields to it, and the kernel hands them to :func:`replay` when the attempt's outcome comes
back. They are then stored, shown live and printed exactly as if logged in the kernel, with
the worker's timestamps.
"""

from __future__ import annotations

import builtins
import logging
import sys
import threading
from typing import Any

from orion_nb._events import log_event
from orion_nb.engine import recorder
from orion_nb.engine.context import current_flow_run, current_task_run

__all__ = ["capture", "get_run_logger", "install_print_hook", "replay"]

_LOGGER_NAME = "orion_nb.runs"

#: ``capture.records`` (a list) while a worker thread runs an attempt for a remote kernel
capture = threading.local()

#: a captured record: level name, level number, created (epoch s), message, flow run id,
#: task run id, run name, quiet (printed already, e.g. a ``log_prints`` print)
CapturedRecord = tuple[str, int, float, str, Any, Any, str, bool]


class _RunLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


class _RecordHandler(logging.Handler):
    """Queues run log records for the store and the live view of the flow."""

    def emit(self, record: logging.LogRecord) -> None:
        flow_run_id = getattr(record, "flow_run_id", None)
        task_run_id = getattr(record, "task_run_id", None)
        if flow_run_id is None and task_run_id is None:
            return
        try:
            msg = record.getMessage()
        except Exception:  # pragma: no cover - malformed user format
            msg = str(record.msg)
        captured = getattr(capture, "records", None)
        if captured is not None:  # on a worker: shipped back with the attempt's outcome
            captured.append(
                (
                    record.levelname,
                    record.levelno,
                    record.created,
                    msg,
                    flow_run_id,
                    task_run_id,
                    getattr(record, "run_name", ""),
                    bool(getattr(record, "orion_quiet", False)),
                )
            )
            return
        ev = log_event(
            flow_run_id,
            task_run_id,
            record.levelname,
            record.created,
            msg,
            getattr(record, "run_name", ""),
        )
        recorder.emit(ev)
        view = getattr(record, "orion_view", None)
        if view is not None:
            view.on_event(ev)


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # a live widget shows the logs itself; don't print them twice. Records also reach the
        # root logger's handlers (pytest's caplog, logging.basicConfig, the user's own): when
        # the root has a handler, it prints them, so this console stays quiet
        if getattr(record, "orion_quiet", False):
            return False
        if getattr(capture, "records", None) is not None:
            return False  # a worker's record: the kernel prints it when it replays it
        return not logging.getLogger().handlers


_setup_lock = threading.Lock()
_logger: logging.Logger | None = None


def _base_logger() -> logging.Logger:
    global _logger
    if _logger is None:
        with _setup_lock:
            if _logger is None:
                lg = logging.getLogger(_LOGGER_NAME)
                lg.setLevel(logging.INFO)
                lg.propagate = True  # users' handlers and pytest's caplog see run logs too
                lg.addHandler(_RecordHandler())
                console = logging.StreamHandler(sys.stderr)
                console.setFormatter(
                    logging.Formatter(
                        "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(run_name)s - %(message)s",
                        "%H:%M:%S",
                    )
                )
                console.addFilter(_ConsoleFilter())
                lg.addHandler(console)
                _logger = lg
    return _logger


def get_run_logger(**extra: Any) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """A logger for the current flow or task run; records are stored with the run.

    Outside any run, a plain logger that is not recorded is returned.
    """
    lg = _base_logger()
    task = current_task_run()
    flow = current_flow_run() if task is None else task.flow_run
    root = flow
    while root is not None and root.parent is not None:
        root = root.parent
    view = root.view if root is not None else None
    fields: dict[str, Any] = {
        "flow_run_id": flow.run_id if flow else None,
        "task_run_id": task.run.id if task else None,
        "run_name": task.run.name if task else (flow.name if flow else "orion_nb"),
        "orion_view": view,
        "orion_quiet": bool(view is not None and getattr(view, "shows_logs", False)),
    }
    fields.update(extra)
    return _RunLoggerAdapter(lg, fields)


def replay(records: list[CapturedRecord], view: Any) -> None:
    """Handle records captured on a worker as if they were logged in this process.

    They reach the store, the live ``view`` of their flow run, the console and the user's
    own handlers (``caplog`` too), keeping the time they were made on the worker.
    """
    lg = _base_logger()
    shows = bool(view is not None and getattr(view, "shows_logs", False))
    for level, levelno, created, msg, flow_run_id, task_run_id, run_name, quiet in records:
        rec = logging.LogRecord(_LOGGER_NAME, levelno, "", 0, msg, None, None)
        rec.levelname = level
        rec.created = created
        rec.msecs = (created - int(created)) * 1000
        rec.flow_run_id = flow_run_id
        rec.task_run_id = task_run_id
        rec.run_name = run_name
        rec.orion_view = view
        rec.orion_quiet = quiet or shows
        lg.handle(rec)


_original_print = builtins.print
_hook_installed = False


def _print(*args: Any, **kwargs: Any) -> None:
    _original_print(*args, **kwargs)
    if kwargs.get("file") not in (None, sys.stdout):
        return
    task = current_task_run()
    wants = task.log_prints if task is not None else None
    if wants is None:
        flow = current_flow_run()
        wants = flow.log_prints if flow is not None else False
    if not wants:
        return
    sep = kwargs.get("sep", " ")
    text = (" " if sep is None else sep).join(str(a) for a in args)
    logger = get_run_logger(orion_quiet=True)
    logger.info(text)


def install_print_hook() -> None:
    """Wrap ``builtins.print`` (once) so that runs with ``log_prints=True`` log their prints."""
    global _hook_installed
    if not _hook_installed:
        _hook_installed = True
        builtins.print = _print
