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
from urllib.parse import quote, unquote

from orion_nb.errors import ConfigurationError

__all__ = [
    "Settings",
    "configure",
    "get_settings",
    "mask_url",
    "redact",
    "resolve_database_url",
    "sqlite_url",
]

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
    heartbeat_interval
        Seconds between heartbeats of this process's running flow runs and standalone task
        runs (written by the writer thread).
    crash_grace
        ``ORION_NB_CRASH_GRACE``: seconds without a heartbeat after which a run whose process
        cannot be checked (another host, a reused pid) is marked Crashed.
    exit_timeout
        Seconds the writer may spend writing at interpreter exit or on SIGTERM before what is
        left goes to the journal.
    max_pending_rows
        Rows kept in memory while the database cannot be written; older batches beyond it
        go to the journal under ``<home>/journal``.
    task_runner
        ``ORION_NB_TASK_RUNNER``: the task runner of flows that name none (a name such as
        ``"dask"`` or ``"processes"``, or a runner such as ``DaskTaskRunner(address=...)``);
        ``None`` means the shared thread pool.
    """

    home: Path = field(
        default_factory=lambda: (
            Path(os.environ.get("ORION_NB_HOME", "~/.orion_nb")).expanduser().absolute()
        )
    )
    database_url: str | None = field(
        default_factory=lambda: os.environ.get("ORION_NB_DATABASE_URL") or None
    )
    display: str = field(default_factory=lambda: os.environ.get("ORION_NB_DISPLAY", "auto"))
    flush_interval: float = 0.05
    persist: bool = field(
        default_factory=lambda: os.environ.get("ORION_NB_PERSIST", "1") not in ("0", "false", "no")
    )
    heartbeat_interval: float = 5.0
    crash_grace: float = field(
        default_factory=lambda: float(os.environ.get("ORION_NB_CRASH_GRACE", "60") or 60)
    )
    exit_timeout: float = 3.0
    max_pending_rows: int = 50_000
    task_runner: Any = field(default_factory=lambda: os.environ.get("ORION_NB_TASK_RUNNER") or None)

    def __post_init__(self) -> None:
        # a relative SQLite path is resolved now, against the directory of this moment
        if self.database_url:
            object.__setattr__(self, "database_url", resolve_database_url(self.database_url))

    def __repr__(self) -> str:
        # never show a password: this repr is what a notebook displays after configure()
        url = mask_url(self.database_url) if self.database_url else None
        runner = "" if self.task_runner is None else f", task_runner={self.task_runner!r}"
        return (
            f"Settings(home={str(self.home)!r}, database_url={url!r}, display={self.display!r}, "
            f"flush_interval={self.flush_interval!r}, persist={self.persist!r}, "
            f"crash_grace={self.crash_grace!r}{mask_url(runner)})"
        )

    @property
    def effective_database_url(self) -> str:
        """The database URL in use, with the SQLite default filled in."""
        if self.database_url:
            return self.database_url
        return sqlite_url(self.home / "orion.db")

    @property
    def results_dir(self) -> Path:
        """Where results persisted with ``persist_result=True`` are written."""
        return self.home / "results"

    @property
    def journal_dir(self) -> Path:
        """Where records that could not be written wait to be replayed (see reliability docs)."""
        return self.home / "journal"


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
    crash_grace: float | None = None,
    heartbeat_interval: float | None = None,
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
    crash_grace
        Seconds without a heartbeat before a run of an unreachable process is marked Crashed.
    heartbeat_interval
        Seconds between heartbeats of this process's running runs.
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
        changes["home"] = Path(home).expanduser().absolute()
    if database_url is not None:
        changes["database_url"] = resolve_database_url(database_url)
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
    for key, value in (("crash_grace", crash_grace), ("heartbeat_interval", heartbeat_interval)):
        if value is not None:
            if not value > 0:
                raise ConfigurationError(f"{key} must be a positive number of seconds.")
            changes[key] = float(value)
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


# -- URLs: resolved once, secrets never shown ----------------------------------------------------

# query-string keys whose values are secrets (asyncpg reads ``?password=``; libpq has
# ``sslpassword``; cloud drivers take tokens and keys)
_SECRET_KEYS = r"password|passwd|pwd|pass|sslpassword|secret|client_secret|token|access_token|auth_token|api_key|apikey|key|sslkey_password"
_QUERY_SECRET_RE = re.compile(rf"(?i)([?&;](?:{_SECRET_KEYS})=)([^&;#\s]*)")
_SCHEME_RE = re.compile(r"^\s*(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*:/*)(?P<rest>.*)$", re.S)
# in free text: a URL-like token with user info (scheme, any slashes, user:password@)
_TEXT_URL_RE = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*:/*[^\s:/@'\"]*:)(?P<pw>[^\s'\"]*)@")


def _mask_whole(url: str) -> str:
    """Mask a string that is meant to be one URL, however malformed.

    The user info ends at the *last* ``@`` (a password may contain ``@``, ``?``, ``/`` or a
    space, which SQLAlchemy's parser splits at the first one), and begins after the scheme's
    colon and slashes, so even the typo ``postgresql:/u:pw@h/db`` is masked.
    """
    m = _SCHEME_RE.match(url)
    if m is None:
        return _QUERY_SECRET_RE.sub(r"\1***", url)
    scheme, rest = m.group("scheme"), m.group("rest")
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _password = rest[:at].partition(":")
        if colon:
            rest = f"{user}:***{rest[at:]}"
    return scheme + _QUERY_SECRET_RE.sub(r"\1***", rest)


def url_secrets(url: str) -> list[str]:
    """The secret values in ``url`` (password and query-string secrets), as parsed two ways.

    SQLAlchemy's ``make_url`` and the last-``@`` reading can disagree on a malformed URL; both
    readings' secrets are returned so that :func:`redact` removes them from any text.
    """
    found: list[str] = []
    m = _SCHEME_RE.match(url)
    mine = None
    if m is not None:
        rest = m.group("rest")
        at = rest.rfind("@")
        if at >= 0 and ":" in rest[:at]:
            mine = rest[:at].partition(":")[2]
            found.append(mine)
        found.extend(v for _, v in _QUERY_SECRET_RE.findall(rest))
    try:
        from sqlalchemy.engine import make_url

        u = make_url(url)
        # trusted only where both readings agree (make_url splits "p@ss" at the first "@")
        if u.password and (mine is None or unquote(mine) == str(u.password)):
            found.append(str(u.password))
        for key, value in u.query.items():
            if re.fullmatch(f"(?i){_SECRET_KEYS}", key):
                found.extend([value] if isinstance(value, str) else list(value))
    except Exception:
        pass
    out: set[str] = set()
    for value in found:
        out.update({value, unquote(value), quote(value, safe="")})
    # very short values would mangle unrelated text; the structural masking covers them
    return sorted((v for v in out if len(v) >= 3 and v != "***"), key=len, reverse=True)


def mask_url(url: str) -> str:
    """Return ``url`` with its password and query-string secrets replaced by ``***``.

    Safe for logs, reprs, widgets and error messages. A well-formed URL is parsed with
    SQLAlchemy's ``make_url`` and rendered with ``hide_password=True``; then every secret
    value found by either reading (see :func:`url_secrets`) is removed from the result, so a
    password with ``?``, ``@``, ``/`` or a space, ``?password=...`` and a malformed URL such as
    ``postgresql:/u:pw@h/db`` never show.
    """
    text = str(url)
    masked = _mask_whole(text)
    try:
        from sqlalchemy.engine import make_url

        rendered = make_url(text).render_as_string(hide_password=True)
        rendered = _QUERY_SECRET_RE.sub(r"\1***", rendered)
    except Exception:
        rendered = masked
    # where the two readings disagree (a password with "@"), the last-"@" one is right
    result = rendered if _mask_whole(rendered) == rendered and rendered.count("@") <= 1 else masked
    for secret in url_secrets(text):
        result = result.replace(secret, "***")
    return result


def redact(text: str, *urls: str) -> str:
    """``text`` (an error message, a warning) without the secrets of ``urls`` or of any URL in it."""
    out = _TEXT_URL_RE.sub(lambda m: m.group("pre") + "***@", str(text))
    out = _QUERY_SECRET_RE.sub(r"\1***", out)
    for url in urls:
        for secret in url_secrets(url):
            out = out.replace(secret, "***")
    return out


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The SQLite URL of ``path``, escaped so that ``?``, ``%`` or ``#`` in it stay in the path.

    Percent-encoded as SQLAlchemy's ``URL.render_as_string`` does (a test compares them),
    without importing SQLAlchemy: the first run's writer needs none.
    """
    from urllib.parse import quote

    return "sqlite:///" + quote(os.fspath(path), safe=" +/")


def resolve_database_url(url: str) -> str:
    """Check ``url`` and make a relative SQLite path absolute, once, at configuration.

    Resolving it later would follow ``os.chdir``: reads would go to one file and writes to
    another. ``sqlite:///:memory:`` is refused: the history is written by a background thread
    and read through other connections, each of which would see its own empty database.

    Raises
    ------
    ConfigurationError
        When ``url`` is not a database URL or names an in-memory SQLite database.
    """
    from sqlalchemy.engine import make_url

    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"database_url {mask_url(str(url))!r} is not a database URL; "
            "use e.g. 'sqlite:///path/to/runs.db' or 'postgresql://user@host:5432/db'."
        )
    try:
        u = make_url(url)
    except Exception:
        raise ConfigurationError(
            f"database_url {mask_url(url)!r} cannot be parsed; use e.g. 'sqlite:///runs.db' "
            "or 'postgresql://user@host:5432/dbname' (percent-encode special characters in "
            "the password)."
        ) from None
    if u.get_backend_name() != "sqlite":
        return url
    database = u.database or ""
    if database in ("", ":memory:") or "mode=memory" in url:
        raise ConfigurationError(
            f"database_url {url!r} is an in-memory SQLite database, which orion_nb cannot use: "
            "the history is written by a background thread and read through other connections, "
            "each of which would see a separate, empty database. Use a file (a path under "
            "/dev/shm keeps it in memory), or configure(persist=False) to record nothing."
        )
    if database.startswith("file:"):
        return url
    path = Path(database).expanduser()
    if path.is_absolute() and database == str(path):
        return url
    return u.set(database=str(path.absolute())).render_as_string(hide_password=False)
