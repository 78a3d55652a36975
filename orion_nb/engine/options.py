"""Checking ``@flow`` / ``@task`` options once, at definition time, with messages that fix them.

Both decorators share the checks for what they share (retries, delays, timeouts, hooks, tags),
so a flow and a task given the same bad value say the same thing. Errors are
:class:`~orion_nb.errors.DefinitionError`, which is both a ``TypeError`` and a ``ValueError``
(Prefect raises one or the other depending on the option).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from orion_nb.errors import DefinitionError

__all__ = ["HOOK_KINDS", "check_run_options", "delay_list", "seconds"]

#: hook options per kind of run, in the order they can happen
HOOK_KINDS = {
    "task": ("on_running", "on_completion", "on_failure"),
    "flow": ("on_running", "on_completion", "on_failure", "on_crashed", "on_cancellation"),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_run_options(kind: str, name: str, opts: dict[str, Any]) -> None:
    """Raise :class:`DefinitionError` naming the first bad option of a definition."""
    for check in _CHECKS:
        problem = check(kind, opts)
        if problem is not None:
            raise DefinitionError(f"{kind.capitalize()} {name!r}: {problem}")


def _retries(kind: str, opts: dict[str, Any]) -> str | None:
    retries = opts.get("retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        return f"retries must be a whole number >= 0, not {retries!r}."
    return None


def _retry_delay(kind: str, opts: dict[str, Any]) -> str | None:
    delay = opts.get("retry_delay_seconds", 0)
    if isinstance(delay, (list, tuple)):
        if any(not _is_number(d) or d < 0 for d in delay):
            return f"retry_delay_seconds must hold numbers >= 0, not {list(delay)!r}."
        return None
    if kind == "task" and callable(delay):
        return None
    if not _is_number(delay) or delay < 0:
        what = "a number >= 0, a list of them, or a callable" if kind == "task" else "a number >= 0"
        return f"retry_delay_seconds must be {what}, not {delay!r}."
    return None


def _numbers(kind: str, opts: dict[str, Any]) -> str | None:
    jitter = opts.get("retry_jitter_factor")
    if jitter is not None and (not _is_number(jitter) or jitter < 0):
        return f"retry_jitter_factor must be a number >= 0, not {jitter!r}."
    timeout = opts.get("timeout_seconds")
    if timeout is not None and (not _is_number(timeout) or timeout <= 0):
        return f"timeout_seconds must be a positive number of seconds, not {timeout!r}."
    exp = opts.get("cache_expiration")
    if exp is not None and not isinstance(exp, timedelta) and not _is_number(exp):
        return f"cache_expiration must be a timedelta or seconds, not {type(exp).__name__}."
    return None


def _callables(kind: str, opts: dict[str, Any]) -> str | None:
    for key in ("cache_key_fn", "retry_condition_fn"):
        fn = opts.get(key)
        if fn is not None and not callable(fn):
            return (
                f"{key} must be callable (e.g. orion_nb.task_input_hash), not {type(fn).__name__}."
            )
    for key in HOOK_KINDS[kind]:
        hooks = opts.get(key)
        if hooks is not None and (
            not isinstance(hooks, (list, tuple)) or not all(callable(h) for h in hooks)
        ):
            return f"{key} must be a list of callables, not {hooks!r}."
    return None


def _flags_and_names(kind: str, opts: dict[str, Any]) -> str | None:
    for key in ("log_prints", "persist_result", "refresh_cache", "validate_parameters"):
        value = opts.get(key)
        if value is not None and not isinstance(value, bool):
            return f"{key} must be True or False, not {value!r}."
    tags = opts.get("tags")
    if tags is not None and (
        isinstance(tags, (str, bytes)) or not all(isinstance(t, str) and t for t in tags)
    ):
        return f"tags must be a list of non-empty strings, not {tags!r}."
    name = opts.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        return f"name must be a non-empty string, not {name!r}."
    return None


_CHECKS = (_retries, _retry_delay, _numbers, _callables, _flags_and_names)


def seconds(value: timedelta | float | None) -> float | None:
    """A timedelta or a number of seconds as seconds."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return None if value is None else float(value)


def delay_list(
    delay: float | list[float] | Callable[[int], Iterable[float]], retries: int
) -> float | list[float]:
    """``retry_delay_seconds`` as the rules read it (a callable is asked once, for ``retries``)."""
    if callable(delay):
        return [float(d) for d in delay(retries)]
    if isinstance(delay, (list, tuple)):
        return [float(d) for d in delay]
    return float(delay)
