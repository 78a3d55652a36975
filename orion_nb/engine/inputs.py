"""Finding upstream runs in a call's arguments, and resolving them to values.

Futures, states and results of earlier task runs may be passed directly or nested in lists,
tuples, sets and dicts. Each one becomes an edge in ``task_run_inputs``. ``allow_failure(x)``
marks an input whose failure must not stop the downstream run; ``unmapped(x)`` keeps an
iterable whole in ``.map()``.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from orion_nb.engine.context import fingerprint
from orion_nb.engine.futures import TaskFuture
from orion_nb.orchestration.states import State

__all__ = ["Upstream", "allow_failure", "find_upstream", "resolve", "unmapped"]

T = TypeVar("T")

# types whose identity says nothing (small ints and strings are shared by the interpreter)
_PLAIN = frozenset({type(None), bool, int, float, str, bytes, complex})


class allow_failure(Generic[T]):
    """Wrap an input so the downstream task runs even if that upstream failed.

    The downstream receives the upstream's exception in place of its result.
    """

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"allow_failure({self.value!r})"


class unmapped(Generic[T]):
    """Wrap an argument of ``.map()`` so it is passed whole to every mapped run."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"unmapped({self.value!r})"


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

    def current_state(self) -> State | None:
        if self.future is not None:
            return self.future.state
        return self.state


def find_upstream(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    positional: list[str],
    result_ids: dict[int, tuple[str, type, Any]] | None,
    wait_for: Any = None,
) -> list[Upstream]:
    """All upstream runs referenced by a call (cheap when there are none)."""
    found: list[Upstream] = []
    for i, value in enumerate(args):
        if type(value) not in _PLAIN:
            _scan(
                value,
                positional[i] if i < len(positional) else f"args[{i}]",
                found,
                result_ids,
                False,
                0,
            )
    for key, value in kwargs.items():
        if type(value) not in _PLAIN:
            _scan(value, key, found, result_ids, False, 0)
    if wait_for is not None:
        for value in wait_for if isinstance(wait_for, (list, tuple, set)) else [wait_for]:
            _scan(value, "wait_for", found, result_ids, False, 0)
    return found


def _scan(
    value: Any,
    param: str,
    found: list[Upstream],
    ids: dict[int, tuple[str, type, Any]] | None,
    allowed: bool,
    depth: int,
) -> None:
    t = type(value)
    if t is TaskFuture:
        found.append(Upstream(param, value.run.id, value.run.name, future=value, allowed=allowed))
    elif t is State:
        if value.run_id is not None:
            found.append(
                Upstream(param, value.run_id, value.run_id[-8:], state=value, allowed=allowed)
            )
    elif t is allow_failure:
        _scan(value.value, param, found, ids, True, depth)
    elif t is unmapped:
        _scan(value.value, param, found, ids, allowed, depth)
    elif t in _PLAIN:
        return
    else:
        if ids:
            hit = ids.get(id(value))
            if hit is not None and hit[1] is t and (hit[2] is None or hit[2] == fingerprint(value)):
                found.append(Upstream(param, hit[0], hit[0][-8:], allowed=allowed))
                return
        if depth < 4:
            if t is list or t is tuple or t is set or t is frozenset:
                if len(value) <= 10_000:
                    for item in value:
                        if type(item) not in _PLAIN:
                            _scan(item, param, found, ids, allowed, depth + 1)
            elif t is dict and len(value) <= 10_000:
                for item in value.values():
                    if type(item) not in _PLAIN:
                        _scan(item, param, found, ids, allowed, depth + 1)


def resolve(value: Any, depth: int = 0) -> Any:
    """Replace futures and states (also nested) by their results.

    A failed input raises its exception unless it was wrapped in ``allow_failure``, in which
    case the exception object is passed instead.
    """
    t = type(value)
    if t in _PLAIN:
        return value
    if t is TaskFuture:
        return value.result()
    if t is State:
        return value.result()
    if t is allow_failure:
        inner = value.value
        if type(inner) is TaskFuture:
            return inner.result(raise_on_failure=False)
        if type(inner) is State:
            return inner.result(raise_on_failure=False)
        return resolve(inner, depth)
    if t is unmapped:
        return resolve(value.value, depth)
    if depth < 4:
        if t is list:
            return [resolve(v, depth + 1) for v in value] if _has_futures(value) else value
        if t is tuple:
            return tuple(resolve(v, depth + 1) for v in value) if _has_futures(value) else value
        if t is dict:
            return (
                {k: resolve(v, depth + 1) for k, v in value.items()}
                if _has_futures(value.values())
                else value
            )
        if t is set:
            return {resolve(v, depth + 1) for v in value} if _has_futures(value) else value
    return value


_WRAPPERS = (TaskFuture, State, allow_failure, unmapped)


def _has_futures(values: Any) -> bool:
    for v in values:
        t = type(v)
        if t in _PLAIN:
            continue
        if t in _WRAPPERS or t is list or t is tuple or t is dict or t is set:
            return True
    return False


def resolve_call(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if args and _has_futures(args):
        args = tuple(resolve(a) for a in args)
    if kwargs and _has_futures(kwargs.values()):
        kwargs = {k: resolve(v) for k, v in kwargs.items()}
    return args, kwargs
