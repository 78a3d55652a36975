"""The steps of one task run: from Pending to its final state, one attempt at a time.

:class:`TaskRunEngine` holds what one run needs while it is driven (by
:mod:`orion_nb.engine.task_drivers` in a thread or on an event loop, or by
:mod:`orion_nb.engine.remote` when a process pool or Dask executes the attempts) and offers
the steps:

- :meth:`~TaskRunEngine.begin` waits for upstream runs (helping the pool while it waits),
  then asks the task policy to move the run to RUNNING. The rules gather nothing
  themselves: the engine collects what they read (upstream states, the cached entry, a free
  slot) in :meth:`TaskRunEngine._gather`.
- One attempt is one pass through :class:`~orion_nb.engine.attempt.Attempt`, which maps what
  the user's code did to a step: returned -> :meth:`~TaskRunEngine.complete`, raised ->
  :meth:`~TaskRunEngine.fail`, interrupted -> :meth:`~TaskRunEngine.cancel`, anything else
  -> :meth:`~TaskRunEngine.crash`. ``complete`` and ``fail`` return :data:`RetryIn`: the
  seconds until the next attempt, or ``None`` when the run reached its final state.
- :meth:`~TaskRunEngine.done` calls the hooks, settles the flow's books and the run's
  :class:`~orion_nb.engine.outcome.Outcome`.

Cancellation from outside (a cancelled flow, :func:`cancel_run`) records Cancelled and raises
:class:`CancelledRun` in the run's thread at its next bytecode.

What the user's code returns decides the final state by Prefect 3's rules
(:mod:`orion_nb.orchestration.final_state`): futures in it become states, a returned State is
used as given, a group of states is judged together.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from orion_nb._events import cache_event, ran_event
from orion_nb.engine import concurrency, recorder
from orion_nb.engine.attempt import RetryIn
from orion_nb.engine.cache import persist_result, result_cache
from orion_nb.engine.context import FlowRunContext, TaskRunContext
from orion_nb.engine.hooks import acall_hooks, call_hooks
from orion_nb.engine.inputs import resolve_call, states_of
from orion_nb.engine.runners import blocking
from orion_nb.engine.runs import Run, TaskRun
from orion_nb.engine.timeouts import raise_in_thread
from orion_nb.engine.transitions import propose, record
from orion_nb.engine.walk import PLAIN_TYPES
from orion_nb.errors import CancelledRun, describe
from orion_nb.orchestration.final_state import state_from_return
from orion_nb.orchestration.rules import Decision, DecisionKind
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
    from orion_nb.engine.tasks import Task

__all__ = ["TaskRunEngine", "cancel_reason", "cancel_run"]

_get_ident = threading.get_ident


class TaskRunEngine:
    """The steps of one task run (see the module docstring for what drives them)."""

    __slots__ = ("args", "cache_key", "held", "kwargs", "log", "run", "slots", "task", "task_ctx")

    def __init__(
        self, task: Task[Any, Any], run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.task = task
        self.run = run
        self.args = args
        self.kwargs = kwargs
        self.slots: list[str] = []
        self.cache_key: str | None = None
        self.held: State | None = None  # an accepted RUNNING state not recorded yet (remote)
        flow_ctx = run.flow_ctx
        log_prints = (
            task.log_prints
            if task.log_prints is not None
            else (flow_ctx.log_prints if flow_ctx else False)
        )
        self.task_ctx = TaskRunContext(task, run, flow_ctx, args, kwargs, log_prints)
        self.log = {"task_run_id": run.id, "run_name": run.name}

    def begin(self, defer: bool = False) -> bool:
        """Move the run to RUNNING; False when it must not run (cached, failed upstream,
        cancelled): the run is then already in its final state.

        With ``defer`` the accepted RUNNING state is kept in :attr:`held` instead of being
        recorded: a remote attempt is RUNNING from when a worker starts it
        (:meth:`started`), not from when the kernel queues it.
        """
        run = self.run
        if run.state.type in TERMINAL_TYPES:  # cancelled while it waited
            return False
        for u in run.upstream:
            if u.future is not None:
                u.future.wait()
        state = (self.held if defer else run.state) if self._to_running(defer) else None
        if state is None or state.type is not StateType.RUNNING:
            self._release()
            return False
        if run.upstream or self.task.has_cache:
            try:
                self.args, self.kwargs = resolve_call(self.args, self.kwargs)
            except Exception as exc:  # an input that cannot be resolved is a failure, not a crash
                self.fail(exc, inputs=True)
                return False
        return True

    def _to_running(self, defer: bool) -> bool:
        """Propose RUNNING until the policy accepts (True) or refuses (False); a WAIT for a
        concurrency slot is recorded, waited out and proposed again."""
        run, task = self.run, self.task
        policy = task.policy_for(run)
        gathered: dict[str, Any] = {}
        if policy.rules_for(run.state.type, StateType.RUNNING):
            gathered = self._gather()
        run.run_count += 1
        keep = self._hold if defer else record
        while True:
            proposed = Running() if run.run_count == 1 else Retrying()
            decision = propose(run, policy, task.config, proposed, keep, **gathered)
            if decision is None or decision.kind is DecisionKind.ACCEPT:
                return True
            if decision.kind is DecisionKind.REJECT or not self._wait_for_slot(decision):
                return False
            gathered["concurrency_blocked"] = None

    def _wait_for_slot(self, decision: Decision) -> bool:
        """Record why the run waits, then wait for a slot; False when the flow was cancelled."""
        run = self.run
        record(run, Pending(message=f"{decision.rule}: {decision.reason}", rule=decision.rule))
        flow_ctx = run.flow_ctx
        with blocking():  # on a pool thread: let the pool start another while this waits
            self.slots = concurrency.acquire(run.tags, _cancel_check(flow_ctx))
        return not (flow_ctx is not None and flow_ctx.cancelled)

    def _hold(self, run: Run, state: State) -> None:
        if state.type is StateType.RUNNING:
            self.held = state
        else:  # Cached, or Failed because an upstream failed: final now
            record(run, state)

    def started(self, ts: float, host: str | None, pid: int | None, worker: str | None) -> None:
        """A worker started the attempt at ``ts``: record where, then the held RUNNING state."""
        run, state = self.run, self.held
        if state is None:
            return
        self.held = None
        # another machine's clock: never before the kernel queued it, never in the future
        state.ts = max(run.state.ts, min(ts, time.time()))
        ev = ran_event(run.id, host, pid, worker)
        recorder.emit(ev)
        if run.view is not None:
            run.view.on_event(ev)
        record(run, state)
        if self.task.on_running_hooks:
            call_hooks(self.task.on_running_hooks, "task", self.task, run, state, **self.log)

    async def abegin(self) -> bool:
        import asyncio

        for u in self.run.upstream:
            if u.future is not None and not u.future.done():
                await u.future._cf.wait_async()
        if self.run.tags and concurrency.limits():
            return await asyncio.to_thread(self.begin)  # may wait for a slot
        return self.begin()

    def _gather(self) -> dict[str, Any]:
        """What the PENDING -> RUNNING rules read: upstream states, cached entry, free slot."""
        run, task = self.run, self.task
        gathered: dict[str, Any] = {}
        if run.upstream:
            gathered["upstream"] = [u.as_input() for u in run.upstream]
        if task.has_cache:
            key, parts = self._cache_key()
            self.cache_key = key
            gathered["cache_key"] = key
            gathered["cache_parts"] = parts
            if key is not None and not task.refresh_cache:
                gathered["cached"] = result_cache.get(key)
        if run.tags:
            taken, blocked = concurrency.try_acquire(run.tags)
            self.slots = taken
            gathered["concurrency_blocked"] = blocked
        return gathered

    def _cache_key(self) -> tuple[str | None, tuple[str, ...]]:
        task = self.task
        try:
            args, kwargs = (
                resolve_call(self.args, self.kwargs)
                if self.run.upstream
                else (
                    self.args,
                    self.kwargs,
                )
            )
            params = task.signature.bind(args, kwargs)
        except Exception:  # an upstream failed: the UpstreamFailed rule decides, not the cache
            return None, ()
        if task.cache_key_fn is None:
            computed = task.cache_policy.compute_key(task, self.task_ctx, params)
            return (None, ()) if computed is None else computed
        try:
            key = task.cache_key_fn(self.task_ctx, params)
        except Exception as exc:  # the user's key function failed: run without caching
            from orion_nb.engine.run_logging import get_run_logger

            get_run_logger(**self.log).warning(
                "cache_key_fn of task %r failed (%s); running without cache",
                task.name,
                describe(exc),
            )
            return None, ()
        parts = getattr(task.cache_key_fn, "cache_parts", ("cache_key_fn",))
        return (None if key is None else str(key)), tuple(parts)

    def _release(self) -> None:
        if self.slots:
            concurrency.release(self.slots)
            self.slots = []

    def complete(self, value: Any) -> RetryIn:
        """The user's code returned ``value``: decide the final state (or a retry)."""
        run, task = self.run, self.task
        self._release()
        if type(value) in PLAIN_TYPES:
            final = Completed(data=value)
        else:
            try:
                final = state_from_return(states_of(value))
            except Exception as exc:
                return self.fail(exc)
        if final.type is not StateType.COMPLETED:
            return self.fail(final.exception(), proposed=final)
        decision = propose(run, task.policy, task.config, final, cache_key=self.cache_key)
        data = final.data
        if decision is not None and decision.cache_insert is not None:
            key, expires_at = decision.cache_insert
            ref = result_cache.put(key, data, expires_at, run.id, task.persists, task.name)
            recorder.emit(cache_event(run.id, key, expires_at, ref))
        elif task.persist_result:
            ref = persist_result(run.id, data, task.name)
            if ref is not None:
                recorder.emit(cache_event(run.id, None, None, ref))
        flow_ctx = run.flow_ctx
        if flow_ctx is not None and type(data) not in PLAIN_TYPES:
            flow_ctx.track_result(data, run.id)
        return None

    def fail(
        self,
        exc: BaseException,
        timed_out: bool = False,
        *,
        proposed: State | None = None,
        inputs: bool = False,
        retry: bool = True,
    ) -> RetryIn:
        """The attempt failed with ``exc`` (or returned the failed state ``proposed``).

        ``inputs``: the inputs could not be resolved; ``retry=False``: trying again cannot
        help (e.g. an argument that cannot be sent to a worker). Neither is retried.
        """
        run, task = self.run, self.task
        self._release()
        _strip_engine_frames(exc)
        if proposed is None:
            what = f"could not resolve the inputs: {describe(exc)}" if inputs else describe(exc)
            proposed = Failed(data=exc, message=what)
        retry_allowed = retry and not inputs
        if retry_allowed and task.retry_condition_fn is not None and run.run_count <= task.retries:
            try:
                retry_allowed = bool(task.retry_condition_fn(task, run, proposed))
            except Exception as err:
                from orion_nb.engine.run_logging import get_run_logger

                get_run_logger(**self.log).error(
                    "retry_condition_fn of task %r failed (%s); not retrying",
                    task.name,
                    describe(err),
                )
                retry_allowed = False
        decision = propose(
            run,
            task.policy,
            task.config,
            proposed,
            exception=exc,
            timed_out=timed_out,
            retry_allowed=retry_allowed,
            random=_random,
        )
        if (
            decision is not None
            and decision.kind is DecisionKind.ACCEPT
            and run.state.type is StateType.SCHEDULED
        ):
            return decision.wait_seconds or 0.0
        return None

    def cancel(self, exc: BaseException) -> None:
        self._release()
        if self.run.state.type not in TERMINAL_TYPES:
            reason = cancel_reason(exc)
            propose(
                self.run,
                self.task.policy,
                self.task.config,
                Cancelled(message=reason, data=CancelledRun(reason)),
            )

    def lost(self, exc: BaseException) -> RetryIn:
        """The worker running the attempt died: a retry if the task has one left, else Crashed."""
        if self.run.run_count <= self.task.retries:
            return self.fail(exc)
        self.crash(exc)
        return None

    def crash(self, exc: BaseException) -> None:
        self._release()
        if self.run.state.type not in TERMINAL_TYPES:
            propose(
                self.run,
                self.task.policy,
                self.task.config,
                Crashed(data=exc, message=describe(exc)),
            )

    def _final(self) -> tuple[State, list[Any]]:
        run, task = self.run, self.task
        state = run.state
        if state.type not in TERMINAL_TYPES:
            # an engine problem left the run unfinished: say so rather than hide it
            state = Crashed(message="the engine stopped before the run finished")
            record(run, state)
        hooks = (
            task.on_completion_hooks
            if state.type is StateType.COMPLETED
            else task.on_failure_hooks
            if state.type is StateType.FAILED
            else []
        )
        return state, hooks

    def _settle(self, state: State) -> State:
        run = self.run
        flow_ctx = run.flow_ctx
        if flow_ctx is not None:
            flow_ctx.active.pop(run.id, None)
        for u in run.upstream:
            u.future = None  # a finished run must not keep its inputs' results alive
        cf = run.cf
        if cf is not None:
            cf.set(state)
        return state

    def done(self) -> State:
        """Final bookkeeping: hooks, the flow's books, the future."""
        state, hooks = self._final()
        if hooks:
            call_hooks(hooks, "task", self.task, self.run, state, **self.log)
        return self._settle(state)

    async def adone(self) -> State:
        state, hooks = self._final()
        if hooks:
            await acall_hooks(hooks, "task", self.task, self.run, state, **self.log)
        return self._settle(state)

    # the async attempt awaits these (task steps do not block, so they run inline)
    async def acomplete(self, value: Any) -> RetryIn:
        return self.complete(value)

    async def afail(self, exc: BaseException, timed_out: bool = False) -> RetryIn:
        return self.fail(exc, timed_out)


