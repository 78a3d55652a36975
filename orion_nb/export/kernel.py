"""The notebook's parent flow run, inside the kernel that runs the notebook headless.

``orion-nb run NOTEBOOK.ipynb`` must record what the exported script records: one flow run
for the whole notebook, whose task runs are the tasks its cells call and whose subflows are
its ``%%flow`` cells. But a kernel runs a notebook cell by cell, and a flow run is a function
call. So the driver (:mod:`orion_nb.export.run`) executes, before the first cell,
``begin(...)``, and after the last, ``end(...)``:

- ``begin`` calls the parent flow in a thread of its own; the flow's body hands back the
  context it runs in (the engine keeps the current run in ``ContextVar``\\ s named
  ``orion_nb_*``) and then waits. ``begin`` sets those variables in the kernel's context,
  which IPython keeps from one cell to the next: every later cell runs *inside* the parent
  flow run, exactly like the body of the script's ``main``;
- ``end`` restores the kernel's variables and releases the body, which returns (Completed)
  or raises the exception that stopped the notebook (Failed) or :class:`CancelledRun`
  (Cancelled). The engine then finishes the run as it finishes any other.

The parent flow's body is ``async`` so that a ``%%flow`` cell with top-level ``await`` is
awaited on the kernel's own loop, as it is without a parent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import sys
import threading
from typing import Any

__all__ = ["begin", "end"]

_ENGINE_VARS = "orion_nb"


class _NotebookRun:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.ready: concurrent.futures.Future[contextvars.Context] = concurrent.futures.Future()
        self.outcome: concurrent.futures.Future[BaseException | None] = concurrent.futures.Future()
        self.tokens: list[tuple[contextvars.ContextVar[Any], contextvars.Token[Any]]] = []
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        from orion_nb.engine.flow_engine import scheduled_run
        from orion_nb.engine.flows import Flow

        params = dict(self.spec.get("parameters") or {})
        run = self

        async def body(**_parameters: Any) -> None:
            run.ready.set_result(contextvars.copy_context())
            loop = asyncio.get_running_loop()
            error = await loop.run_in_executor(None, run.outcome.result)
            if error is not None:
                raise error

        body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
                for k, v in params.items()
            ]
        )
        body.__name__ = body.__qualname__ = "notebook"
        parent = Flow(
            body,
            name=self.spec["name"],
            validate_parameters=False,
            source=self.spec.get("source"),
        )
        if self.spec.get("run_id"):
            scheduled_run.set([self.spec["run_id"]])
        ctx = contextvars.copy_context()
        scheduled_run.set(None)

        def go() -> None:
            try:
                # calling an async flow returns its coroutine: run it on this thread's own loop
                ctx.run(lambda: asyncio.run(parent(**params)))
            except BaseException as exc:  # the run's outcome is in the history
                if not self.ready.done():
                    self.ready.set_exception(exc)

        self.thread = threading.Thread(target=go, name="orion-nb-notebook", daemon=True)
        self.thread.start()
        inner = self.ready.result(timeout=120)
        for var, value in inner.items():
            if var.name.startswith(_ENGINE_VARS) and var.get(_MISSING) is not value:
                self.tokens.append((var, var.set(value)))

    def finish(self, error: BaseException | None) -> None:
        for var, token in reversed(self.tokens):
            try:
                var.reset(token)
            except ValueError:  # set in another context: put the default back instead
                var.set(_default(var))
        self.tokens.clear()
        self.outcome.set_result(error)
        if self.thread is not None:
            self.thread.join()


_MISSING: Any = object()
_active: _NotebookRun | None = None


def _default(var: contextvars.ContextVar[Any]) -> Any:
    """The variable's value in a fresh context (its declared default)."""
    try:
        return contextvars.Context().run(var.get)
    except LookupError:
        return None


def begin(spec: dict[str, Any]) -> None:
    """Start the notebook's parent flow run; later cells run inside it.

    ``spec`` holds ``name``, ``parameters`` (a dict of literals), ``source``, ``run_id`` and
    ``load_extension`` (load orion_nb's magics for a notebook that uses ``%%flow`` without
    ``%load_ext orion_nb``, which the exported script would not need either).
    """
    global _active
    if _active is not None:
        raise RuntimeError("a notebook run is already active in this kernel")
    if spec.get("load_extension"):  # %%flow cells, and no %load_ext orion_nb before them
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.extension_manager.load_extension("orion_nb")
    run = _NotebookRun(spec)
    run.start()
    _active = run


def end(outcome: str, message: str = "") -> None:
    """Finish the parent flow run: ``completed``, ``failed`` (with the last exception) or
    ``cancelled``."""
    global _active
    run, _active = _active, None
    if run is None:
        return
    error: BaseException | None = None
    if outcome == "failed":
        error = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        if error is None:
            error = RuntimeError(message or "a cell failed")
    elif outcome == "cancelled":
        from orion_nb.errors import CancelledRun

        error = CancelledRun(message or "the notebook run was cancelled")
    run.finish(error)
