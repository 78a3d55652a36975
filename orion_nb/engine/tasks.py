"""``@task`` and the task run engine.

A task run goes Pending -> Running -> Completed in the calling thread for a direct call, or
on the flow's task runner for ``.submit()`` / ``.map()``. Every step is a proposal to the task
policy (``orchestration.policies.TASK_POLICY``, compiled once per definition); the engine only
gathers what the rules need (cached entry, upstream states, free slots), runs the user's code
and acts on the decision.

The engine is written as small steps (:meth:`TaskRunEngine.begin`, :meth:`TaskRunEngine.finish`)
driven by a sync loop and an async loop, so sync and async tasks share every decision.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import pickle
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from orion_nb._loop import get_loop_thread
from orion_nb.engine import concurrency, recorder
from orion_nb.engine.cache import result_cache
from orion_nb.engine.context import (
    FlowRunContext,
    TaskRunContext,
    _flow_ctx,
    _task_ctx,
    fingerprint,
)
from orion_nb.engine.futures import FutureList, TaskFuture
from orion_nb.engine.inputs import Upstream, find_upstream, resolve_call, unmapped
from orion_nb.engine.params import Signature, format_name, new_id
from orion_nb.engine.runners import default_runner
from orion_nb.engine.tags import current_tags
from orion_nb.engine.timeouts import deadline, raise_in_thread
from orion_nb.engine.transitions import Run, propose, record
from orion_nb.errors import CancelledRun, DefinitionError, ParameterError, RunTimeoutError
from orion_nb.orchestration.policies import TASK_POLICY
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

if TYPE_CHECKING:
    pass

__all__ = ["Task", "TaskRun", "exponential_backoff", "task"]

P = ParamSpec("P")
R = TypeVar("R")

_PLAIN_RESULTS = frozenset({type(None), bool, int, float, str, bytes, complex})
_standalone_keys: dict[str, int] = {}


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """``retry_delay_seconds=exponential_backoff(2)`` waits 2, 4, 8, ... seconds."""

    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2**i for i in range(retries)]

    return delays


def describe_exception(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class TaskRun(Run):
    """A task run while it is known to the engine (held by its future)."""

    __slots__ = ("cf", "flow_ctx", "tags", "task", "thread_ident", "upstream")

    def __init__(
        self, id: str, name: str, task: Task[Any, Any], flow_ctx: FlowRunContext | None, view: Any
    ) -> None:
        super().__init__(id, "task", name, view)
        self.task = task
        self.flow_ctx = flow_ctx
        self.upstream: list[Upstream] = []
        self.thread_ident: int | None = None
        self.cf: concurrent.futures.Future[State] | None = None
        self.tags: frozenset[str] = task.tags

    def __repr__(self) -> str:
        return f"TaskRun({self.name!r}, {self.state!r})"


def _validate_options(name: str, opts: dict[str, Any]) -> None:
    def bad(msg: str) -> DefinitionError:
        return DefinitionError(f"Task {name!r}: {msg}")

    retries = opts["retries"]
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise bad(f"retries must be a whole number >= 0, not {retries!r}.")
    delay = opts["retry_delay_seconds"]
    if isinstance(delay, (list, tuple)):
        if any(not isinstance(d, (int, float)) or d < 0 for d in delay):
            raise bad(f"retry_delay_seconds must hold numbers >= 0, not {list(delay)!r}.")
    elif not callable(delay) and (not isinstance(delay, (int, float)) or delay < 0):
        raise bad(
            f"retry_delay_seconds must be a number >= 0, a list of them, or a callable, not {delay!r}."
        )
    jitter = opts["retry_jitter_factor"]
    if jitter is not None and (not isinstance(jitter, (int, float)) or jitter < 0):
        raise bad(f"retry_jitter_factor must be a number >= 0, not {jitter!r}.")
    timeout = opts["timeout_seconds"]
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise bad(f"timeout_seconds must be a positive number of seconds, not {timeout!r}.")
    for key in ("cache_key_fn", "retry_condition_fn"):
        if opts[key] is not None and not callable(opts[key]):
            raise bad(
                f"{key} must be callable (e.g. orion_nb.task_input_hash), not {type(opts[key]).__name__}."
            )
    exp = opts["cache_expiration"]
    if exp is not None and not isinstance(exp, (timedelta, int, float)):
        raise bad(f"cache_expiration must be a timedelta or seconds, not {type(exp).__name__}.")
    for key in ("on_completion", "on_failure"):
        hooks = opts[key]
        if hooks is not None and (
            not isinstance(hooks, (list, tuple)) or not all(callable(h) for h in hooks)
        ):
            raise bad(f"{key} must be a list of callables, not {hooks!r}.")


class Task(Generic[P, R]):
    """A function whose calls become recorded, orchestrated task runs.

    Create with ``@task`` (bare or with options). Calling it runs it and returns its result;
    ``.submit()`` returns a :class:`~orion_nb.engine.futures.TaskFuture`; ``.map()`` submits one
    run per element.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        task_run_name: str | Callable[..., str] | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        retries: int = 0,
        retry_delay_seconds: float | list[float] | Callable[[int], list[float]] = 0,
        retry_jitter_factor: float | None = None,
        retry_condition_fn: Callable[..., bool] | None = None,
        timeout_seconds: float | None = None,
        cache_key_fn: Callable[..., str | None] | None = None,
        cache_expiration: timedelta | float | None = None,
        refresh_cache: bool = False,
        persist_result: bool | None = None,
        log_prints: bool | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
    ) -> None:
        if not callable(fn):
            raise DefinitionError(
                f"@task decorates functions, not {type(fn).__name__} objects; write @task above a 'def'."
            )
        self.fn = fn
        self.name: str = str(name or getattr(fn, "__name__", type(fn).__name__))
        opts = dict(
            name=name,
            task_run_name=task_run_name,
            description=description,
            tags=tags,
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
            retry_jitter_factor=retry_jitter_factor,
            retry_condition_fn=retry_condition_fn,
            timeout_seconds=timeout_seconds,
            cache_key_fn=cache_key_fn,
            cache_expiration=cache_expiration,
            refresh_cache=refresh_cache,
            persist_result=persist_result,
            log_prints=log_prints,
            on_completion=on_completion,
            on_failure=on_failure,
        )
        _validate_options(str(self.name), opts)
        self._options = opts
        self.task_run_name = task_run_name
        self.description = description or inspect.getdoc(fn)
        self.tags = frozenset(tags or ())
        self.retries = retries
        if callable(retry_delay_seconds):
            retry_delay_seconds = list(retry_delay_seconds(retries))  # type: ignore[arg-type]
        self.retry_delay_seconds = retry_delay_seconds
        self.retry_condition_fn = retry_condition_fn
        self.timeout_seconds = timeout_seconds
        self.cache_key_fn = cache_key_fn
        exp = (
            cache_expiration.total_seconds()
            if isinstance(cache_expiration, timedelta)
            else cache_expiration
        )
        self.cache_expiration = exp
        self.refresh_cache = refresh_cache
        self.persist_result = persist_result
        self.log_prints = log_prints
        if log_prints:
            from orion_nb.engine.run_logging import install_print_hook

            install_print_hook()
        self.on_completion = list(on_completion or ())
        self.on_failure = list(on_failure or ())
        self.is_async = inspect.iscoroutinefunction(fn)
        self.task_key = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', self.name)}"
        self.signature = Signature(fn, "task", self.name)
        self.config = RunConfig(
            "task",
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,  # type: ignore[arg-type]
            retry_jitter_factor=retry_jitter_factor,
            timeout_seconds=timeout_seconds,
            has_cache=cache_key_fn is not None,
            cache_expiration=exp,
            refresh_cache=refresh_cache,
            tags=self.tags,
        )
        self.policy = TASK_POLICY.compile(self.config)
        self.policy_upstream = TASK_POLICY.compile(self.config, has_upstream=True)
        self._tagged_policies: dict[tuple[frozenset[str], bool], Any] = {}
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"

    def _policy_for(self, run: TaskRun) -> Any:
        if run.tags is self.tags:
            return self.policy_upstream if run.upstream else self.policy
        key = (run.tags, bool(run.upstream))
        policy = self._tagged_policies.get(key)
        if policy is None:
            config = RunConfig(
                "task",
                retries=self.retries,
                retry_delay_seconds=self.retry_delay_seconds,  # type: ignore[arg-type]
                retry_jitter_factor=self.config.retry_jitter_factor,
                timeout_seconds=self.timeout_seconds,
                has_cache=self.cache_key_fn is not None,
                cache_expiration=self.cache_expiration,
                refresh_cache=self.refresh_cache,
                tags=run.tags,
            )
            policy = self._tagged_policies[key] = TASK_POLICY.compile(
                config, has_upstream=bool(run.upstream)
            )
        return policy

    def with_options(self, **changes: Any) -> Task[P, R]:
        """A copy of this task with some options changed (same function)."""
        unknown = set(changes) - set(self._options)
        if unknown:
            raise DefinitionError(
                f"Task {self.name!r}.with_options() got unknown option(s) {sorted(unknown)}; "
                f"options are {sorted(self._options)}."
            )
        opts = {**self._options, **changes}
        return Task(self.fn, **opts)

    # -- calling ------------------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        return_state = bool(kwargs.pop("return_state", False))
        wait_for = kwargs.pop("wait_for", None)
        flow_ctx = _flow_ctx.get()
        if self.is_async:
            return self._call_async(args, kwargs, flow_ctx, wait_for, return_state)  # type: ignore[return-value]
        self.signature.check(args, kwargs)
        if flow_ctx is None:
            recorder.get_writer()
        run = self._create_run(flow_ctx, args, kwargs, wait_for)
        state = self._drive_sync(run, args, kwargs)
        if flow_ctx is None:
            recorder.flush()
        if return_state:
            return state  # type: ignore[return-value]
        return state.result()  # type: ignore[no-any-return]

    def _call_async(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        flow_ctx: FlowRunContext | None,
        wait_for: Any,
        return_state: bool,
    ) -> Any:
        self.signature.check(args, kwargs)
        in_sync_run = _task_ctx.get() is not None or (
            flow_ctx is not None and not flow_ctx.is_async
        )
        try:
            asyncio.get_running_loop()
            has_loop = True
        except RuntimeError:
            has_loop = False
        if flow_ctx is None:
            recorder.get_writer()
        run = self._create_run(flow_ctx, args, kwargs, wait_for)

        async def go() -> Any:
            state = await self._drive_async(run, args, kwargs)
            if flow_ctx is None:
                await recorder.aflush()
            return state if return_state else state.result()

        if has_loop and not in_sync_run:
            return go()
        # called from sync code: run to completion on the engine's loop thread
        ctx = contextvars.copy_context()
        fut = get_loop_thread().submit(_in_context(ctx, go()))
        return fut.result()

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> TaskFuture[R]:
        """Run the task on the flow's task runner; returns a future at once."""
        wait_for = kwargs.pop("wait_for", None)
        kwargs.pop("return_state", None)
        self.signature.check(args, kwargs)
        flow_ctx = _flow_ctx.get()
        if flow_ctx is None:
            recorder.get_writer()
        run = self._create_run(flow_ctx, args, kwargs, wait_for)
        return self._submit_run(run, flow_ctx, args, kwargs)

    def _submit_run(
        self,
        run: TaskRun,
        flow_ctx: FlowRunContext | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> TaskFuture[R]:
        cf: concurrent.futures.Future[State] = concurrent.futures.Future()
        run.cf = cf
        future: TaskFuture[R] = TaskFuture(run, cf)
        ctx = contextvars.copy_context()
        if self.is_async:

            def start() -> None:
                get_loop_thread().submit(_in_context(ctx, self._drive_async(run, args, kwargs)))

        else:
            runner = flow_ctx.task_runner if flow_ctx is not None else default_runner()

            def start() -> None:
                runner.submit(functools.partial(ctx.run, self._drive_sync, run, args, kwargs))

        waiting = [u.future for u in run.upstream if u.future is not None and not u.future.done()]
        if not waiting:
            start()
        else:
            remaining = [len(waiting)]
            lock = _countdown_lock

            def one_done(_f: Any) -> None:
                with lock:
                    remaining[0] -= 1
                    go = remaining[0] == 0
                if go:
                    start()

            for f in waiting:
                f.add_done_callback(one_done)
        return future

    def map(self, *args: Any, **kwargs: Any) -> FutureList[R]:
        """Submit one run per element of the iterable arguments (``unmapped(x)`` stays whole)."""
        wait_for = kwargs.pop("wait_for", None)
        kwargs.pop("return_state", None)
        names = self.signature.positional
        iterables: dict[Any, list[Any]] = {}
        static_args: list[Any] = []
        for i, value in enumerate(args):
            key: Any = i
            static_args.append(value)
            if _is_mappable(value):
                iterables[key] = _as_list(value)
        for k, value in kwargs.items():
            if _is_mappable(value):
                iterables[k] = _as_list(value)
        if not iterables:
            raise ParameterError(
                f"Task {self.name!r}.map() needs at least one iterable argument to map over; "
                "use .submit() for a single run."
            )
        lengths = {k: len(v) for k, v in iterables.items()}
        if len(set(lengths.values())) > 1:
            desc = ", ".join(
                f"{names[k] if isinstance(k, int) and k < len(names) else k}={n}"
                for k, n in lengths.items()
            )
            raise ParameterError(
                f"Task {self.name!r}.map() got iterables of different lengths ({desc}); "
                "make them the same length or wrap the constant ones in unmapped(...)."
            )
        n = next(iter(lengths.values()))
        flow_ctx = _flow_ctx.get()
        # an iterable that is a task's result (or future) is an upstream of every mapped run
        sources: dict[Any, tuple[str, str, TaskFuture[Any] | None]] = {}
        for key in iterables:
            original = args[key] if isinstance(key, int) else kwargs[key]
            if isinstance(original, TaskFuture):
                sources[key] = (original.run.id, original.run.name, original)
            elif flow_ctx is not None:
                hit = flow_ctx.result_ids.get(id(original))
                if (
                    hit is not None
                    and hit[1] is type(original)
                    and (hit[2] is None or hit[2] == fingerprint(original))
                ):
                    sources[key] = (hit[0], hit[0][-8:], None)
        if flow_ctx is None:
            recorder.get_writer()
        futures: FutureList[R] = FutureList()
        for i in range(n):
            call_args = tuple(
                iterables[j][i] if j in iterables else _unwrap(a) for j, a in enumerate(static_args)
            )
            call_kwargs = {
                k: (iterables[k][i] if k in iterables else _unwrap(v)) for k, v in kwargs.items()
            }
            if i == 0:
                self.signature.check(call_args, call_kwargs)
            run = self._create_run(flow_ctx, call_args, call_kwargs, wait_for)
            for key, src in sources.items():
                param = names[key] if isinstance(key, int) and key < len(names) else str(key)
                run.upstream.append(Upstream(param, src[0], src[1], future=src[2]))
                recorder.emit(("edge", run.id, src[0], param))
            futures.append(self._submit_run(run, flow_ctx, call_args, call_kwargs))
        return futures

    # -- the engine ---------------------------------------------------------------------------
    def _create_run(
        self,
        flow_ctx: FlowRunContext | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wait_for: Any,
    ) -> TaskRun:
        rid = new_id()
        if flow_ctx is not None:
            dyn = flow_ctx.next_dynamic_key(self.task_key)
            view = flow_ctx.view
        else:
            dyn = _standalone_keys.get(self.task_key, 0)
            _standalone_keys[self.task_key] = dyn + 1
            view = None
        if self.task_run_name is None:
            name = f"{self.name}-{dyn}"
        else:
            name = format_name(
                self.task_run_name, self.signature.bind(args, kwargs), f"{self.name}-{dyn}"
            )
        run = TaskRun(rid, name, self, flow_ctx, view)
        extra = current_tags()
        if extra:
            run.tags = self.tags | extra
        ev = (
            "task",
            rid,
            flow_ctx.run_id if flow_ctx else None,
            self.name,
            self.task_key,
            str(dyn),
            name,
            run.tags,
            time.time(),
        )
        recorder.emit(ev)
        if view is not None:
            view.on_event(ev)
        upstream = find_upstream(
            args,
            kwargs,
            self.signature.positional,
            flow_ctx.result_ids if flow_ctx else None,
            wait_for,
        )
        if upstream:
            run.upstream = upstream
            for u in upstream:
                recorder.emit(("edge", rid, u.run_id, u.parameter))
                if view is not None:
                    view.on_event(("edge", rid, u.run_id, u.parameter))
        record(run, Pending())
        if flow_ctx is not None:
            flow_ctx.active[rid] = run
        return run

    def _drive_sync(self, run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]) -> State:
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        eng = TaskRunEngine(self, run, args, kwargs)
        try:
            while True:
                if not eng.begin():
                    break
                run.thread_ident = _get_ident()
                try:
                    token = _task_ctx.set(eng.task_ctx)
                    try:
                        if self.timeout_seconds is None:
                            dl = None
                            result = self.fn(*eng.args, **eng.kwargs)
                        else:
                            with deadline(self.timeout_seconds) as dl:
                                result = self.fn(*eng.args, **eng.kwargs)
                    finally:
                        _task_ctx.reset(token)
                except RunTimeoutError as exc:
                    delay = eng.fail(exc, timed_out=dl is not None and dl.fired)
                except (KeyboardInterrupt, CancelledRun) as exc:
                    eng.cancel(exc)
                    raise
                except Exception as exc:
                    delay = eng.fail(exc)
                except BaseException as exc:
                    eng.crash(exc)
                    raise
                else:
                    delay = eng.complete(result)
                if delay is None:
                    break
                if delay > 0:
                    time.sleep(delay)
        except CancelledRun:
            pass
        except BaseException:
            eng.done()
            raise
        return eng.done()

    async def _drive_async(
        self, run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> State:
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        eng = TaskRunEngine(self, run, args, kwargs)
        try:
            while True:
                if not await eng.abegin():
                    break
                token = _task_ctx.set(eng.task_ctx)
                try:
                    coro = self.fn(*eng.args, **eng.kwargs)
                    timed_out = False
                    try:
                        if self.timeout_seconds is not None:
                            try:
                                async with asyncio.timeout(self.timeout_seconds):
                                    result = await coro  # type: ignore[misc]
                            except TimeoutError as exc:
                                timed_out = True
                                raise RunTimeoutError(
                                    f"Run exceeded timeout_seconds={self.timeout_seconds:g}."
                                ) from exc
                        else:
                            result = await coro  # type: ignore[misc]
                    except RunTimeoutError as exc:
                        delay = eng.fail(exc, timed_out=timed_out)
                    except (KeyboardInterrupt, CancelledRun, asyncio.CancelledError) as exc:
                        eng.cancel(exc)
                        raise
                    except Exception as exc:
                        delay = eng.fail(exc)
                    except BaseException as exc:
                        eng.crash(exc)
                        raise
                    else:
                        delay = eng.complete(result)
                finally:
                    _task_ctx.reset(token)
                if delay is None:
                    break
                if delay > 0:
                    await asyncio.sleep(delay)
        except CancelledRun:
            pass
        except BaseException:
            eng.done()
            raise
        return eng.done()


_countdown_lock = __import__("threading").Lock()
_get_ident = __import__("threading").get_ident


async def _in_context(ctx: contextvars.Context, coro: Awaitable[Any]) -> Any:
    """Await ``coro`` in a task that runs in ``ctx`` (so runs see the right flow)."""
    loop = asyncio.get_running_loop()
    task: asyncio.Task[Any] = ctx.run(loop.create_task, coro)  # type: ignore[arg-type]
    return await task


def _is_mappable(value: Any) -> bool:
    if isinstance(value, (unmapped, str, bytes)):
        return False
    if isinstance(value, TaskFuture):
        return True
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, TaskFuture):
        value = value.result()
    return list(value)


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, unmapped) else value


