"""Driving one task run: creation, the attempt loop, and the final bookkeeping.

Who runs what
-------------
- A direct call (``my_task(x)``) drives the run in the calling thread; an ``async def`` task
  called directly returns a coroutine that drives it on the caller's event loop.
- ``.submit()`` / ``.map()`` hand the driver to the flow's task runner: a sync task runs in a
  worker thread; an async task runs on that worker thread's own event loop
  (:func:`~orion_nb.engine.runners.run_coroutine_in_worker`). A submitted run whose upstream
  futures are unfinished is handed over only when the last of them finishes.
- The driver waits for upstream runs first (helping the pool while it waits), then asks the
  task policy to move the run to RUNNING; the rules gather nothing themselves: the engine
  collects what they read (upstream states, the cached entry, a free slot) in
  :meth:`TaskRunEngine._gather`.

One attempt is one pass through :class:`~orion_nb.engine.attempt.Attempt`, which maps what the
user's code did to a step: returned -> :meth:`TaskRunEngine.complete`, raised ->
:meth:`~TaskRunEngine.fail`, interrupted -> :meth:`~TaskRunEngine.cancel`, anything else ->
:meth:`~TaskRunEngine.crash`. ``complete`` and ``fail`` return :data:`RetryIn`: the seconds
until the next attempt, or ``None`` when the run reached its final state. Cancellation from
outside (a cancelled flow) records Cancelled and raises :class:`CancelledRun` in the run's
thread at its next bytecode.

What the user's code returns decides the final state by Prefect 3's rules
(:mod:`orion_nb.orchestration.final_state`): futures in it become states, a returned State is
used as given, a group of states is judged together.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from orion_nb._events import cache_event, edge_event, ran_event, task_event
from orion_nb.engine import concurrency, recorder
from orion_nb.engine.attempt import AsyncAttempt, Attempt, RetryIn
from orion_nb.engine.cache import persist_result, result_cache
from orion_nb.engine.collector import collector_paused
from orion_nb.engine.context import FlowRunContext, TaskRunContext, _flow_ctx, _task_ctx
from orion_nb.engine.futures import TaskFuture
from orion_nb.engine.hooks import acall_hooks, call_hooks
from orion_nb.engine.inputs import Upstream, find_upstream, resolve_call, states_of
from orion_nb.engine.outcome import Outcome
from orion_nb.engine.params import format_name, new_id
from orion_nb.engine.runners import blocking, default_runner, run_coroutine_in_worker
from orion_nb.engine.runs import Run, TaskRun
from orion_nb.engine.tags import current_tags
from orion_nb.engine.timeouts import raise_in_thread
from orion_nb.engine.transitions import propose, record
from orion_nb.engine.walk import PLAIN_TYPES
from orion_nb.errors import CancelledRun, OrionNBWarning, ParameterError, describe
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
    from orion_nb.engine.tasks import Task

__all__ = [
    "TaskRunEngine",
    "arun_task",
    "cancel_run",
    "create_task_run",
    "run_task",
    "submit_task_run",
]

_standalone_keys: dict[str, int] = {}
_standalone_lock = threading.Lock()
_get_ident = threading.get_ident


# -- entry points (called by Task) ------------------------------------------------------------


def start_call(
    task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool
) -> tuple[FlowRunContext | None, State | None]:
    """Where a call runs (its flow run), and whether it fits the task's signature.

    A call that does not fit is recorded as a Failed run (hooks called); its state is returned
    when the caller asked for states, otherwise the :class:`ParameterError` is raised.
    """
    __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
    flow_ctx = _flow_ctx.get()
    if flow_ctx is None:
        recorder.get_writer()
        _warn_if_detached(task)
    try:
        task.signature.check(args, kwargs)
    except ParameterError as err:
        state = record_bad_call(task, flow_ctx, args, kwargs, err)
        if return_state:
            return flow_ctx, state
        raise
    return flow_ctx, None


def run_task(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: Any,
    return_state: bool,
) -> Any:
    """A direct call of a sync task: drive its run here, return its result (or state)."""
    __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
    flow_ctx, rejected = start_call(task, args, kwargs, return_state)
    if rejected is not None:
        return rejected
    run = create_task_run(task, flow_ctx, args, kwargs, wait_for)
    state = drive_sync(task, run, args, kwargs)
    if flow_ctx is None:
        recorder.flush()
    return state if return_state else state.result()


async def arun_task(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: Any,
    return_state: bool,
) -> Any:
    """A direct call of an async task, as the coroutine the caller awaits."""
    __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
    flow_ctx, rejected = start_call(task, args, kwargs, return_state)
    if rejected is not None:
        return rejected
    run = create_task_run(task, flow_ctx, args, kwargs, wait_for)
    state = await drive_async(task, run, args, kwargs)
    if flow_ctx is None:
        await recorder.aflush()
    return state if return_state else state.result()


def submit_task_run(
    task: Task[Any, Any],
    run: TaskRun,
    flow_ctx: FlowRunContext | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> TaskFuture[Any]:
    """Hand ``run`` to the flow's task runner once its upstream futures are done."""
    return Dispatch(task, flow_ctx, shared=False).submit(run, args, kwargs)


