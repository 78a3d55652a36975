"""A call's upstream runs, and resolving its inputs to values.

Futures, states and results of earlier task runs may be passed directly or nested in any
container the walker enters (:mod:`orion_nb.engine.walk`). Each one becomes an edge in
``task_run_inputs``, the downstream run waits for it, and the function receives its result.
``allow_failure(x)`` marks an input whose failure must not stop the downstream run (it gets
the exception instead); ``unmapped(x)`` keeps an iterable whole in ``.map()``.
"""

from __future__ import annotations

from typing import Any

from orion_nb.engine.annotations import allow_failure, unmapped
from orion_nb.engine.context import fingerprint
from orion_nb.engine.futures import FutureList, TaskFuture
from orion_nb.engine.walk import KEEP, PLAIN_TYPES, scan, transform
from orion_nb.orchestration.rules import UpstreamInput
from orion_nb.orchestration.states import Completed, State

__all__ = [
    "Upstream",
    "allow_failure",
    "find_upstream",
    "resolve",
    "resolve_call",
    "states_of",
    "unmapped",
]

ResultIds = dict[int, tuple[str, type, Any]]


class Upstream:
    """One upstream input: the parameter it feeds, the run, and what to wait on."""

    __slots__ = ("allowed", "future", "name", "parameter", "run_id", "state")

    def __init__(
        self,
        parameter: str,
        run_id: str,
        name: str,
        *,
        future: TaskFuture[Any] | None = None,
        state: State | None = None,
        allowed: bool = False,
    ) -> None:
        self.parameter = parameter
        self.run_id = run_id
        self.name = name
        self.future = future
        self.state = state
        self.allowed = allowed

    def as_input(self) -> UpstreamInput:
        """What the UpstreamFailed rule sees.

        An upstream known only from a plain result it returned completed: a failed run has
        no result to pass on.
        """
        if self.future is not None:
            state = self.future.state
        else:
            state = self.state if self.state is not None else Completed()
        return UpstreamInput(self.name, state, self.allowed)


def find_upstream(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    positional: list[str],
    result_ids: ResultIds | None,
    wait_for: Any = None,
) -> list[Upstream]:
    """All upstream runs referenced by a call (one set lookup per scalar argument)."""
    found: list[Upstream] = []
    for i, value in enumerate(args):
        if type(value) not in PLAIN_TYPES:
            param = positional[i] if i < len(positional) else f"args[{i}]"
            scan(value, _visitor(param, found, result_ids))
    for key, value in kwargs.items():
        if type(value) not in PLAIN_TYPES:
            scan(value, _visitor(key, found, result_ids))
    if wait_for is not None:
        waits = wait_for if isinstance(wait_for, (list, tuple, set, frozenset)) else [wait_for]
        visit = _visitor("wait_for", found, result_ids)
        for value in waits:
            scan(value, visit)
    return found


def _visitor(param: str, found: list[Upstream], ids: ResultIds | None) -> Any:
    def visit(value: Any, allowed: bool) -> bool:
        t = type(value)
        if t is TaskFuture:
            run = value.run
            found.append(Upstream(param, run.id, run.name, future=value, allowed=allowed))
            return True
        if t is State:
            if value.run_id is not None:
                found.append(
                    Upstream(param, value.run_id, value.run_id[-8:], state=value, allowed=allowed)
                )
            return True
        if ids:
            hit = ids.get(id(value))
            if hit is not None and hit[1] is t and (hit[2] is None or hit[2] == fingerprint(value)):
                found.append(Upstream(param, hit[0], hit[0][-8:], allowed=allowed))
                return True
        return False

    return visit


def _resolve_leaf(value: Any, allowed: bool) -> Any:
    t = type(value)
    if t is TaskFuture:
        return value.result(raise_on_failure=not allowed)
    if t is State:
        return value.result(raise_on_failure=not allowed)
    return KEEP


def resolve(value: Any) -> Any:
    """``value`` with futures and states (also nested) replaced by their results.

    A failed input raises its exception unless it was wrapped in ``allow_failure``, in which
    case the exception object is passed instead.
    """
    if type(value) in PLAIN_TYPES:
        return value
    return transform(value, _resolve_leaf)


def resolve_call(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A call's arguments with every future and state resolved (see :func:`resolve`)."""
    if args:
        args = tuple(resolve(a) for a in args)
    if kwargs:
        kwargs = {k: resolve(v) for k, v in kwargs.items()}
    return args, kwargs


def _state_leaf(value: Any, allowed: bool) -> Any:
    if type(value) is TaskFuture:
        value.wait()
        return value.state
    return KEEP


def states_of(value: Any) -> Any:
    """``value`` with every future (also nested) waited for and replaced by its final state.

    What a run's return value becomes before its final state is judged
    (:func:`orion_nb.orchestration.final_state.state_from_return`).
    """
    if type(value) in PLAIN_TYPES:
        return value
    if type(value) is FutureList:
        return [_state_leaf(f, False) for f in value]
    return transform(value, _state_leaf)
