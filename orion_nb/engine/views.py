"""How the engine shows a flow run while it runs, without knowing who draws it.

The engine reports every event of a top-level flow run to a *view*: anything with
``shows_logs``, ``on_event(ev)`` and ``close()`` (:class:`RunView`). Which view a run gets is
decided by the *view factory* a higher layer registers, the way IPython's display formatters are
registered: ``orion_nb`` registers one that imports the notebook layer only when a run starts (a
widget in a kernel, text in a script). The engine never imports ``orion_nb.notebook``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["RunView", "ViewFactory", "make_view", "register_view_factory"]


class RunView(Protocol):
    """A live view of one flow run (and its subflows)."""

    #: the view shows log records itself (so the console need not print them too)
    shows_logs: bool

    def on_event(self, ev: tuple[Any, ...]) -> None:
        """Called on the engine's hot path, from any thread: must only queue the event."""

    def close(self) -> None:
        """The top-level flow run ended (its history is committed)."""


ViewFactory = Callable[[Any, str], RunView | None]
_factory: ViewFactory | None = None


def register_view_factory(factory: ViewFactory | None) -> ViewFactory | None:
    """Make ``factory(flow_run, mode)`` build the view of each top-level flow run.

    ``mode`` is the flow's ``display`` option or the ``display`` setting (``auto``, ``widget``,
    ``text``; ``none`` never reaches the factory). Returns the factory it replaces.
    """
    global _factory
    previous, _factory = _factory, factory
    return previous


def make_view(run: Any, mode: str) -> RunView | None:
    """The view of a top-level flow run, or ``None`` (display off, or no factory registered)."""
    if mode == "none" or _factory is None:
        return None
    return _factory(run, mode)
