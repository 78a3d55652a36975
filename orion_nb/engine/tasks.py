"""``@task``: the definition of a task, and the ways to call it.

A :class:`Task` holds a function and its options (checked once, here) and offers the calling
forms Prefect users know: a direct call (``t(x)``), ``t.submit(x)`` (a future, on the flow's
task runner), ``t.map(xs)`` (one run per element) and ``t.with_options(...)``. Running a call
is the engine's work (:mod:`~orion_nb.engine.task_runs` creates the run,
:mod:`~orion_nb.engine.task_drivers` drives it, :mod:`~orion_nb.engine.dispatch` hands it to
a task runner); this module only turns a call into the right request.

Calling an ``async def`` task returns a coroutine, always, as in Prefect 3: ``await t(x)`` in
async code, ``asyncio.run(t(x))`` in a script. ``.submit()`` works for both kinds from anywhere.
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from orion_nb.engine import dispatch, task_drivers, task_runs
from orion_nb.engine.annotations import allow_failure, unmapped
from orion_nb.engine.cache import NONE, CachePolicy, code_fingerprint
from orion_nb.engine.context import _flow_ctx, fingerprint
from orion_nb.engine.futures import FutureList, TaskFuture
from orion_nb.engine.inputs import Upstream
from orion_nb.engine.options import check_run_options, delay_list, seconds
from orion_nb.engine.signature import Signature
from orion_nb.engine.walk import PLAIN_TYPES
from orion_nb.errors import DefinitionError, ParameterError
from orion_nb.orchestration.policies import TASK_POLICY, CompiledPolicy
from orion_nb.orchestration.rules import RunConfig
from orion_nb.orchestration.states import State

__all__ = ["Task", "exponential_backoff", "task"]

P = ParamSpec("P")
R = TypeVar("R")


class _Unbound:
    """``Task._bound`` of a task not bound to an instance: one object, also after pickling
    (a task sent to a process or Dask worker must not take it for a ``self``)."""

    def __reduce__(self) -> str:
        return "_UNBOUND"

    def __repr__(self) -> str:
        return "<unbound>"


_UNBOUND: Any = _Unbound()


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """``retry_delay_seconds=exponential_backoff(2)`` waits 2, 4, 8, ... seconds."""

    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2**i for i in range(retries)]

    return delays


class Task(Generic[P, R]):
    """A function whose calls become recorded, orchestrated task runs.

    Create with ``@task`` (bare or with options). The options keep the values given (a
    ``timedelta`` stays a ``timedelta``) and are readable as attributes.
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
        cache_policy: CachePolicy | None = None,
        cache_key_fn: Callable[..., str | None] | None = None,
        cache_expiration: timedelta | float | None = None,
        refresh_cache: bool = False,
        persist_result: bool | None = None,
        log_prints: bool | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        on_running: list[Callable[..., Any]] | None = None,
    ) -> None:
        if not callable(fn):
            raise DefinitionError(
                f"@task decorates functions, not {type(fn).__name__} objects; write @task above a 'def'."
            )
        self.fn = fn
        self.name: str = str(name or getattr(fn, "__name__", type(fn).__name__))
        options = {k: v for k, v in locals().items() if k not in ("self", "fn")}
        check_run_options("task", self.name, options)
        if cache_policy is not None and not isinstance(cache_policy, CachePolicy):
            raise DefinitionError(
                f"Task {self.name!r}: cache_policy must be a cache policy such as "
                f"orion_nb.INPUTS + orion_nb.TASK_SOURCE, not {type(cache_policy).__name__}."
            )
        if cache_policy is not None and cache_key_fn is not None:
            raise DefinitionError(
                f"Task {self.name!r}: give either cache_policy or cache_key_fn, not both."
            )
        self._options = options
        self.task_run_name = task_run_name
        self.description = description or inspect.getdoc(fn)
        self.tags = frozenset(tags or ())
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.retry_jitter_factor = retry_jitter_factor
        self.retry_condition_fn = retry_condition_fn
        self.timeout_seconds = timeout_seconds
        self.cache_policy: CachePolicy = cache_policy if cache_policy is not None else NONE
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.refresh_cache = refresh_cache
        self.has_cache = cache_key_fn is not None or self.cache_policy != NONE
        # as in Prefect 3: a task with a cache key persists its results unless told not to
        self.persist_result = persist_result
        self.persists = persist_result if persist_result is not None else self.has_cache
        self.log_prints = log_prints
        if log_prints:
            from orion_nb.engine.run_logging import install_print_hook

            install_print_hook()
        self.on_completion_hooks: list[Callable[..., Any]] = list(on_completion or ())
        self.on_failure_hooks: list[Callable[..., Any]] = list(on_failure or ())
        self.on_running_hooks: list[Callable[..., Any]] = list(on_running or ())
        self.is_async = inspect.iscoroutinefunction(fn)
        self.task_key = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', self.name)}"
        self.signature = Signature(fn, "task", self.name)
        self._code: bytes | None = None
        self._bound: Any = _UNBOUND
        self.config = self._config(self.tags)
        self.policy = TASK_POLICY.compile(self.config)
        self.policy_upstream = TASK_POLICY.compile(self.config, has_upstream=True)
        self._tagged_policies: dict[tuple[frozenset[str], bool], CompiledPolicy] = {}
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def _config(self, tags: frozenset[str]) -> RunConfig:
        return RunConfig(
            "task",
            retries=self.retries,
            retry_delay_seconds=delay_list(self.retry_delay_seconds, self.retries),
            retry_jitter_factor=self.retry_jitter_factor,
            timeout_seconds=self.timeout_seconds,
            has_cache=self.has_cache,
            cache_expiration=seconds(self.cache_expiration),
            refresh_cache=self.refresh_cache,
            tags=tags,
        )

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"

    def policy_for(self, run: Any) -> CompiledPolicy:
        """The compiled policy for a run (its tags and whether it has upstream inputs)."""
        if run.tags is self.tags:
            return self.policy_upstream if run.upstream else self.policy
        key = (run.tags, bool(run.upstream))
        policy = self._tagged_policies.get(key)
        if policy is None:
            policy = self._tagged_policies[key] = TASK_POLICY.compile(
                self._config(run.tags), has_upstream=bool(run.upstream)
            )
        return policy

    def code_fingerprint(self) -> bytes:
        """The task's code, for cache keys (computed once)."""
        if self._code is None:
            self._code = code_fingerprint(self.fn)
        return self._code

    def with_options(self, **changes: Any) -> Task[P, R]:
        """A copy of this task with some options changed (same function)."""
        unknown = set(changes) - set(self._options)
        if unknown:
            raise DefinitionError(
                f"Task {self.name!r}.with_options() got unknown option(s) {sorted(unknown)}; "
                f"options are {sorted(self._options)}."
            )
        new = Task(self.fn, **{**self._options, **changes})
        new._bound = self._bound
        return new

    # -- hooks, decorator style (``@my_task.on_failure``) ---------------------------------------
    def on_completion(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add a hook called with ``(task, task_run, state)`` when a run completes."""
        self.on_completion_hooks.append(fn)
        return fn

    def on_failure(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add a hook called with ``(task, task_run, state)`` when a run fails."""
        self.on_failure_hooks.append(fn)
        return fn

    def on_running(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add a hook called with ``(task, task_run, state)`` when an attempt starts."""
        self.on_running_hooks.append(fn)
        return fn

    # -- methods: ``@task`` on a method binds ``self`` -------------------------------------------
    def __get__(self, instance: Any, owner: type | None = None) -> Task[P, R]:
        if instance is None:
            return self
        bound = copy.copy(self)
        bound._bound = instance
        return bound

    def _args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return args if self._bound is _UNBOUND else (self._bound, *args)

    # -- calling ------------------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        __tracebackhide__ = True  # IPython hides engine frames from user tracebacks
        return_state = bool(kwargs.pop("return_state", False))
        wait_for = kwargs.pop("wait_for", None)
        if self.is_async:
            return task_drivers.arun_task(  # type: ignore[return-value]
                self, self._args(args), kwargs, wait_for, return_state
            )
        return task_drivers.run_task(  # type: ignore[no-any-return]
            self, self._args(args), kwargs, wait_for, return_state
        )

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> TaskFuture[R]:
        """Run the task on the flow's task runner; returns a future at once.

        With ``return_state=True`` it waits for the run and returns its final state instead.
        """
        wait_for = kwargs.pop("wait_for", None)
        return_state = bool(kwargs.pop("return_state", False))
        args = self._args(args)  # type: ignore[assignment]
        flow_ctx, rejected = task_runs.start_call(self, args, kwargs, return_state)
        if rejected is not None:
            return rejected  # type: ignore[return-value]
        run = task_runs.create_task_run(self, flow_ctx, args, kwargs, wait_for)
        future: TaskFuture[R] = dispatch.submit_task_run(self, run, flow_ctx, args, kwargs)
        if return_state:
            future.wait()
            return future.state  # type: ignore[return-value]
        return future

    def map(self, *args: Any, **kwargs: Any) -> FutureList[R]:
        """Submit one run per element of the iterable arguments.

        ``unmapped(x)`` passes ``x`` whole to every run; a State or a future is mapped over its
        result; ``allow_failure(futures)`` maps over the futures, each allowed to fail.
        """
        wait_for = kwargs.pop("wait_for", None)
        kwargs.pop("return_state", None)
        args = self._args(args)
        iterables = self._map_iterables(args, kwargs)
        n = len(next(iter(iterables.values())))
        calls = _map_calls(args, kwargs, iterables, n)
        if n:  # a call that does not fit the signature fails before any run exists
            first_args, first_kwargs = next(calls)
            self.signature.check(first_args, first_kwargs)
            calls = itertools.chain([(first_args, first_kwargs)], calls)
        flow_ctx = _flow_ctx.get()
        sources = _map_sources(args, kwargs, iterables, flow_ctx, self.signature.positional)
        futures = dispatch.submit_map(self, flow_ctx, n, calls, sources, wait_for)
        return FutureList(futures)

    def _map_iterables(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[Any, list[Any]]:
        """The mapped arguments (position or name -> elements), all of the same length."""
        iterables: dict[Any, list[Any]] = {}
        for key, value in itertools.chain(enumerate(args), kwargs.items()):
            items = _map_items(value)
            if items is not None:
                iterables[key] = items
        if self._bound is not _UNBOUND:
            iterables.pop(0, None)  # ``self`` is never mapped over
        if not iterables:
            raise ParameterError(
                f"Task {self.name!r}.map() needs at least one iterable argument to map over; "
                "use .submit() for a single run."
            )
        lengths = {k: len(v) for k, v in iterables.items()}
        if len(set(lengths.values())) > 1:
            names = self.signature.positional
            desc = ", ".join(f"{_param_name(k, names)}={n}" for k, n in lengths.items())
            raise ParameterError(
                f"Task {self.name!r}.map() got iterables of different lengths ({desc}); "
                "make them the same length or wrap the constant ones in unmapped(...)."
            )
        return iterables


def _param_name(key: Any, names: list[str]) -> str:
    return names[key] if isinstance(key, int) and key < len(names) else str(key)


def _map_calls(
    args: tuple[Any, ...], kwargs: dict[str, Any], iterables: dict[Any, list[Any]], n: int
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The arguments of each mapped run: element ``i`` of every iterable, the rest whole."""
    static_args = [_static(a) for a in args]
    static_kwargs = {k: _static(v) for k, v in kwargs.items()}
    by_position = [(j, col) for j, col in iterables.items() if isinstance(j, int)]
    by_name = [(k, col) for k, col in iterables.items() if not isinstance(k, int)]
    if len(static_args) == 1 and by_position and not static_kwargs:  # f.map(items): the common case
        for value in by_position[0][1]:
            yield (value,), {}
        return
    for i in range(n):
        call_args = static_args.copy()
        for j, col in by_position:
            call_args[j] = col[i]
        call_kwargs = static_kwargs.copy()
        for k, col in by_name:
            call_kwargs[k] = col[i]
        yield tuple(call_args), call_kwargs


def _static(value: Any) -> Any:
    return value.value if isinstance(value, unmapped) else value


def _map_items(value: Any) -> list[Any] | None:
    """The elements a ``.map()`` argument contributes, or None when it is passed whole."""
    t = type(value)
    if t in PLAIN_TYPES or t is unmapped:
        return None
    if t is allow_failure:
        inner = _map_items(value.value)
        return None if inner is None else [allow_failure(v) for v in inner]
    if t is TaskFuture or t is State:
        return list(value.result())
    try:
        return list(value)
    except TypeError:
        return None


def _map_sources(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    iterables: dict[Any, list[Any]],
    flow_ctx: Any,
    names: list[str],
) -> list[Upstream]:
    """Iterables that are a task's result (or future): an upstream of every mapped run."""
    sources: list[Upstream] = []
    for key in iterables:
        original = args[key] if isinstance(key, int) else kwargs[key]
        param = _param_name(key, names)
        if isinstance(original, TaskFuture):
            sources.append(Upstream(param, original.run.id, original.run.name, future=original))
        elif isinstance(original, State) and original.run_id is not None:
            sources.append(Upstream(param, original.run_id, original.run_id[-8:]))
        elif flow_ctx is not None:
            hit = flow_ctx.result_ids.get(id(original))
            if (
                hit is not None
                and hit[1] is type(original)
                and (hit[2] is None or hit[2] == fingerprint(original))
            ):
                sources.append(Upstream(param, hit[0], hit[0][-8:]))
    return sources


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
    cache_policy: CachePolicy | None = ...,
    cache_key_fn: Callable[..., str | None] | None = ...,
    cache_expiration: timedelta | float | None = ...,
    refresh_cache: bool = ...,
    persist_result: bool | None = ...,
    log_prints: bool | None = ...,
    on_completion: list[Callable[..., Any]] | None = ...,
    on_failure: list[Callable[..., Any]] | None = ...,
    on_running: list[Callable[..., Any]] | None = ...,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(__fn: Any = None, **options: Any) -> Any:
    """Make a function a task: each call becomes an orchestrated, recorded task run.

    Use bare (``@task``) or with options (``@task(retries=2, cache_policy=INPUTS)``); the
    options and their meaning follow Prefect 3's ``@task``.
    """
    if __fn is not None:
        return Task(__fn, **options)

    def decorator(fn: Callable[P, R]) -> Task[P, R]:
        return Task(fn, **options)

    return decorator
