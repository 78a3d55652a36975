"""``with tags("a", "b"):`` adds tags to every task run created inside the block."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["current_tags", "tags"]

_tags: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "orion_nb_tags", default=frozenset()
)


def current_tags() -> frozenset[str]:
    return _tags.get()


@contextmanager
def tags(*names: str) -> Iterator[frozenset[str]]:
    """Add ``names`` to the tags of task runs created in this block (nests)."""
    new = _tags.get() | frozenset(names)
    token = _tags.set(new)
    try:
        yield new
    finally:
        _tags.reset(token)
