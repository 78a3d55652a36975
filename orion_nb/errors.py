"""Exceptions and warnings raised by orion_nb.

Every message names the object, the problem and the likely fix. Third-party errors are
converted at the boundary (``raise OrionNBError(...) from exc``) so users catch one family.

Exception tree::

    OrionNBError
    ├── ConfigurationError          bad settings, an unusable database URL
    ├── DefinitionError (TypeError)  invalid @flow/@task options, decorating a non-callable
    ├── ParameterError (TypeError)   unknown / missing parameters, .map() length mismatch
    ├── UpstreamFailedError          a task could not run because an upstream run failed
    ├── RunTimeoutError (TimeoutError)  a run exceeded ``timeout_seconds``
    ├── CancelledRun                 the run was cancelled (interrupt, ``cancel()``)
    ├── CrashedRun                   the infrastructure failed while the run was in progress
    ├── MissingResult                a state has no result to return
    └── QueryError (ValueError)      a history query got an option it cannot use

    OrionNBWarning (UserWarning)    orion_nb's own warnings (errors in its test-suite)
"""

from __future__ import annotations

__all__ = [
    "CancelledRun",
    "ConfigurationError",
    "CrashedRun",
    "DefinitionError",
    "MissingResult",
    "OrionNBError",
    "OrionNBWarning",
    "ParameterError",
    "QueryError",
    "RunTimeoutError",
    "UpstreamFailedError",
]


class OrionNBError(Exception):
    """Base class of every error orion_nb raises on its own account."""


class ConfigurationError(OrionNBError):
    """A setting cannot be used (for example a database URL that does not connect)."""


class DefinitionError(OrionNBError, TypeError):
    """A ``@flow`` / ``@task`` definition is invalid."""


class ParameterError(OrionNBError, TypeError):
    """A flow or task was called with parameters that do not fit its signature."""


class UpstreamFailedError(OrionNBError):
    """A task did not run because a run it depends on did not complete."""


class RunTimeoutError(OrionNBError, TimeoutError):
    """A run took longer than its ``timeout_seconds``."""


class CancelledRun(OrionNBError):
    """The run was cancelled before it could finish."""


class CrashedRun(OrionNBError):
    """The run crashed: the infrastructure, not the user's code, failed."""


class MissingResult(OrionNBError):
    """The state holds no result (it was not kept in memory and not persisted)."""


class QueryError(OrionNBError, ValueError):
    """A history query (``flow_runs()``, ``task_runs()``, ...) got an option it cannot use."""


class OrionNBWarning(UserWarning):
    """A warning issued by orion_nb itself."""
