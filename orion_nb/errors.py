"""Exceptions and warnings raised by orion_nb.

Every message names the object, the problem and the likely fix. Third-party errors are
converted at the boundary (``raise OrionNBError(...) from exc``) so users catch one family.

Exception tree::

    OrionNBError
    ├── ConfigurationError          bad settings, an unusable database URL, an unreachable
    │   │                           Dask scheduler
    │   └── ScheduleError (ValueError)  an invalid cron expression, interval or time zone
    ├── MissingDependencyError (ImportError)
    │                               an optional dependency is not installed (the message
    │                               names the extra to install)
    ├── DefinitionError (TypeError, ValueError)
    │                               invalid @flow/@task options, decorating a non-callable
    ├── ParameterError (TypeError)   unknown / missing / invalid parameters, .map() mismatch
    ├── UpstreamFailedError          a task could not run because an upstream run failed
    ├── RunTimeoutError (TimeoutError)  a run exceeded ``timeout_seconds``
    ├── FailedRun                    a run failed without an exception of its own (a Failed
    │                               state returned by the user, a group of failed states)
    ├── CancelledRun                 the run was cancelled (interrupt, ``cancel()``)
    ├── CrashedRun                   the infrastructure failed while the run was in progress
    │                               (a task runner's worker died, the engine stopped)
    ├── RemoteTaskError              an exception raised on a process or Dask worker that
    │                               could not be sent back as itself (its type, message
    │                               and traceback text are kept)
    ├── MissingContextError (RuntimeError)  run context asked for outside a run
    ├── MissingResult                a state has no result to return
    ├── ExportError                  a notebook cell has no script equivalent (names the cell)
    ├── DeploymentError              no such deployment, or one that cannot be served
    └── QueryError (ValueError)      a history query got an option it cannot use

    OrionNBWarning (UserWarning)    orion_nb's own warnings (errors in its test-suite)

``describe(exc)`` names any failure in one bounded line (``Type: message``), as states and logs
show it. ``warn_in_background(message)`` issues an OrionNBWarning from a background thread (the
history writer's), logged as an error where warnings are turned into errors.
"""

from __future__ import annotations

__all__ = [
    "CancelledRun",
    "ConfigurationError",
    "CrashedRun",
    "DefinitionError",
    "DeploymentError",
    "ExportError",
    "FailedRun",
    "MissingContextError",
    "MissingDependencyError",
    "MissingResult",
    "OrionNBError",
    "OrionNBWarning",
    "ParameterError",
    "QueryError",
    "RemoteTaskError",
    "RunTimeoutError",
    "ScheduleError",
    "UpstreamFailedError",
    "describe",
    "warn_in_background",
]


class OrionNBError(Exception):
    """Base class of every error orion_nb raises on its own account."""


class ConfigurationError(OrionNBError):
    """A setting cannot be used (for example a database URL that does not connect)."""


class MissingDependencyError(OrionNBError, ImportError):
    """An optional dependency is needed and not installed (e.g. ``distributed`` for Dask)."""


class DefinitionError(OrionNBError, TypeError, ValueError):
    """A ``@flow`` / ``@task`` definition is invalid.

    It is both a ``TypeError`` and a ``ValueError``, so code written for Prefect, which raises
    either depending on the option, catches it.
    """


class ParameterError(OrionNBError, TypeError):
    """A flow or task was called with parameters that do not fit its signature."""


class UpstreamFailedError(OrionNBError):
    """A task did not run because a run it depends on did not complete."""


class RunTimeoutError(OrionNBError, TimeoutError):
    """A run took longer than its ``timeout_seconds``."""


class FailedRun(OrionNBError):
    """A run ended Failed with no exception of its own to raise (its state's message says why)."""


class CancelledRun(OrionNBError):
    """The run was cancelled before it could finish."""


class CrashedRun(OrionNBError):
    """The run crashed: the infrastructure, not the user's code, failed."""


class RemoteTaskError(OrionNBError):
    """A task raised on a worker, and its exception could not be pickled back to the kernel.

    The message starts with the original exception's type and message; the worker's
    traceback text is attached as the cause, as for every remote failure.
    """


class MissingContextError(OrionNBError, RuntimeError):
    """Run context was asked for outside a flow or task run."""


class MissingResult(OrionNBError):
    """The state holds no result (it was not kept in memory and not persisted)."""


class ScheduleError(ConfigurationError, ValueError):
    """A schedule cannot be used: an invalid cron expression, interval, anchor or time zone."""


class ExportError(OrionNBError):
    """A notebook cannot be turned into a script; the message names the cell and the fix."""


class DeploymentError(OrionNBError):
    """A deployment does not exist, or its notebook or script cannot be served."""


class QueryError(OrionNBError, ValueError):
    """A history query (``flow_runs()``, ``task_runs()``, ...) got an option it cannot use."""


class OrionNBWarning(UserWarning):
    """A warning issued by orion_nb itself."""


def warn_in_background(message: str) -> None:
    """An :class:`OrionNBWarning` from a background thread (the history writer's).

    Where warnings are turned into errors (``-W error``, pytest's ``filterwarnings``), the
    error would end the thread and leave every later flush waiting: the message is logged as
    an error instead.
    """
    import warnings

    try:
        warnings.warn(message, OrionNBWarning, stacklevel=3)
    except Exception:
        import logging

        logging.getLogger("orion_nb").error("%s", message)


def describe(exc: BaseException) -> str:
    """``Type: message`` (or just ``Type``): how a failure is named in states and logs."""
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not hide the failure itself
        text = "<message could not be shown>"
    if len(text) > _MAX_DESCRIBED:
        text = f"{text[:_MAX_DESCRIBED]}… ({len(text) - _MAX_DESCRIBED:,} more characters)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# states and logs name a failure in a sentence, not a megabyte
_MAX_DESCRIBED = 2000
