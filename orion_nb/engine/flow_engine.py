"""Driving one flow run: preparing it (parameters, subflow links, the view) and its attempts.

A flow run is the body of the decorated function, run in the calling thread (sync) or awaited
on the caller's loop (async). Tasks called inside it become its task runs; a flow called inside
it is a *subflow*: a child flow run, linked to a task run of the parent that mirrors its states
(and carries the edges of the futures passed to it, which are waited for and resolved first).
When a top-level flow run returns or raises, everything about it has been committed to the
store.

Final state (Prefect 3's rules, :mod:`orion_nb.orchestration.final_state`): the run fails when
its body raises; otherwise the futures in its return value become states and the value is
judged (a returned State is used as given; states returned together fail the run if one
failed). Task runs it submitted but never waited for are waited for first; their failures alone
do not fail the flow. A KeyboardInterrupt ends the run and its unfinished task runs as
Cancelled, then propagates.

Calls that do not fit the flow's parameters are runs too: recorded Failed with the validation
message, ``on_failure`` hooks called, then the error raised (or the state returned with
``return_state=True``).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from orion_nb._events import edge_event, flow_event, task_event
from orion_nb.engine import recorder
from orion_nb.engine.attempt import AsyncAttempt, Attempt, RetryIn
from orion_nb.engine.context import FlowRunContext, _flow_ctx, _task_ctx
from orion_nb.engine.hooks import acall_hooks, call_hooks
from orion_nb.engine.inputs import Upstream, find_upstream, resolve_call, states_of
from orion_nb.engine.params import format_name, new_id, parameters_json, random_run_name
from orion_nb.engine.runners import TaskRunner, configured_runner, default_runner, help_until_done
from orion_nb.engine.runs import FlowRun, Run
from orion_nb.engine.tags import current_tags
from orion_nb.engine.task_engine import _strip_engine_frames, cancel_reason, cancel_run
from orion_nb.engine.transitions import propose, record
from orion_nb.engine.views import make_view
from orion_nb.engine.walk import PLAIN_TYPES
from orion_nb.errors import CancelledRun, ParameterError, UpstreamFailedError, describe
from orion_nb.orchestration.final_state import state_from_return
from orion_nb.orchestration.rules import DecisionKind
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

if TYPE_CHECKING:  # the definition module imports this one
    from orion_nb.engine.flows import Flow

__all__ = ["FlowRunEngine", "active_flow_runs", "arun_flow", "run_flow", "scheduled_run"]

_HOST = socket.gethostname()

#: Scheduled runs (``orion-nb serve`` / ``orion-nb run``): a flow run created ahead of time
#: that the next *top-level* flow run in this context takes over. Each slot of a deployment is
#: inserted as a Scheduled flow run (with its deployment id and expected start time); the
#: runner sets this to a one-item list holding that run's id before it runs the script or
#: notebook. The first top-level run pops the id and records under it, so its states, tasks and
#: subflows land on the scheduled row (the store keeps the row's deployment id and slot).
#: Subflows never read it, and the pop makes the adoption happen once even across threads.
scheduled_run: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "orion_nb_scheduled_run", default=None
)

_active: dict[str, str] = {}  # top-level flow run id -> name, for the detached-thread warning
_active_lock = threading.Lock()


def active_flow_runs() -> list[str]:
    """Names of the top-level flow runs running in this process."""
    with _active_lock:
        return list(_active.values())


class _Rejected(Exception):
    """The call never reaches the body; ``state`` is the run's recorded final state."""

    def __init__(self, state: State, error: BaseException) -> None:
        self.state = state
        self.error = error


# -- entry points -----------------------------------------------------------------------------


