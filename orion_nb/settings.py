"""One place for configuration: environment variables, defaults and ``configure()``.

Settings are read lazily from the environment the first time they are needed and can be
overridden in-process with :func:`configure`. Nothing here touches the database.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orion_nb.errors import ConfigurationError

__all__ = ["Settings", "configure", "get_settings", "mask_url"]

_DISPLAY_MODES = ("auto", "widget", "text", "none")
# the names orion_nb.engine.runners.resolve_task_runner accepts (a test keeps them in step)
_RUNNER_NAMES = ("threads", "thread", "sequential", "processes", "process", "dask")


@dataclass(frozen=True)
class Settings:
    """The effective configuration of this process.

    Attributes
    ----------
    home
        ``ORION_NB_HOME``: where the default SQLite database and persisted results live.
    database_url
        ``ORION_NB_DATABASE_URL``: an SQLAlchemy URL; ``None`` means ``sqlite:///<home>/orion.db``.
    display
        ``ORION_NB_DISPLAY``: ``auto`` (widget in a notebook, text elsewhere), ``widget``,
        ``text`` or ``none``.
    flush_interval
        Seconds the background writer waits to batch records before writing them.
    persist
        ``ORION_NB_PERSIST``: record runs at all (``0`` disables the store, e.g. for debugging).
    task_runner
        ``ORION_NB_TASK_RUNNER``: the task runner of flows that name none (a name such as
        ``"dask"`` or ``"processes"``, or a runner such as ``DaskTaskRunner(address=...)``);
        ``None`` means the shared thread pool.
    """

    home: Path = field(
        default_factory=lambda: Path(os.environ.get("ORION_NB_HOME", "~/.orion_nb")).expanduser()
    )
    database_url: str | None = field(
        default_factory=lambda: os.environ.get("ORION_NB_DATABASE_URL") or None
    )
    display: str = field(default_factory=lambda: os.environ.get("ORION_NB_DISPLAY", "auto"))
    flush_interval: float = 0.05
    persist: bool = field(
        default_factory=lambda: os.environ.get("ORION_NB_PERSIST", "1") not in ("0", "false", "no")
    )
    task_runner: Any = field(default_factory=lambda: os.environ.get("ORION_NB_TASK_RUNNER") or None)

    def __repr__(self) -> str:
        # never show a password: this repr is what a notebook displays after configure()
        url = mask_url(self.database_url) if self.database_url else None
        runner = "" if self.task_runner is None else f", task_runner={self.task_runner!r}"
        return (
            f"Settings(home={str(self.home)!r}, database_url={url!r}, display={self.display!r}, "
            f"flush_interval={self.flush_interval!r}, persist={self.persist!r}{mask_url(runner)})"
        )

    @property
    def effective_database_url(self) -> str:
        """The database URL in use, with the SQLite default filled in."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'orion.db'}"

    @property
    def results_dir(self) -> Path:
        """Where results persisted with ``persist_result=True`` are written."""
        return self.home / "results"


_lock = threading.Lock()
_settings: Settings | None = None
_listeners: list[Any] = []


def get_settings() -> Settings:
    """Return the current settings, reading the environment on first use."""
    global _settings
    s = _settings
    if s is None:
        with _lock:
            if _settings is None:
                _settings = Settings()
            s = _settings
    return s


def configure(
    *,
    database_url: str | None = None,
    home: str | os.PathLike[str] | None = None,
    display: str | None = None,
    flush_interval: float | None = None,
    persist: bool | None = None,
    task_runner: Any = None,
) -> Settings:
    """Change orion_nb's configuration for this process.

    Parameters
    ----------
    database_url
        SQLAlchemy URL of the history database, e.g. ``sqlite:///runs.db`` or
        ``postgresql://user@host/db``. Takes effect for the next run; records already
        queued are written to the previous database first.
    home
        Directory for the default database and persisted results.
    display
        ``"auto"``, ``"widget"``, ``"text"`` or ``"none"``: how running flows are shown.
    flush_interval
        Seconds between background writes (batching window).
    persist
        ``False`` turns recording off entirely.
    task_runner
        The task runner of every flow that names none: ``"threads"`` (the default),
        ``"sequential"``, ``"processes"``, ``"dask"``, or a runner such as
        ``DaskTaskRunner(address="tcp://scheduler:8786")``.

    Returns
    -------
    Settings
        The new effective settings.
    """
    global _settings
    current = get_settings()
    changes: dict[str, Any] = {}
    if home is not None:
        changes["home"] = Path(home).expanduser()
    if database_url is not None:
        if not isinstance(database_url, str) or "://" not in database_url:
            raise ConfigurationError(
                f"database_url {mask_url(str(database_url))!r} is not a database URL; "
                "use e.g. 'sqlite:///path/to/runs.db' or 'postgresql://user@host:5432/db'."
            )
        changes["database_url"] = database_url
    if display is not None:
        if display not in _DISPLAY_MODES:
            raise ConfigurationError(
                f"display={display!r} is not a display mode; use one of {', '.join(map(repr, _DISPLAY_MODES))}."
            )
        changes["display"] = display
    if flush_interval is not None:
        if flush_interval < 0:
            raise ConfigurationError("flush_interval must be >= 0 seconds.")
        changes["flush_interval"] = float(flush_interval)
    if persist is not None:
        changes["persist"] = bool(persist)
    if task_runner is not None:
        changes["task_runner"] = _check_runner(task_runner)
    with _lock:
        old = current
        _settings = replace(current, **changes)
        new = _settings
    for listener in list(_listeners):
        listener(old, new)
    return new


def _check_runner(value: Any) -> Any:
    if isinstance(value, str):
        if value.lower() not in _RUNNER_NAMES:
            raise ConfigurationError(
                f"task_runner={value!r} is not a task runner name; use 'threads', 'sequential', "
                "'processes' or 'dask', or a runner such as DaskTaskRunner(address=...)."
            )
        return value.lower()
    if callable(getattr(value, "open", None)) and callable(getattr(value, "submit", None)):
        return value  # a TaskRunner or TaskRunner class (checked by duck type: no engine here)
    raise ConfigurationError(
        f"task_runner must be a runner name or a TaskRunner such as DaskTaskRunner(...), not "
        f"{type(value).__name__}."
    )


def on_change(listener: Any) -> None:
    """Register ``listener(old, new)`` to be called after :func:`configure` (used by the store)."""
    _listeners.append(listener)


_URL_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<rest>\S*)")


def _mask_rest(rest: str) -> str:
    # the user info ends at the last "@" before any query string (a password may contain "@")
    head, sep, query = rest.partition("?")
    at = head.rfind("@")
    if at < 0:
        return rest
    user, colon, _password = head[:at].partition(":")
    if not colon:
        return rest
    return f"{user}:***{head[at:]}{sep}{query}"


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe for logs, reprs, widgets)."""
    return _URL_RE.sub(lambda m: m.group("scheme") + _mask_rest(m.group("rest")), url)
