"""``@flow`` and the flow run engine.

A flow run is the body of the decorated function, run in the calling thread (sync) or awaited
(async). Tasks called inside it become its task runs; a flow called inside it is a subflow,
recorded as a child flow run linked to a task run of the parent. When a top-level flow run
returns or raises, everything about it has been committed to the store.

Final state (as in Prefect 3): the run fails when its body raises, or when its return value
holds a failed result (a failed state or future, also inside a list, tuple, set or dict).
A KeyboardInterrupt ends the run and its unfinished task runs as Cancelled, then propagates.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from orion_nb.engine import recorder
from orion_nb.engine.context import FlowRunContext, _flow_ctx, _task_ctx
from orion_nb.engine.futures import TaskFuture
from orion_nb.engine.params import Signature, format_name, new_id, parameters_json, random_run_name
from orion_nb.engine.runners import TaskRunner, default_runner, help_until_done, resolve_task_runner
from orion_nb.engine.tasks import _strip_engine_frames, cancel_run, describe_exception
from orion_nb.engine.timeouts import deadline
from orion_nb.engine.transitions import Run, propose, record
from orion_nb.errors import CancelledRun, DefinitionError, RunTimeoutError
from orion_nb.orchestration.policies import FLOW_POLICY
from orion_nb.orchestration.rules import DecisionKind, RunConfig
from orion_nb.orchestration.states import (
    TERMINAL_TYPES,
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Pending,
    Retrying,
    Running,
    State,
    StateType,
)

__all__ = ["Flow", "FlowRun", "flow", "scheduled_run"]

P = ParamSpec("P")
R = TypeVar("R")

_HOST = socket.gethostname()

#: Issue 8 (scheduled runs): a flow run created ahead of time that the next *top-level* flow
#: run in this context takes over. ``orion-nb serve`` inserts each slot of a deployment as a
#: Scheduled flow run (with its deployment id and expected start time); ``orion-nb run`` sets
#: this to a one-item list holding that run's id before it runs the script or notebook. The
#: first top-level run pops the id and records under it, so its states, tasks and subflows
#: land on the scheduled row (the store keeps the row's deployment id and slot). Subflows
#: never read it, and the pop makes the adoption happen once even across threads.
scheduled_run: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "orion_nb_scheduled_run", default=None
)


class FlowRun(Run):
    """A flow run while it runs (hooks receive it)."""

    __slots__ = ("ctx", "flow", "parameters", "parent_run")

    def __init__(
        self, id: str, name: str, flow: Flow[Any, Any], parameters: dict[str, Any], view: Any
    ) -> None:
        super().__init__(id, "flow", name, view)
        self.flow = flow
        self.parameters = parameters
        self.ctx: FlowRunContext | None = None
        self.parent_run: Run | None = None

    def __repr__(self) -> str:
        return f"FlowRun({self.name!r}, {self.state!r})"


class Flow(Generic[P, R]):
    """A function whose calls become recorded, orchestrated flow runs.

    Create with ``@flow`` (bare or with options). Options and their meaning follow Prefect's
    ``@flow``.
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
        source: str | None = None,
    ) -> None:
        if not callable(fn):
            raise DefinitionError(
                f"@flow decorates functions, not {type(fn).__name__} objects; write @flow above a 'def'."
            )
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__).replace("_", "-")
        self._options = dict(
            name=name,
            flow_run_name=flow_run_name,
            description=description,
            version=version,
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
            timeout_seconds=timeout_seconds,
            task_runner=task_runner,
            validate_parameters=validate_parameters,
            log_prints=log_prints,
            on_completion=on_completion,
            on_failure=on_failure,
            on_crashed=on_crashed,
            on_cancellation=on_cancellation,
            source=source,
        )

        def bad(msg: str) -> DefinitionError:
            return DefinitionError(f"Flow {self.name!r}: {msg}")

        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise bad(f"retries must be a whole number >= 0, not {retries!r}.")
        if isinstance(retry_delay_seconds, (list, tuple)):
            if any(not isinstance(d, (int, float)) or d < 0 for d in retry_delay_seconds):
                raise bad(
                    f"retry_delay_seconds must hold numbers >= 0, not {retry_delay_seconds!r}."
                )
        elif not isinstance(retry_delay_seconds, (int, float)) or retry_delay_seconds < 0:
            raise bad(f"retry_delay_seconds must be a number >= 0, not {retry_delay_seconds!r}.")
        if timeout_seconds is not None and (
            not isinstance(timeout_seconds, (int, float)) or timeout_seconds <= 0
        ):
            raise bad(
                f"timeout_seconds must be a positive number of seconds, not {timeout_seconds!r}."
            )
        for key in ("on_completion", "on_failure", "on_crashed", "on_cancellation"):
            hooks = self._options[key]
            if hooks is not None and (
                not isinstance(hooks, (list, tuple)) or not all(callable(h) for h in hooks)
            ):
                raise bad(f"{key} must be a list of callables, not {hooks!r}.")
        self.flow_run_name = flow_run_name
        self.description = description or inspect.getdoc(fn)
        self.version = version
        self.retries = retries
        self.timeout_seconds = timeout_seconds
        self.task_runner = resolve_task_runner(task_runner)
        self.validate_parameters = validate_parameters
        self.log_prints = log_prints
        self.hooks = {
            StateType.COMPLETED: list(on_completion or ()),
            StateType.FAILED: list(on_failure or ()),
            StateType.CRASHED: list(on_crashed or ()),
            StateType.CANCELLED: list(on_cancellation or ()),
        }
        self.source = source
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = Signature(fn, "flow", self.name)
        self.flow_key = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', self.name)}"
        self.config = RunConfig(
            "flow",
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
            timeout_seconds=timeout_seconds,
        )
        self.policy = FLOW_POLICY.compile(self.config)
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"

    def with_options(self, **changes: Any) -> Flow[P, R]:
        """A copy of this flow with some options changed (same function)."""
        unknown = set(changes) - set(self._options)
        if unknown:
            raise DefinitionError(
                f"Flow {self.name!r}.with_options() got unknown option(s) {sorted(unknown)}; "
                f"options are {sorted(self._options)}."
            )
        return Flow(self.fn, **{**self._options, **changes})

    # -- calling ------------------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        return_state = bool(kwargs.pop("return_state", False))
        if self.is_async:
            return self._call_async(args, kwargs, return_state)  # type: ignore[return-value]
        _run, eng = self._prepare(args, kwargs)
        return eng.run_sync(return_state)  # type: ignore[no-any-return]

    def _call_async(self, args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool) -> Any:
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        parent = _flow_ctx.get()
        in_sync_run = _task_ctx.get() is not None or (parent is not None and not parent.is_async)
        try:
            asyncio.get_running_loop()
            has_loop = True
        except RuntimeError:
            has_loop = False
        if has_loop and not in_sync_run:

            async def go() -> Any:
                _run, eng = self._prepare(args, kwargs)
                return await eng.run_async(return_state)

            return go()
        # sync caller: run the coroutine to completion on a private loop in a helper thread,
        # so neither the caller's running loop nor the engine's I/O loop is blocked or re-entered
        _run, eng = self._prepare(args, kwargs)
        ctx = contextvars.copy_context()
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="orion-nb-flow") as pool:
            fut = pool.submit(ctx.run, asyncio.run, eng.run_async(return_state))
            return fut.result()

    def _prepare(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[FlowRun, FlowRunEngine]:
        self.signature.check(args, kwargs)
        params = self.signature.bind(args, kwargs)
        if self.validate_parameters:
            params = self.signature.validate(params)
            if not self.signature.has_var_pos:
                args, kwargs = (), params
        recorder.get_writer()
        parent = _flow_ctx.get()
        rid = new_id()
        if parent is None and (slot := scheduled_run.get()):  # issue 8: adopt a scheduled run
            try:
                rid = slot.pop()
            except IndexError:  # taken by another thread a moment ago
                pass
        name = format_name(self.flow_run_name, params, random_run_name())
        view = parent.view if parent is not None else None
        run = FlowRun(rid, name, self, params, view)
        if parent is None:
            view = _make_view(run)
            run.view = view
        parent_task_run_id = None
        if parent is not None:
            # the subflow appears in the parent as a task run that mirrors its states
            parent_task_run_id = new_id()
            dyn = parent.next_dynamic_key("subflow:" + self.flow_key)
            prun = Run(parent_task_run_id, "task", f"{self.name}-{dyn}", view)
            ev: tuple[Any, ...] = (
                "task",
                parent_task_run_id,
                parent.run_id,
                self.name,
                "subflow:" + self.flow_key,
                str(dyn),
                prun.name,
                ("subflow",),
                time.time(),
            )
            recorder.emit(ev)
            if view is not None:
                view.on_event(ev)
            run.parent_run = prun
            record(prun, Pending())
        ev = (
            "flow",
            rid,
            self.name,
            name,
            parameters_json(params),
            (),
            parent_task_run_id,
            self.source or _source(),
            _HOST,
            os.getpid(),
            time.time(),
        )
        recorder.emit(ev)
        if view is not None:
            view.on_event(ev)
        runner = self.task_runner or (
            parent.task_runner if parent is not None else default_runner()
        )
        lp = (
            self.log_prints
            if self.log_prints is not None
            else (parent.log_prints if parent else False)
        )
        if lp:
            from orion_nb.engine.run_logging import install_print_hook

            install_print_hook()
        ctx = FlowRunContext(
            flow=self,
            run_id=rid,
            name=name,
            parameters=params,
            parent=parent,
            task_runner=runner,
            view=view,
            log_prints=lp,
            is_async=self.is_async,
            parent_task_run_id=parent_task_run_id,
        )
        run.ctx = ctx
        record(run, Pending())
        return run, FlowRunEngine(self, run, ctx, args, kwargs)


def _source() -> str | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        return os.path.abspath(path)
    session = os.environ.get("JPY_SESSION_NAME")
    return session or None


def _make_view(run: FlowRun) -> Any:
    from orion_nb.settings import get_settings

    mode = getattr(run.flow, "_display", None) or get_settings().display
    if mode == "none":
        return None
    try:
        from orion_nb.notebook import display
    except ImportError:  # pragma: no cover - the notebook layer is part of the package
        return None
    return display.make_view(run, mode)


def _first_failed(value: Any, depth: int = 0) -> State | None:
    """The first failed state held by a flow's return value, if any."""
    t = type(value)
    if t is State:
        return (
            value
            if value.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)
            else None
        )
    if t is TaskFuture:
        value.wait()
        return _first_failed(value.state, depth)
    if depth < 3:
        if t in (list, tuple, set, frozenset):
            for v in value:
                s = _first_failed(v, depth + 1)
                if s is not None:
                    return s
        elif t is dict:
            for v in value.values():
                s = _first_failed(v, depth + 1)
                if s is not None:
                    return s
    return None