def run_flow(flow: Flow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call a sync flow: run it here; its result, or its final state with ``return_state``."""
    __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
    return_state = bool(kwargs.pop("return_state", False))
    try:
        eng = prepare(flow, args, kwargs)
    except _Rejected as rejected:
        if return_state:
            return rejected.state
        raise rejected.error from None
    return eng.run_sync(return_state)


async def arun_flow(flow: Flow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call an async flow: the coroutine the caller awaits (nothing runs before that)."""
    __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
    return_state = bool(kwargs.pop("return_state", False))
    try:
        if _flow_ctx.get() is not None and _has_pending_upstream(args, kwargs):
            # a subflow waiting for futures must not block the loop while it waits
            eng = await asyncio.to_thread(prepare, flow, args, kwargs)  # copies the context
        else:
            eng = prepare(flow, args, kwargs)
    except _Rejected as rejected:
        if return_state:
            return rejected.state
        raise rejected.error from None
    return await eng.run_async(return_state)


def _has_pending_upstream(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return any(type(v) not in PLAIN_TYPES for v in (*args, *kwargs.values()))


# -- preparing a run --------------------------------------------------------------------------


def prepare(flow: Flow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> FlowRunEngine:
    """Create the flow run (and a subflow's mirror task run), ready for its first attempt.

    Raises
    ------
    _Rejected
        When the call cannot run (bad parameters, a failed upstream); the run is recorded.
    """
    wait_for = kwargs.pop("wait_for", None)
    recorder.get_writer()
    parent = _flow_ctx.get()
    mirror: Run | None = None
    upstream: list[Upstream] = []
    if parent is not None:
        mirror = _mirror_task_run(flow, parent)
        upstream = find_upstream(
            args, kwargs, flow.signature.positional, parent.result_ids, wait_for
        )
        for u in upstream:
            ev = edge_event(mirror.id, u.run_id, u.parameter)
            recorder.emit(ev)
            if parent.view is not None:
                parent.view.on_event(ev)
    problem: BaseException | None = None
    try:
        if upstream:
            args, kwargs = _wait_and_resolve(upstream, args, kwargs)
        flow.signature.check(args, kwargs)
        params = flow.signature.bind(args, kwargs)
        if flow.validate_parameters:
            params = flow.signature.validate(params)
            if not flow.signature.has_var_pos:
                args, kwargs = (), dict(params)
        name = format_name(flow.flow_run_name, params, random_run_name())
    except (ParameterError, UpstreamFailedError) as exc:
        problem = exc
        params = _best_effort_params(flow, args, kwargs)
        name = f"{flow.name}-invalid"
    run, ctx = _new_flow_run(flow, parent, mirror, name, params)
    eng = FlowRunEngine(flow, run, ctx, args, kwargs)
    if problem is not None:
        raise _Rejected(eng.reject(problem), problem)
    return eng


def _mirror_task_run(flow: Flow[Any, Any], parent: FlowRunContext) -> Run:
    """The task run of the parent that stands for a subflow run (mirrors its states)."""
    key = "subflow:" + flow.flow_key
    dyn = parent.next_dynamic_key(key)
    mirror = Run(new_id(), "task", f"{flow.name}-{dyn}", parent.view)
    ev = task_event(
        mirror.id, parent.run_id, flow.name, key, str(dyn), mirror.name, ("subflow",), time.time()
    )
    recorder.emit(ev)
    if parent.view is not None:
        parent.view.on_event(ev)
    record(mirror, Pending())
    return mirror


def _wait_and_resolve(
    upstream: list[Upstream], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    for u in upstream:
        if u.future is not None:
            u.future.wait()
    for u in upstream:
        state = u.as_input().state
        if not u.allowed and state.type is not StateType.COMPLETED:
            raise UpstreamFailedError(
                f"Subflow did not run because upstream run {u.name!r} is {state.name}; wrap the "
                "input in allow_failure(...) to run it anyway."
            )
    return resolve_call(args, kwargs)


def _best_effort_params(flow: Flow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    params = {name: value for name, value in zip(flow.signature.positional, args, strict=False)}
    params.update(kwargs)
    return params


def _new_flow_run(
    flow: Flow[Any, Any],
    parent: FlowRunContext | None,
    mirror: Run | None,
    name: str,
    params: dict[str, Any],
) -> tuple[FlowRun, FlowRunContext]:
    view = parent.view if parent is not None else None
    run = FlowRun(_adopted_id() if parent is None else new_id(), name, flow, params, view)
    run.parent_run = mirror
    run.tags = current_tags()
    if parent is None:
        view = make_view(run, flow.display or _display_setting())
        run.view = view
    ev = flow_event(
        run.id,
        flow.name,
        name,
        parameters_json(params),
        tuple(sorted(run.tags)),
        mirror.id if mirror is not None else None,
        flow.source or _source(),
        _HOST,
        os.getpid(),
        time.time(),
    )
    recorder.emit(ev)
    if view is not None:
        view.on_event(ev)
    # a subflow without a runner of its own shares its parent's (an open session, for Dask)
    runner = flow.task_runner or (
        parent.task_runner if parent is not None else (configured_runner() or default_runner())
    )
    log_prints = (
        flow.log_prints if flow.log_prints is not None else (parent.log_prints if parent else False)
    )
    if log_prints:
        from orion_nb.engine.run_logging import install_print_hook

        install_print_hook()
    ctx = FlowRunContext(
        flow=flow,
        run_id=run.id,
        name=name,
        parameters=params,
        parent=parent,
        task_runner=runner,
        view=view,
        log_prints=log_prints,
        is_async=flow.is_async,
        parent_task_run_id=mirror.id if mirror is not None else None,
        tags=run.tags,
    )
    run.ctx = ctx
    record(run, Pending())
    return run, ctx


def _adopted_id() -> str:
    """The id of the scheduled run this top-level run takes over, else a new id."""
    slot = scheduled_run.get()
    if slot:
        try:
            return slot.pop()
        except IndexError:  # another thread adopted it first
            pass
    return new_id()


def _display_setting() -> str:
    from orion_nb.settings import get_settings

    return get_settings().display


def _source() -> str | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        return os.path.abspath(path)
    session = os.environ.get("JPY_SESSION_NAME")
    return session or None


# -- the steps --------------------------------------------------------------------------------


class FlowRunEngine:
    """The steps of one flow run, and its two drivers (:meth:`run_sync`, :meth:`run_async`)."""

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
        self.log = {"flow_run_id": run.id, "run_name": run.name}
        self.session: TaskRunner | None = None  # a runner this run opened, closed at its end

    def open_runner(self) -> None:
        """Start the flow's own remote runner (a process pool, a Dask cluster or client).

        Raises
        ------
        ConfigurationError, MissingDependencyError
            When it cannot start (an unreachable scheduler, ``distributed`` missing).
        """
        runner = self.ctx.task_runner
        if not runner.remote:
            return
        session = runner.open()
        if session is not runner:
            self.session = session
            self.ctx.task_runner = session

    def close_runner(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.close()

    def reject(self, exc: BaseException) -> State:
        """The call cannot run: record it Failed with the reason, call the failure hooks."""
        state = Failed(data=exc, message=str(exc))
        record(self.run, state)
        self._mirror(state)
        call_hooks(
            self.flow.hooks[StateType.FAILED], "flow", self.flow, self.run, state, **self.log
        )
        self._close()
        return state

    def begin(self) -> None:
        run = self.run
        run.run_count += 1
        propose(
            run, self.flow.policy, self.flow.config, Running() if run.run_count == 1 else Retrying()
        )
        mirror = run.parent_run
        if mirror is not None and run.run_count == 1:
            mirror.run_count = 1
            record(mirror, Running())

    def complete(self, value: Any) -> RetryIn:
        """The body returned ``value``: wait for its task runs, then decide the final state."""
        self._wait_for_tasks()
        try:
            final = (
                Completed(data=value)
                if type(value) in PLAIN_TYPES
                else state_from_return(states_of(value))
            )
        except Exception as exc:
            return self._fail(exc, Failed(data=exc, message=describe(exc)))
        if final.type is StateType.COMPLETED:
            propose(self.run, self.flow.policy, self.flow.config, final)
            return None
        return self._fail(final.exception(), final)

    def fail(self, exc: BaseException, timed_out: bool = False) -> RetryIn:
        _strip_engine_frames(exc)
        self._wait_for_tasks()
        return self._fail(exc, Failed(data=exc, message=describe(exc)), timed_out)

    def _fail(self, exc: BaseException, state: State, timed_out: bool = False) -> RetryIn:
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

    async def acomplete(self, value: Any) -> RetryIn:
        if self.ctx.active or type(value) not in PLAIN_TYPES:
            return await asyncio.to_thread(self.complete, value)  # may wait for task runs
        return self.complete(value)

    async def afail(self, exc: BaseException, timed_out: bool = False) -> RetryIn:
        return await asyncio.to_thread(self.fail, exc, timed_out)

    def cancel(self, exc: BaseException) -> None:
        ctx = self.ctx
        ctx.cancelled = True
        reason = cancel_reason(exc)
        children = list(ctx.active.values())
        decision = propose(
            self.run,
            self.flow.policy,
            self.flow.config,
            Cancelled(message=reason, data=CancelledRun(reason)),
            children=[c.id for c in children],
        )
        rule = decision.rule if decision is not None else None
        by_id = {c.id: c for c in children}
        for child_id in decision.cancel_children if decision is not None else by_id:
            cancel_run(by_id[child_id], f"parent flow run {self.run.name!r} was cancelled", rule)

    def crash(self, exc: BaseException) -> None:
        self.ctx.cancelled = True
        for child in list(self.ctx.active.values()):
            cancel_run(child, f"parent flow run {self.run.name!r} crashed")
        if self.run.state.type not in TERMINAL_TYPES:
            propose(
                self.run,
                self.flow.policy,
                self.flow.config,
                Crashed(data=exc, message=describe(exc)),
            )

    def _wait_for_tasks(self) -> None:
        # task runs submitted but never waited on still belong to this flow run
        while self.ctx.active:
            for child in list(self.ctx.active.values()):
                cf = child.cf
                if cf is not None:
                    help_until_done(cf)
                    cf.result()
                else:
                    self.ctx.active.pop(child.id, None)

    def _mirror(self, state: State) -> None:
        mirror = self.run.parent_run
        if mirror is not None:
            mirrored = State(
                state.type,
                state.name,
                state.message,
                rule=state.rule,
                data=state.data if state.has_data() else None,
            )
            mirror.run_count = self.run.run_count
            record(mirror, mirrored)

    def _final(self) -> State:
        state = self.run.state
        if state.type not in TERMINAL_TYPES:
            state = Crashed(message="the engine stopped before the flow run finished")
            record(self.run, state)
        self._mirror(state)
        return state

    def _hooks(self, kind: StateType) -> None:
        """Call the flow's hooks for ``kind`` with the run's current state."""
        hooks = self.flow.hooks.get(kind, ())
        if hooks:
            call_hooks(hooks, "flow", self.flow, self.run, self.run.state, **self.log)

    async def _ahooks(self, kind: StateType) -> None:
        hooks = self.flow.hooks.get(kind, ())
        if hooks:
            await acall_hooks(hooks, "flow", self.flow, self.run, self.run.state, **self.log)

    def finish(self) -> State:
        state = self._final()
        self._hooks(state.type)
        return state

    async def afinish(self) -> State:
        state = self._final()
        await self._ahooks(state.type)
        return state

    def _outcome(self, return_state: bool) -> Any:
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        state = self.run.state
        return state if return_state else state.result()

    def _open(self) -> tuple[Any, Any]:
        if self.ctx.parent is None:
            with _active_lock:
                _active[self.run.id] = self.run.name
        return _flow_ctx.set(self.ctx), _task_ctx.set(None)

    def _close(self) -> None:
        if self.ctx.parent is None:
            with _active_lock:
                _active.pop(self.run.id, None)
            recorder.flush()
            if self.run.view is not None:
                self.run.view.close()

    # -- drivers ------------------------------------------------------------------------------
    def run_sync(self, return_state: bool) -> Any:
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        fn = self.flow.fn
        try:
            self.open_runner()
        except Exception as exc:
            state = self.reject(exc)
            if return_state:
                return state
            raise
        tokens = self._open()
        try:
            try:
                while True:
                    self.begin()
                    self._hooks(StateType.RUNNING)
                    with Attempt(self, self.flow.timeout_seconds) as attempt:
                        attempt.returned(fn(*self.args, **self.kwargs))
                    if attempt.retry_in is None:
                        break
                    if attempt.retry_in > 0:
                        time.sleep(attempt.retry_in)
            finally:
                self.finish()
        finally:
            _task_ctx.reset(tokens[1])
            _flow_ctx.reset(tokens[0])
            try:
                self.close_runner()
            finally:
                self._close()
        return self._outcome(return_state)

    async def run_async(self, return_state: bool) -> Any:
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        fn = self.flow.fn
        if self.ctx.task_runner.remote:  # starting a cluster must not block the loop
            try:
                await asyncio.to_thread(self.open_runner)
            except Exception as exc:
                state = self.reject(exc)
                if return_state:
                    return state
                raise
        tokens = self._open()
        try:
            try:
                while True:
                    self.begin()
                    await self._ahooks(StateType.RUNNING)
                    async with AsyncAttempt(self, self.flow.timeout_seconds) as attempt:
                        attempt.returned(await fn(*self.args, **self.kwargs))
                    if attempt.retry_in is None:
                        break
                    if attempt.retry_in > 0:
                        await asyncio.sleep(attempt.retry_in)
            finally:
                await self.afinish()
        finally:
            _task_ctx.reset(tokens[1])
            _flow_ctx.reset(tokens[0])
            try:
                if self.session is not None:
                    await asyncio.to_thread(self.close_runner)
            finally:
                if self.ctx.parent is None:
                    with _active_lock:
                        _active.pop(self.run.id, None)
                    await recorder.aflush()
                    if self.run.view is not None:
                        self.run.view.close()
        return self._outcome(return_state)