def _cancel_check(flow_ctx: FlowRunContext | None) -> Any:
    return lambda: flow_ctx is not None and flow_ctx.cancelled


def cancel_reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    return str(exc) or "cancelled"


def _random() -> float:
    import random

    return random.random()


def _strip_engine_frames(exc: BaseException) -> None:
    """Drop orion_nb's own frames from the front of a user exception's traceback."""
    tb = exc.__traceback__
    while tb is not None and "/orion_nb/engine/" in tb.tb_frame.f_code.co_filename.replace(
        "\\", "/"
    ):
        tb = tb.tb_next
    if tb is not None:
        exc.__traceback__ = tb


def cancel_run(run: TaskRun, reason: str, rule: str | None = None) -> None:
    """Cancel a task run from outside (flow cancellation): record it and stop its thread."""
    if run.state is None or run.state.type in TERMINAL_TYPES:
        return
    if run.remote is not None:  # also cancels its attempt on the cluster
        run.remote.cancel(reason, rule)
        return
    was_running = run.state.type is StateType.RUNNING
    msg = f"{rule}: {reason}" if rule else reason
    record(run, Cancelled(message=msg, rule=rule, data=CancelledRun(reason)))
    if was_running and run.thread_ident is not None and run.thread_ident != _get_ident():
        raise_in_thread(run.thread_ident, CancelledRun)
    cf = run.cf
    if cf is not None:
        cf.set(run.state)
    if run.flow_ctx is not None:
        run.flow_ctx.active.pop(run.id, None)
