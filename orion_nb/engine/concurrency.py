"""Tag-based concurrency limits, shared by all threads of the process.

``set_concurrency_limit("db", 2)`` lets at most two task runs tagged ``db`` be RUNNING at once.
The engine tries to take the slots of a run's tags; when one is full, the ConcurrencyLimits
rule answers WAIT and the engine blocks until a slot frees.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from orion_nb.errors import ConfigurationError

__all__ = ["acquire", "limits", "release", "set_concurrency_limit", "try_acquire"]

_cond = threading.Condition()
_limits: dict[str, int] = {}
_in_use: dict[str, int] = {}


def set_concurrency_limit(tag: str, limit: int | None) -> None:
    """Allow at most ``limit`` concurrently running task runs tagged ``tag`` (``None`` removes it)."""
    if not isinstance(tag, str) or not tag:
        raise ConfigurationError("set_concurrency_limit needs a non-empty tag name.")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ConfigurationError(
            f"Concurrency limit for tag {tag!r} must be a whole number >= 0 (or None to remove it), not {limit!r}."
        )
    with _cond:
        if limit is None:
            _limits.pop(tag, None)
        else:
            _limits[tag] = limit
        _cond.notify_all()


def limits() -> dict[str, tuple[int, int]]:
    """``{tag: (in_use, limit)}`` for every limited tag."""
    with _cond:
        return {t: (_in_use.get(t, 0), n) for t, n in _limits.items()}


def _limited(tags: Iterable[str]) -> list[str]:
    return [t for t in tags if t in _limits]


def try_acquire(tags: Iterable[str]) -> tuple[list[str], tuple[str, int, int] | None]:
    """Take a slot of every limited tag, or none: returns (taken, blocked)."""
    if not _limits:
        return [], None
    with _cond:
        limited = _limited(tags)
        for t in limited:
            if _in_use.get(t, 0) >= _limits[t]:
                return [], (t, _in_use.get(t, 0), _limits[t])
        for t in limited:
            _in_use[t] = _in_use.get(t, 0) + 1
        return limited, None


def acquire(tags: Iterable[str], is_cancelled: object = None) -> list[str]:
    """Block until a slot of every limited tag is free, then take them."""
    tags = list(tags)
    with _cond:
        while True:
            limited = _limited(tags)
            if all(_in_use.get(t, 0) < _limits[t] for t in limited):
                for t in limited:
                    _in_use[t] = _in_use.get(t, 0) + 1
                return limited
            _cond.wait(0.5)
            if callable(is_cancelled) and is_cancelled():
                return []


def release(taken: Iterable[str]) -> None:
    with _cond:
        for t in taken:
            _in_use[t] = max(0, _in_use.get(t, 0) - 1)
        _cond.notify_all()
