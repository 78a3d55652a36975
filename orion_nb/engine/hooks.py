"""Calling the user's state-change hooks (``on_completion``, ``on_failure``, ...).

A hook is called as Prefect calls it: ``hook(task, task_run, state)`` or
``hook(flow, flow_run, state)``. An ``async def`` hook is awaited: on the run's own loop for
async runs, on the worker's loop (or a fresh one) for sync runs. A hook that raises is logged
with the run, at ERROR, and never replaces the run's result or state: the run already ended.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from orion_nb.engine.runners import run_coroutine_in_worker
from orion_nb.errors import describe

__all__ = ["acall_hooks", "call_hooks"]

Hook = Callable[..., Any]


def call_hooks(
    hooks: Sequence[Hook], kind: str, definition: Any, run: Any, state: Any, **log: Any
) -> None:
    """Call ``hooks`` from synchronous engine code (awaiting async ones to completion)."""
    for hook in hooks:
        try:
            out = hook(definition, run, state)
            if inspect.isawaitable(out):
                run_coroutine_in_worker(_awaited(out))
        except Exception as exc:
            _report(hook, kind, definition, exc, log)


async def acall_hooks(
    hooks: Sequence[Hook], kind: str, definition: Any, run: Any, state: Any, **log: Any
) -> None:
    """Call ``hooks`` from an async run, awaiting async ones on the run's own loop."""
    for hook in hooks:
        try:
            out = hook(definition, run, state)
            if inspect.isawaitable(out):
                await out
        except Exception as exc:
            _report(hook, kind, definition, exc, log)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _report(
    hook: Hook, kind: str, definition: Any, exc: BaseException, log: dict[str, Any]
) -> None:
    from orion_nb.engine.run_logging import get_run_logger

    get_run_logger(**log).error(
        "hook %r of %s %r failed (the run's state is unchanged): %s",
        getattr(hook, "__name__", hook),
        kind,
        getattr(definition, "name", definition),
        describe(exc),
    )
