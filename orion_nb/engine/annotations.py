"""Wrappers that change how the engine treats an input: ``allow_failure``, ``unmapped``, ``quote``."""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["allow_failure", "quote", "unmapped"]

T = TypeVar("T")


class _Annotation(Generic[T]):
    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def unwrap(self) -> T:
        return self.value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class allow_failure(_Annotation[T]):
    """Wrap an input so the downstream task runs even if that upstream failed.

    The downstream receives the upstream's exception in place of its result. Wrapping a
    collection allows every future or state inside it to fail.
    """

    __slots__ = ()


class unmapped(_Annotation[T]):
    """Wrap an argument of ``.map()`` so it is passed whole to every mapped run."""

    __slots__ = ()


class quote(_Annotation[T]):
    """Pass a value as it is: the engine does not look inside it for futures or states.

    For large nested inputs (a list of a million dicts) whose scan would cost time; the
    downstream receives the value itself, so futures inside it are *not* resolved.
    """

    __slots__ = ()
