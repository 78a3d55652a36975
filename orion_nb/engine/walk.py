"""The one walker: which containers the engine looks into, and how it rebuilds them.

Futures and states reach the engine inside user data: in lists, tuples, sets, dict values,
``FutureList``, namedtuples, dataclass fields, pydantic model fields, nested in any mix. Every
decision about *which* containers are looked into is made here, once, and used by everything
that needs it: finding a call's upstream runs, resolving its inputs to values, and turning the
futures in a run's return value into states. (Five walkers with five sets of rules were how
``.map()`` results became invisible: a ``FutureList`` is a ``list`` subclass that exact type
checks missed.)

Rules
-----
- Containers: ``list``, ``tuple``, ``set``, ``frozenset`` and their subclasses (``FutureList``,
  namedtuples), ``dict`` and its subclasses (values only: keys are left alone), dataclass
  instances (their fields) and pydantic models (their fields). Nothing else is entered: a
  DataFrame or a user object holding a future in an attribute is passed as it is.
- No depth limit, so nothing nested is silently missed; a container that contains itself is
  entered once (a cycle is left pointing at the original).
- ``allow_failure(x)`` marks everything inside ``x`` as allowed to fail; ``unmapped(x)`` is
  transparent; ``quote(x)`` stops the walk (``x`` is passed unchanged).
- Rebuilt containers keep their type where they can: a namedtuple stays that namedtuple, a
  ``defaultdict`` keeps its factory, a frozen dataclass is copied field by field, a pydantic
  model through ``model_copy``. A ``FutureList`` of resolved values becomes a plain ``list``.
  Only containers on a path to something replaced are rebuilt; untouched data keeps its
  identity.

Cost: the engine calls :func:`is_plain` first, so a scalar argument costs one set lookup; a flat
list of scalars is checked at C speed (``map(type, ...)``) before any Python-level loop.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

from orion_nb.engine.annotations import allow_failure, quote, unmapped

__all__ = ["KEEP", "PLAIN_TYPES", "is_plain", "scan", "transform"]

#: types whose values never hold futures (and whose identity says nothing)
PLAIN_TYPES = frozenset({type(None), bool, int, float, str, bytes, complex})
_plain_superset = PLAIN_TYPES.issuperset


class _Keep:
    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEP"


#: returned by a :func:`transform` callback: leave this node as it is (and look inside it)
KEEP: Any = _Keep()

Visit = Callable[[Any, bool], bool]
Leaf = Callable[[Any, bool], Any]


def is_plain(value: Any) -> bool:
    return type(value) in PLAIN_TYPES


def _children(value: Any) -> list[tuple[Any, Any]] | None:
    """``(key, child)`` pairs of a container the walker enters, else ``None``."""
    if isinstance(value, (list, tuple)):
        if _plain_superset(map(type, value)):
            return []
        return list(enumerate(value))
    if isinstance(value, (set, frozenset)):
        if _plain_superset(map(type, value)):
            return []
        return list(enumerate(value))
    if isinstance(value, dict):
        if _plain_superset(map(type, value.values())):
            return []
        return list(value.items())
    t = type(value)
    if hasattr(t, "__dataclass_fields__") and not isinstance(value, type):
        return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    fields = getattr(t, "model_fields", None)
    if isinstance(fields, dict) and hasattr(value, "model_copy"):
        return [(name, getattr(value, name)) for name in fields]
    return None


def scan(value: Any, visit: Visit, allowed: bool = False) -> None:
    """Call ``visit(node, allowed)`` for every non-plain node, depth first.

    ``visit`` returns True when it consumed the node (the walker then does not look inside).
    Annotations are unwrapped before ``visit`` sees anything.
    """
    _scan(value, visit, allowed, set())


def _scan(value: Any, visit: Visit, allowed: bool, seen: set[int]) -> None:
    t = type(value)
    if t in PLAIN_TYPES:
        return
    if t is allow_failure:
        _scan(value.value, visit, True, seen)
        return
    if t is unmapped:
        _scan(value.value, visit, allowed, seen)
        return
    if t is quote:
        return
    if visit(value, allowed):
        return
    children = _children(value)
    key = id(value)
    if not children or key in seen:
        return
    seen.add(key)
    try:
        for _, child in children:
            if type(child) not in PLAIN_TYPES:
                _scan(child, visit, allowed, seen)
    finally:
        seen.discard(key)


def transform(value: Any, leaf: Leaf, allowed: bool = False) -> Any:
    """``value`` with every node for which ``leaf(node, allowed)`` is not :data:`KEEP` replaced.

    Containers on the way are rebuilt (see the module docstring); everything else keeps its
    identity. Annotations are unwrapped (``quote(x)`` gives ``x`` untouched).

    Raises
    ------
    TypeError
        When a container cannot hold what its members were replaced by (an unhashable result
        in a set); the message names the container.
    """
    return _transform(value, leaf, allowed, set())


def _transform(value: Any, leaf: Leaf, allowed: bool, seen: set[int]) -> Any:
    t = type(value)
    if t in PLAIN_TYPES:
        return value
    if t is allow_failure:
        return _transform(value.value, leaf, True, seen)
    if t is unmapped:
        return _transform(value.value, leaf, allowed, seen)
    if t is quote:
        return value.value
    out = leaf(value, allowed)
    if out is not KEEP:
        return out
    children = _children(value)
    if not children or id(value) in seen:
        return value
    changes = _changed_children(value, children, leaf, allowed, seen)
    return _rebuild(value, children, changes) if changes else value


def _changed_children(
    value: Any, children: list[tuple[Any, Any]], leaf: Leaf, allowed: bool, seen: set[int]
) -> dict[Any, Any]:
    key = id(value)
    seen.add(key)
    try:
        changes: dict[Any, Any] = {}
        for k, child in children:
            if type(child) not in PLAIN_TYPES:
                new = _transform(child, leaf, allowed, seen)
                if new is not child:
                    changes[k] = new
        return changes
    finally:
        seen.discard(key)


def _rebuild(value: Any, children: list[tuple[Any, Any]], changes: dict[Any, Any]) -> Any:
    t = type(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [changes.get(k, v) for k, v in children]
        return _sequence(value, t, items)
    if isinstance(value, dict):
        new = copy.copy(value)  # keeps OrderedDict order, defaultdict's factory, Counter
        for k, v in changes.items():
            new[k] = v
        return new
    if hasattr(t, "__dataclass_fields__"):
        new = copy.copy(value)
        for k, v in changes.items():
            object.__setattr__(new, k, v)  # also for frozen dataclasses
        return new
    return value.model_copy(update=changes)


def _sequence(value: Any, t: type, items: list[Any]) -> Any:
    from orion_nb.engine.futures import FutureList

    if t is list or t is FutureList:
        return items
    if t is tuple:
        return tuple(items)
    if isinstance(value, (set, frozenset)):
        try:
            return (frozenset if isinstance(value, frozenset) else set)(items)
        except TypeError as exc:
            raise TypeError(
                f"A {t.__name__} input holds futures whose results cannot go in a "
                f"{t.__name__} ({exc}); pass a list instead."
            ) from None
    if isinstance(value, tuple) and hasattr(t, "_fields"):
        return t(*items)  # a namedtuple
    try:
        return t(items)
    except Exception:  # a subclass whose constructor takes something else
        return list(items) if isinstance(value, list) else tuple(items)