def _resolve_return(value: Any, depth: int = 0) -> Any:
    t = type(value)
    if t is State or t is TaskFuture:
        return value.result()
    if depth < 3:
        if t is list:
            return [_resolve_return(v, depth + 1) for v in value]
        if t is tuple:
            return tuple(_resolve_return(v, depth + 1) for v in value)
        if t is dict:
            return {k: _resolve_return(v, depth + 1) for k, v in value.items()}
    return value


class FlowRunEngine:
    """The steps of one flow run; driven by :meth:`run_sync` or :meth:`run_async`."""

    def __init__(
        self,
        flow: Flow[Any, Any],
        run: FlowRun,
        ctx: FlowRunContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.flow = flow
        self.run = run
        self.ctx = ctx
        self.args = args
        self.kwargs = kwargs
        self.result: Any = None

    # -- steps --------------------------------------------------------------------------------
    def begin(self) -> None:
        run = self.run
        run.run_count += 1
        propose(
            run, self.flow.policy, self.flow.config, Running() if run.run_count == 1 else Retrying()
        )
        prun = run.parent_run
        if prun is not None and run.run_count == 1:
            prun.run_count = 1
            record(prun, Running())

    def returned(self, value: Any) -> float | None:
        """The body returned ``value``: wait for its task runs, then decide the final state."""
        self._wait_for_tasks()
        failed = _first_failed(value)
        if failed is not None:
            exc = failed.result(raise_on_failure=False)
            msg = (
                f"the flow's return value holds a {failed.name} result ({describe_exception(exc)})"
            )
            return self._fail(exc, Failed(data=exc, message=msg))
        try:
            self.result = _resolve_return(value)
        except Exception as exc:  # pragma: no cover - covered by _first_failed
            return self._fail(exc, Failed(data=exc, message=describe_exception(exc)))
        propose(self.run, self.flow.policy, self.flow.config, Completed(data=self.result))
        return None

    def raised(self, exc: BaseException, timed_out: bool = False) -> float | None:
        _strip_engine_frames(exc)
        self._wait_for_tasks()
        return self._fail(exc, Failed(data=exc, message=describe_exception(exc)), timed_out)

    def _fail(self, exc: BaseException, state: State, timed_out: bool = False) -> float | None:
        decision = propose(
            self.run,
            self.flow.policy,
            self.flow.config,
            state,
            exception=exc,
            timed_out=timed_out,
            random=None,
        )
        if (
            decision is not None
            and decision.kind is DecisionKind.ACCEPT
            and self.run.state.type is StateType.SCHEDULED
        ):
            return decision.wait_seconds or 0.0
        return None

    def cancel(self, exc: BaseException) -> None:
        ctx = self.ctx
        ctx.cancelled = True
        reason = (
            "interrupted (KeyboardInterrupt)"
            if isinstance(exc, KeyboardInterrupt)
            else (str(exc) or "cancelled")
        )
        children = list(ctx.active.values())
        decision = propose(
            self.run,
            self.flow.policy,
            self.flow.config,
            Cancelled(message=reason, data=CancelledRun(reason)),
            children=[c.id for c in children],
        )
        rule = decision.rule if decision is not None else None
        for child in children:
            cancel_run(child, f"parent flow run {self.run.name!r} was cancelled", rule)

    def crash(self, exc: BaseException) -> None:
        self.ctx.cancelled = True
        for child in list(self.ctx.active.values()):
            cancel_run(child, f"parent flow run {self.run.name!r} crashed")
        if self.run.state.type not in TERMINAL_TYPES:
            propose(
                self.run,
                self.flow.policy,
                self.flow.config,
                Crashed(data=exc, message=describe_exception(exc)),
            )

    def _wait_for_tasks(self) -> None:
        # task runs submitted but never waited on still belong to this flow run
        while self.ctx.active:
            for child in list(self.ctx.active.values()):
                cf = getattr(child, "cf", None)
                if cf is not None:
                    help_until_done(cf)
                    cf.result()
                else:
                    self.ctx.active.pop(child.id, None)

    def finish(self) -> State:
        run = self.run
        state = run.state
        if state.type not in TERMINAL_TYPES:
            state = Crashed(message="the engine stopped before the flow run finished")
            record(run, state)
        prun = run.parent_run
        if prun is not None:
            mirrored = State(
                state.type,
                state.name,
                state.message,
                rule=state.rule,
                data=state.data if state.has_data() else None,
            )
            prun.run_count = run.run_count
            record(prun, mirrored)
        for hook in self.flow.hooks.get(state.type, ()):
            try:
                hook(self.flow, run, state)
            except Exception as exc:
                from orion_nb.engine.run_logging import get_run_logger

                get_run_logger(flow_run_id=run.id, run_name=run.name).error(
                    "hook %r of flow %r failed: %s",
                    getattr(hook, "__name__", hook),
                    self.flow.name,
                    describe_exception(exc),
                )
        return state

    def _outcome(self, return_state: bool) -> Any:
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        state = self.run.state
        if return_state:
            return state
        if state.type is StateType.COMPLETED:
            return self.result
        return state.result()

    # -- drivers ------------------------------------------------------------------------------
    def run_sync(self, return_state: bool) -> Any:
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        fn = self.flow.fn
        top = self.ctx.parent is None
        token = _flow_ctx.set(self.ctx)
        ttoken = _task_ctx.set(None)
        try:
            while True:
                self.begin()
                dl = None
                try:
                    with deadline(self.flow.timeout_seconds) as dl:
                        value = fn(*self.args, **self.kwargs)
                except RunTimeoutError as exc:
                    delay = self.raised(exc, timed_out=dl is not None and dl.fired)
                except (KeyboardInterrupt, CancelledRun) as exc:
                    self.cancel(exc)
                    self.finish()
                    raise
                except Exception as exc:
                    delay = self.raised(exc)
                except BaseException as exc:
                    self.crash(exc)
                    self.finish()
                    raise
                else:
                    delay = self.returned(value)
                if delay is None:
                    break
                if delay > 0:
                    time.sleep(delay)
            self.finish()
        finally:
            _task_ctx.reset(ttoken)
            _flow_ctx.reset(token)
            if top:
                recorder.flush()
                if self.run.view is not None:
                    self.run.view.close()
        return self._outcome(return_state)

    async def run_async(self, return_state: bool) -> Any:
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        fn = self.flow.fn
        top = self.ctx.parent is None
        token = _flow_ctx.set(self.ctx)
        ttoken = _task_ctx.set(None)
        try:
            while True:
                self.begin()
                timed_out = False
                try:
                    if self.flow.timeout_seconds is not None:
                        try:
                            async with asyncio.timeout(self.flow.timeout_seconds):
                                value = await fn(*self.args, **self.kwargs)
                        except TimeoutError as exc:
                            timed_out = True
                            raise RunTimeoutError(
                                f"Run exceeded timeout_seconds={self.flow.timeout_seconds:g}."
                            ) from exc
                    else:
                        value = await fn(*self.args, **self.kwargs)
                except RunTimeoutError as exc:
                    delay = await asyncio.to_thread(self.raised, exc, timed_out)
                except (KeyboardInterrupt, CancelledRun, asyncio.CancelledError) as exc:
                    self.cancel(exc)
                    self.finish()
                    raise
                except Exception as exc:
                    delay = await asyncio.to_thread(self.raised, exc)
                except BaseException as exc:
                    self.crash(exc)
                    self.finish()
                    raise
                else:
                    if self.ctx.active:
                        delay = await asyncio.to_thread(self.returned, value)
                    else:
                        delay = self.returned(value)
                if delay is None:
                    break
                if delay > 0:
                    await asyncio.sleep(delay)
            self.finish()
        finally:
            _task_ctx.reset(ttoken)
            _flow_ctx.reset(token)
            if top:
                await recorder.aflush()
                if self.run.view is not None:
                    self.run.view.close()
        return self._outcome(return_state)


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
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(__fn: Any = None, **options: Any) -> Any:
    """Make a function a flow: each call becomes an orchestrated, recorded flow run.

    Use bare (``@flow``) or with options (``@flow(name="etl", retries=1)``); the options and
    their meaning follow Prefect's ``@flow``.
    """
    if __fn is not None:
        return Flow(__fn, **options)

    def decorator(fn: Callable[P, R]) -> Flow[P, R]:
        return Flow(fn, **options)

    return decorator