class Dispatch:
    """What the runs of one ``.submit()`` or ``.map()`` call share: the runner, the caller's
    context and the driver, looked up once per call instead of once per run.

    Each run still executes in its own copy of the caller's context (a task that sets a
    context variable does not leak it into its siblings): a ``.map()`` copies the context
    once and each run takes a copy of that copy when a worker starts it, so a queued run
    holds no context object of its own.
    """

    __slots__ = ("ctx", "driver", "runner", "shared", "task")

    def __init__(
        self, task: Task[Any, Any], flow_ctx: FlowRunContext | None, *, shared: bool
    ) -> None:
        self.task = task
        self.runner = flow_ctx.task_runner if flow_ctx is not None else default_runner()
        self.ctx = contextvars.copy_context()
        self.shared = shared  # several runs start from self.ctx: each needs its own copy
        self.driver = _drive_async_in_worker if task.is_async else drive_sync

    def submit(
        self, run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> TaskFuture[Any]:
        """A future for ``run``, started now or when its last unfinished upstream finishes."""
        cf = run.cf = Outcome()
        future: TaskFuture[Any] = TaskFuture(run, cf)
        start = self._starter(run, args, kwargs)
        waiting = (
            [u.future for u in run.upstream if u.future is not None and not u.future.done()]
            if run.upstream
            else None
        )
        if waiting:
            _start_after(waiting, start)
        else:
            start()
        return future

    def _starter(
        self, run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Callable[[], None]:
        runner, task = self.runner, self.task
        if runner.remote:
            # the kernel drives the run; the runner's workers execute only the user's function
            from orion_nb.engine.remote import RemoteRun

            eng = TaskRunEngine(task, run, args, kwargs)
            return RemoteRun(runner, eng, self.ctx).start  # type: ignore[arg-type]
        if self.shared:
            job = functools.partial(_run_in_copy, self.ctx, self.driver, task, run, args, kwargs)
        else:
            job = functools.partial(self.ctx.run, self.driver, task, run, args, kwargs)
        return functools.partial(runner.submit, job)


def submit_map(
    task: Task[Any, Any],
    flow_ctx: FlowRunContext | None,
    count: int,
    calls: Iterable[tuple[tuple[Any, ...], dict[str, Any]]],
    sources: list[Upstream],
    wait_for: Any,
) -> list[TaskFuture[Any]]:
    """One submitted run per ``(args, kwargs)`` in ``calls`` (``count`` of them), each also
    fed by ``sources`` (mapped iterables that are another run's result)."""
    if flow_ctx is None:
        recorder.get_writer()
    dispatch = Dispatch(task, flow_ctx, shared=True)
    extra = current_tags()
    first = _dynamic_keys(task, flow_ctx, count)
    futures: list[TaskFuture[Any]] = []
    calls = iter(calls)
    for chunk in range(first, first + count, MAP_CHUNK):
        with collector_paused():  # see orion_nb.engine.collector for why
            for dyn, (args, kwargs) in enumerate(itertools.islice(calls, MAP_CHUNK), chunk):
                run = create_task_run(task, flow_ctx, args, kwargs, wait_for, dyn, extra)
                if sources:
                    _add_sources(run, sources)
                futures.append(dispatch.submit(run, args, kwargs))
    return futures


#: runs a ``.map()`` creates per pause of the garbage collector
MAP_CHUNK = 4096


def _add_sources(run: TaskRun, sources: list[Upstream]) -> None:
    view = run.view
    for src in sources:
        run.upstream.append(
            Upstream(src.parameter, src.run_id, src.name, future=src.future, allowed=src.allowed)
        )
        ev = edge_event(run.id, src.run_id, src.parameter)
        recorder.emit(ev)
        if view is not None:
            view.on_event(ev)


def _run_in_copy(ctx: contextvars.Context, driver: Callable[..., State], *args: Any) -> State:
    return ctx.copy().run(driver, *args)


def _start_after(waiting: list[TaskFuture[Any]], start: Callable[[], None]) -> None:
    """Call ``start()`` once every future in ``waiting`` is done."""
    remaining = len(waiting)
    lock = threading.Lock()

    def one_done(_f: Any) -> None:
        nonlocal remaining
        with lock:
            remaining -= 1
            go = remaining == 0
        if go:
            start()

    for f in waiting:
        f.add_done_callback(one_done)


def _drive_async_in_worker(
    task: Task[Any, Any], run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> State:
    return run_coroutine_in_worker(drive_async(task, run, args, kwargs))


# -- creating runs ----------------------------------------------------------------------------


def _dynamic_key(task: Task[Any, Any], flow_ctx: FlowRunContext | None) -> int:
    return _dynamic_keys(task, flow_ctx, 1)


def _dynamic_keys(task: Task[Any, Any], flow_ctx: FlowRunContext | None, count: int) -> int:
    """Reserve ``count`` consecutive dynamic keys for runs of ``task``; returns the first."""
    if flow_ctx is not None:
        return flow_ctx.next_dynamic_key(task.task_key, count)
    with _standalone_lock:
        n = _standalone_keys.get(task.task_key, 0)
        _standalone_keys[task.task_key] = n + count
    return n


def _new_run(
    task: Task[Any, Any],
    flow_ctx: FlowRunContext | None,
    name: str | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    dyn: int | None = None,
    extra: frozenset[str] | None = None,
) -> TaskRun:
    if dyn is None:
        dyn = _dynamic_key(task, flow_ctx)
    default = f"{task.name}-{dyn}"
    if name is None:
        name = (
            default
            if task.task_run_name is None
            else format_name(task.task_run_name, task.signature.bind(args, kwargs), default)
        )
    view = flow_ctx.view if flow_ctx is not None else None
    run = TaskRun(new_id(), name, task, flow_ctx, view)
    if extra is None:
        extra = current_tags()
    if extra:
        run.tags = task.tags | extra
    ev = task_event(
        run.id,
        flow_ctx.run_id if flow_ctx else None,
        task.name,
        task.task_key,
        str(dyn),
        name,
        run.tags,
        time.time(),
    )
    recorder.emit(ev)
    if view is not None:
        view.on_event(ev)
    return run


def create_task_run(
    task: Task[Any, Any],
    flow_ctx: FlowRunContext | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: Any,
    dyn: int | None = None,
    extra: frozenset[str] | None = None,
) -> TaskRun:
    """A new Pending task run, with an edge for every upstream run its inputs reference.

    ``dyn`` (its dynamic key) and ``extra`` (the tags of enclosing ``tags()`` blocks) are
    looked up here unless the caller did so once for many runs (``.map()``).
    """
    run = _new_run(task, flow_ctx, None, args, kwargs, dyn, extra)
    upstream = find_upstream(
        args,
        kwargs,
        task.signature.positional,
        flow_ctx.result_ids if flow_ctx else None,
        wait_for,
    )
    if upstream:
        run.upstream = upstream
        view = run.view
        for u in upstream:
            ev = edge_event(run.id, u.run_id, u.parameter)
            recorder.emit(ev)
            if view is not None:
                view.on_event(ev)
    record(run, Pending())
    if flow_ctx is not None:
        flow_ctx.active[run.id] = run
    return run


def record_bad_call(
    task: Task[Any, Any],
    flow_ctx: FlowRunContext | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    err: ParameterError,
) -> State:
    """A call that does not fit the signature is still a run: recorded Failed, hooks called."""
    run = _new_run(task, flow_ctx, f"{task.name}-invalid", args, kwargs)
    record(run, Pending())
    state = Failed(data=err, message=str(err))
    record(run, state)
    call_hooks(
        task.on_failure_hooks, "task", task, run, state, task_run_id=run.id, run_name=run.name
    )
    if flow_ctx is None:
        recorder.flush()
    return state


_detached_warned: set[str] = set()


def _warn_if_detached(task: Task[Any, Any]) -> None:
    """A task called from a thread started inside a flow run does not see that flow run."""
    from orion_nb.engine.flow_engine import active_flow_runs

    active = active_flow_runs()
    if not active or task.task_key in _detached_warned:
        return
    _detached_warned.add(task.task_key)
    warnings.warn(
        f"Task {task.name!r} was called in a thread that is not part of a flow run while flow "
        f"run {active[0]!r} is running in this process, so it is recorded as a standalone task "
        "run. To attach it to the flow run, call it with task.submit(...), or start the thread "
        "with the flow's context: threading.Thread(target=contextvars.copy_context().run, "
        "args=(fn,)).",
        OrionNBWarning,
        stacklevel=4,
    )


# -- the drivers ------------------------------------------------------------------------------


def drive_sync(
    task: Task[Any, Any], run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> State:
    """Run every attempt of ``run`` in this thread; returns its final state."""
    __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
    eng = TaskRunEngine(task, run, args, kwargs)
    try:
        while eng.begin():
            if task.on_running_hooks:
                call_hooks(task.on_running_hooks, "task", task, run, run.state, **eng.log)
            run.thread_ident = _get_ident()
            token = _task_ctx.set(eng.task_ctx)
            try:
                with Attempt(eng, task.timeout_seconds) as attempt:
                    attempt.returned(task.fn(*eng.args, **eng.kwargs))
            finally:
                _task_ctx.reset(token)
            if attempt.retry_in is None:
                break
            if attempt.retry_in > 0:
                time.sleep(attempt.retry_in)
    except CancelledRun:
        pass  # recorded as Cancelled; the caller gets the Cancelled state
    except BaseException:
        eng.done()
        raise
    return eng.done()


async def drive_async(
    task: Task[Any, Any], run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> State:
    """Run every attempt of an async task's ``run`` on the running loop."""
    __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
    import asyncio

    eng = TaskRunEngine(task, run, args, kwargs)
    try:
        while await eng.abegin():
            if task.on_running_hooks:
                await acall_hooks(task.on_running_hooks, "task", task, run, run.state, **eng.log)
            token = _task_ctx.set(eng.task_ctx)
            try:
                async with AsyncAttempt(eng, task.timeout_seconds) as attempt:
                    attempt.returned(await task.fn(*eng.args, **eng.kwargs))
            finally:
                _task_ctx.reset(token)
            if attempt.retry_in is None:
                break
            if attempt.retry_in > 0:
                await asyncio.sleep(attempt.retry_in)
    except CancelledRun:
        pass
    except BaseException:
        await eng.adone()
        raise
    return await eng.adone()


# -- the steps --------------------------------------------------------------------------------


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
        run, task = self.run, self.task
        if run.state.type in TERMINAL_TYPES:  # cancelled while it waited
            return False
        for u in run.upstream:
            if u.future is not None:
                u.future.wait()
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
                break
            if decision.kind is DecisionKind.REJECT:
                self._release()
                return False
            # WAIT: record why the run waits, then wait for a slot and ask again
            record(run, Pending(message=f"{decision.rule}: {decision.reason}", rule=decision.rule))
            flow_ctx = run.flow_ctx
            with blocking():  # on a pool thread: let the pool start another while this waits
                self.slots = concurrency.acquire(run.tags, _cancel_check(flow_ctx))
            if flow_ctx is not None and flow_ctx.cancelled:
                self._release()
                return False
            gathered["concurrency_blocked"] = None
        state = self.held if defer else run.state
        if state is None or state.type is not StateType.RUNNING:
            self._release()
            return False
        if run.upstream or task.has_cache:
            try:
                self.args, self.kwargs = resolve_call(self.args, self.kwargs)
            except Exception as exc:  # an input that cannot be resolved is a failure, not a crash
                self.fail(exc, inputs=True)
                return False
        return True

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