class TaskRunEngine:
    """The steps of one task run; driven by ``Task._drive_sync`` / ``Task._drive_async``."""

    __slots__ = ("args", "cache_key", "exc", "kwargs", "run", "slots", "task", "task_ctx")

    def __init__(
        self, task: Task[Any, Any], run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.task = task
        self.run = run
        self.args = args
        self.kwargs = kwargs
        self.exc: BaseException | None = None
        self.slots: list[str] = []
        self.cache_key: str | None = None
        flow_ctx = run.flow_ctx
        lp = (
            task.log_prints
            if task.log_prints is not None
            else (flow_ctx.log_prints if flow_ctx else False)
        )
        self.task_ctx = TaskRunContext(task, run, flow_ctx, kwargs, lp)

    def begin(self) -> bool:
        """Move the run to RUNNING. Returns False when it must not run (cached, failed upstream,
        cancelled): the run is then already in its final state."""
        run = self.run
        task = self.task
        if run.state.type in TERMINAL_TYPES:  # cancelled while it waited
            return False
        if run.upstream:
            for u in run.upstream:
                if u.future is not None:
                    u.future.wait()
        policy = task._policy_for(run)
        ctx_kw: dict[str, Any] = {}
        if policy.index.get((run.state.type, StateType.RUNNING)):
            ctx_kw = self._gather()
        run.run_count += 1
        proposed = Running() if run.run_count == 1 else Retrying()
        while True:
            decision = propose(run, policy, task.config, proposed, **ctx_kw)
            if decision is None:
                break
            if decision.kind is DecisionKind.WAIT:
                # record why the run waits, then wait for a slot and ask again
                record(
                    run, Pending(message=f"{decision.rule}: {decision.reason}", rule=decision.rule)
                )
                flow_ctx = run.flow_ctx
                self.slots = concurrency.acquire(run.tags, _cancel_check(flow_ctx))
                if flow_ctx is not None and flow_ctx.cancelled:
                    concurrency.release(self.slots)
                    self.slots = []
                    return False
                ctx_kw["concurrency_blocked"] = None
                proposed = Running() if run.run_count == 1 else Retrying()
                continue
            if decision.kind is DecisionKind.REJECT:
                self._release()
                return False
            break
        if run.state.type is not StateType.RUNNING:
            self._release()
            return False
        if run.upstream or task.cache_key_fn is not None:
            self.args, self.kwargs = resolve_call(self.args, self.kwargs)
        return True

    async def abegin(self) -> bool:
        if self.run.upstream:
            for u in self.run.upstream:
                if u.future is not None and not u.future.done():
                    await asyncio.wrap_future(u.future._cf)
        if self.run.tags and concurrency.limits():
            return await asyncio.to_thread(self.begin)
        return self.begin()

    def _gather(self) -> dict[str, Any]:
        """Collect what the PENDING -> RUNNING rules need to know."""
        run, task = self.run, self.task
        kw: dict[str, Any] = {}
        if run.upstream:
            kw["upstream"] = [
                (u.name, u.current_state() or Completed(), u.allowed)
                for u in run.upstream
                if u.current_state() is not None or u.future is None
            ]
            kw["upstream"] = [(n, s, a) for n, s, a in kw["upstream"] if s is not None]
        if task.cache_key_fn is not None:
            args, kwargs = (
                resolve_call(self.args, self.kwargs) if run.upstream else (self.args, self.kwargs)
            )
            try:
                params = task.signature.bind(args, kwargs)
                key = task.cache_key_fn(self.task_ctx, params)
            except Exception as exc:  # the user's key function failed: run without caching
                from orion_nb.engine.run_logging import get_run_logger

                get_run_logger(task_run_id=run.id, run_name=run.name).warning(
                    "cache_key_fn of task %r failed (%s); running without cache",
                    task.name,
                    describe_exception(exc),
                )
                key = None
            self.cache_key = key
            kw["cache_key"] = key
            if key is not None and not task.refresh_cache:
                kw["cached"] = result_cache.get(key)
        if run.tags:
            taken, blocked = concurrency.try_acquire(run.tags)
            self.slots = taken
            kw["concurrency_blocked"] = blocked
        return kw

    def _release(self) -> None:
        if self.slots:
            concurrency.release(self.slots)
            self.slots = []

    def complete(self, result: Any) -> float | None:
        run, task = self.run, self.task
        self._release()
        decision = propose(
            run, task.policy, task.config, Completed(data=result), cache_key=self.cache_key
        )
        if decision is not None and decision.effects.get("cache_insert"):
            key, expires_at = decision.effects["cache_insert"]
            persist = bool(task.persist_result)
            ref = result_cache.put(key, result, expires_at, run.id, persist)
            recorder.emit(("cache", run.id, key, expires_at, ref))
        elif task.persist_result:
            ref = _persist(run.id, result)
            if ref is not None:
                recorder.emit(("cache", run.id, None, None, ref))
        flow_ctx = run.flow_ctx
        if flow_ctx is not None and type(result) not in _PLAIN_RESULTS:
            flow_ctx.track_result(result, run.id)
        return None

    def fail(self, exc: BaseException, timed_out: bool = False) -> float | None:
        run, task = self.run, self.task
        self._release()
        self.exc = exc
        _strip_engine_frames(exc)
        retry_allowed = True
        if task.retry_condition_fn is not None and run.run_count <= task.retries:
            try:
                retry_allowed = bool(
                    task.retry_condition_fn(
                        task, run, Failed(data=exc, message=describe_exception(exc))
                    )
                )
            except Exception:
                retry_allowed = False
        failed = Failed(data=exc, message=describe_exception(exc))
        decision = propose(
            run,
            task.policy,
            task.config,
            failed,
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
            propose(
                self.run,
                self.task.policy,
                self.task.config,
                Cancelled(message=_cancel_message(exc), data=CancelledRun(_cancel_message(exc))),
            )

    def crash(self, exc: BaseException) -> None:
        self._release()
        if self.run.state.type not in TERMINAL_TYPES:
            propose(
                self.run,
                self.task.policy,
                self.task.config,
                Crashed(data=exc, message=describe_exception(exc)),
            )

    def done(self) -> State:
        """Final bookkeeping: hooks, flow bookkeeping, future resolution."""
        run, task = self.run, self.task
        state = run.state
        if state.type not in TERMINAL_TYPES:
            # an engine problem left the run unfinished: say so rather than hide it
            state = Crashed(message="the engine stopped before the run finished")
            record(run, state)
        hooks = (
            task.on_completion
            if state.type is StateType.COMPLETED
            else task.on_failure
            if state.type is StateType.FAILED
            else ()
        )
        for hook in hooks:
            try:
                hook(task, run, state)
            except Exception as exc:
                from orion_nb.engine.run_logging import get_run_logger

                get_run_logger(task_run_id=run.id, run_name=run.name).error(
                    "hook %r of task %r failed: %s",
                    getattr(hook, "__name__", hook),
                    task.name,
                    describe_exception(exc),
                )
        flow_ctx = run.flow_ctx
        if flow_ctx is not None:
            flow_ctx.active.pop(run.id, None)
        for u in run.upstream:
            u.future = None  # a finished run must not keep its inputs' results alive
        cf = run.cf
        if cf is not None and not cf.done():
            cf.set_result(state)
        return state


def _cancel_check(flow_ctx: FlowRunContext | None) -> Callable[[], bool]:
    return lambda: flow_ctx is not None and flow_ctx.cancelled


def _cancel_message(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    return str(exc) or "cancelled"


def _random() -> float:
    import random

    return random.random()


def _persist(run_id: str, result: Any) -> str | None:
    from orion_nb.settings import get_settings

    path = get_settings().results_dir / f"{run_id}.pkl"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return None
    return str(path)


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
    was_running = run.state.type is StateType.RUNNING
    msg = f"{rule}: {reason}" if rule else reason
    record(run, Cancelled(message=msg, rule=rule, data=CancelledRun(reason)))
    if was_running and run.thread_ident is not None and run.thread_ident != _get_ident():
        raise_in_thread(run.thread_ident, CancelledRun)
    cf = run.cf
    if cf is not None and not cf.done():
        cf.set_result(run.state)
    if run.flow_ctx is not None:
        run.flow_ctx.active.pop(run.id, None)


@overload
def task(__fn: Callable[P, R]) -> Task[P, R]: ...


@overload
def task(
    __fn: None = None,
    *,
    name: str | None = ...,
    task_run_name: str | Callable[..., str] | None = ...,
    description: str | None = ...,
    tags: Iterable[str] | None = ...,
    retries: int = ...,
    retry_delay_seconds: float | list[float] | Callable[[int], list[float]] = ...,
    retry_jitter_factor: float | None = ...,
    retry_condition_fn: Callable[..., bool] | None = ...,
    timeout_seconds: float | None = ...,
    cache_key_fn: Callable[..., str | None] | None = ...,
    cache_expiration: timedelta | float | None = ...,
    refresh_cache: bool = ...,
    persist_result: bool | None = ...,
    log_prints: bool | None = ...,
    on_completion: list[Callable[..., Any]] | None = ...,
    on_failure: list[Callable[..., Any]] | None = ...,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(__fn: Any = None, **options: Any) -> Any:
    """Make a function a task: each call becomes an orchestrated, recorded task run.

    Use bare (``@task``) or with options (``@task(retries=2, cache_key_fn=task_input_hash)``);
    the options and their meaning follow Prefect's ``@task``.
    """
    if __fn is not None:
        return Task(__fn, **options)

    def decorator(fn: Callable[P, R]) -> Task[P, R]:
        return Task(fn, **options)

    return decorator
