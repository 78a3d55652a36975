"""``@flow``: the definition of a flow, and calling it.

A :class:`Flow` holds a function and its options (checked once, here, and readable as
attributes: ``my_flow.retries``, ``my_flow.task_runner``). Calling it runs a flow run through
the flow engine (:mod:`orion_nb.engine.flow_engine`). Calling an ``async def`` flow returns a
coroutine, always, as in Prefect 3: ``await my_flow()`` in a notebook cell or async code,
``asyncio.run(my_flow())`` in a script; nothing runs until it is awaited.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from orion_nb.engine import flow_engine
from orion_nb.engine.options import check_run_options, delay_list
from orion_nb.engine.runners import TaskRunner, resolve_task_runner
from orion_nb.engine.signature import Signature
from orion_nb.errors import DefinitionError
from orion_nb.orchestration.policies import FLOW_POLICY
from orion_nb.orchestration.rules import RunConfig
from orion_nb.orchestration.states import StateType

__all__ = ["Flow", "flow"]

P = ParamSpec("P")
R = TypeVar("R")

_DISPLAY_MODES = ("auto", "widget", "text", "none")


class Flow(Generic[P, R]):
    """A function whose calls become recorded, orchestrated flow runs.

    Create with ``@flow`` (bare or with options). Options and their meaning follow Prefect 3's
    ``@flow``; ``display`` (``"auto"``, ``"widget"``, ``"text"`` or ``"none"``) is orion_nb's own:
    how a run of this flow is shown while it runs (default: the ``display`` setting).
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        flow_run_name: str | Callable[..., str] | None = None,
        description: str | None = None,
        version: str | None = None,
        retries: int = 0,
        retry_delay_seconds: float = 0,
        timeout_seconds: float | None = None,
        task_runner: TaskRunner | type[TaskRunner] | str | None = None,
        validate_parameters: bool = True,
        log_prints: bool | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        on_crashed: list[Callable[..., Any]] | None = None,
        on_cancellation: list[Callable[..., Any]] | None = None,
        on_running: list[Callable[..., Any]] | None = None,
        source: str | None = None,
        display: str | None = None,
    ) -> None:
        if not callable(fn):
            raise DefinitionError(
                f"@flow decorates functions, not {type(fn).__name__} objects; write @flow above a 'def'."
            )
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__).replace("_", "-")
        options = {k: v for k, v in locals().items() if k not in ("self", "fn")}
        check_run_options("flow", self.name, options)
        if display is not None and display not in _DISPLAY_MODES:
            raise DefinitionError(
                f"Flow {self.name!r}: display={display!r} is not a display mode; use one of "
                f"{', '.join(map(repr, _DISPLAY_MODES))}."
            )
        self._options = options
        self.flow_run_name = flow_run_name
        self.description = description or inspect.getdoc(fn)
        self.version = version
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.timeout_seconds = timeout_seconds
        self.task_runner = resolve_task_runner(task_runner)
        self.validate_parameters = validate_parameters
        self.log_prints = log_prints
        self.source = source
        self.display = display
        self.hooks: dict[StateType, list[Callable[..., Any]]] = {
            StateType.RUNNING: list(on_running or ()),
            StateType.COMPLETED: list(on_completion or ()),
            StateType.FAILED: list(on_failure or ()),
            StateType.CRASHED: list(on_crashed or ()),
            StateType.CANCELLED: list(on_cancellation or ()),
        }
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = Signature(fn, "flow", self.name)
        self.flow_key = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', self.name)}"
        self.config = RunConfig(
            "flow",
            retries=retries,
            retry_delay_seconds=delay_list(retry_delay_seconds, retries),
            timeout_seconds=timeout_seconds,
        )
        self.policy = FLOW_POLICY.compile(self.config)
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"

    # hook lists under Prefect 3's attribute names
    @property
    def on_completion_hooks(self) -> list[Callable[..., Any]]:
        return self.hooks[StateType.COMPLETED]

    @property
    def on_failure_hooks(self) -> list[Callable[..., Any]]:
        return self.hooks[StateType.FAILED]

    @property
    def on_crashed_hooks(self) -> list[Callable[..., Any]]:
        return self.hooks[StateType.CRASHED]

    @property
    def on_cancellation_hooks(self) -> list[Callable[..., Any]]:
        return self.hooks[StateType.CANCELLED]

    @property
    def on_running_hooks(self) -> list[Callable[..., Any]]:
        return self.hooks[StateType.RUNNING]

    def with_options(self, **changes: Any) -> Flow[P, R]:
        """A copy of this flow with some options changed (same function)."""
        unknown = set(changes) - set(self._options)
        if unknown:
            raise DefinitionError(
                f"Flow {self.name!r}.with_options() got unknown option(s) {sorted(unknown)}; "
                f"options are {sorted(self._options)}."
            )
        return Flow(self.fn, **{**self._options, **changes})

    # -- hooks, decorator style (``@my_flow.on_completion``) -------------------------------------
    def _hook(self, kind: StateType, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.hooks[kind].append(fn)
        return fn

    def on_completion(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add a hook called with ``(flow, flow_run, state)`` when a run completes."""
        return self._hook(StateType.COMPLETED, fn)

    def on_failure(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add a hook called with ``(flow, flow_run, state)`` when a run fails."""
        return self._hook(StateType.FAILED, fn)

    def on_crashed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add a hook called with ``(flow, flow_run, state)`` when a run crashes."""
        return self._hook(StateType.CRASHED, fn)

    def on_cancellation(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add a hook called with ``(flow, flow_run, state)`` when a run is cancelled."""
        return self._hook(StateType.CANCELLED, fn)

    def on_running(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add a hook called with ``(flow, flow_run, state)`` when an attempt starts."""
        return self._hook(StateType.RUNNING, fn)

    # -- calling ------------------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        if self.is_async:
            return flow_engine.arun_flow(self, args, kwargs)  # type: ignore[return-value]
        return flow_engine.run_flow(self, args, kwargs)  # type: ignore[no-any-return]


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...


@overload
def flow(
    __fn: None = None,
    *,
    name: str | None = ...,
    flow_run_name: str | Callable[..., str] | None = ...,
    description: str | None = ...,
    version: str | None = ...,
    retries: int = ...,
    retry_delay_seconds: float = ...,
    timeout_seconds: float | None = ...,
    task_runner: TaskRunner | type[TaskRunner] | str | None = ...,
    validate_parameters: bool = ...,
    log_prints: bool | None = ...,
    on_completion: list[Callable[..., Any]] | None = ...,
    on_failure: list[Callable[..., Any]] | None = ...,
    on_crashed: list[Callable[..., Any]] | None = ...,
    on_cancellation: list[Callable[..., Any]] | None = ...,
    on_running: list[Callable[..., Any]] | None = ...,
    display: str | None = ...,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(__fn: Any = None, **options: Any) -> Any:
    """Make a function a flow: each call becomes an orchestrated, recorded flow run.

    Use bare (``@flow``) or with options (``@flow(name="etl", retries=1)``); the options and
    their meaning follow Prefect 3's ``@flow``.
    """
    if __fn is not None:
        return Flow(__fn, **options)

    def decorator(fn: Callable[P, R]) -> Flow[P, R]:
        return Flow(fn, **options)

    return decorator
