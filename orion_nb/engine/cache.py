"""Result caching: cache policies, :func:`task_input_hash`, and where cached results are kept.

A cache key says "this run would compute what that earlier run computed". It must change when
anything that decides the result changes, and must never match different inputs:

- Prefect 3's *cache policies* compose the key from parts: ``INPUTS`` (the call's arguments),
  ``TASK_SOURCE`` (the task's code: its source text, or its bytecode when there is no source),
  ``RUN_ID`` (the flow run: cache only within one run), ``FLOW_PARAMETERS`` (the flow run's
  parameters) and ``NONE``. ``INPUTS + TASK_SOURCE`` combines them; ``INPUTS - "debug"`` ignores a
  parameter; ``DEFAULT`` is ``INPUTS + TASK_SOURCE + RUN_ID``. A task asks for one with
  ``@task(cache_policy=...)`` or brings its own ``cache_key_fn``.
- :func:`task_input_hash` (for ``cache_key_fn``) hashes the task's identity, its code and its
  inputs: editing a cached task in a notebook and re-running it runs the new code.
- Inputs are hashed by pickling them. An input that cannot be pickled (a generator, a database
  connection, a lock) cannot be hashed faithfully, so that call is not cached, and a warning
  names the parameter once per task: a key built from ``repr()`` would let two different
  connections with the same repr share a result.

Results are kept in memory (bounded, least recently used first out) and, when the task persists
results (the default as soon as it has a cache policy or key function, as in Prefect 3), pickled
under ``$ORION_NB_HOME/results`` so another process can reuse them. Files are written under a
temporary name and renamed: a result that cannot be pickled leaves no partial file, a warning
naming the task and the type, and a run that is still Completed.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import pickle
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orion_nb.errors import OrionNBWarning
from orion_nb.orchestration.rules import CacheEntry
from orion_nb.settings import get_settings

__all__ = [
    "DEFAULT",
    "FLOW_PARAMETERS",
    "INPUTS",
    "NONE",
    "RUN_ID",
    "TASK_SOURCE",
    "CachePolicy",
    "ResultCache",
    "persist_result",
    "result_cache",
    "task_input_hash",
]


class _Unhashable(Exception):
    """An input could not be hashed faithfully."""

    def __init__(self, param: str, detail: str) -> None:
        super().__init__(f"parameter {param!r} {detail}")
        self.param = param
        self.detail = detail


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:32]


def _hash_value(value: Any, param: str) -> bytes:
    try:
        return pickle.dumps(value, protocol=5)
    except Exception as exc:
        raise _Unhashable(param, _unhashable_detail(value, exc)) from None


def code_fingerprint(fn: Any) -> bytes:
    """The code of ``fn``: its source text, else its bytecode, constants and names (nested too)."""
    fn = inspect.unwrap(fn)
    try:
        return inspect.getsource(fn).encode()
    except (OSError, TypeError):
        pass
    code = getattr(fn, "__code__", None)
    if code is None:
        return repr(fn).encode()
    return _code_bytes(code)


def _code_bytes(code: Any) -> bytes:
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if hasattr(const, "co_code") else repr(const).encode())
    return b"\0".join(parts)


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn_unhashable(task_name: str, detail: str, param: str) -> None:
    with _warned_lock:
        if (task_name, param) in _warned:
            return
        _warned.add((task_name, param))
    warnings.warn(
        f"Task {task_name!r} is not cached for this call: parameter {param!r} {detail}. "
        f"Use a cache policy without it (cache_policy=INPUTS - {param!r}) or a cache_key_fn "
        "that returns a key for it.",
        OrionNBWarning,
        stacklevel=3,
    )


class CachePolicy:
    """How a task run's cache key is made; policies combine with ``+`` and drop inputs with ``-``.

    Subclasses produce the bytes of their part in :meth:`part` (``None``: no key, do not cache).
    """

    #: what the part is called in a cache hit's reason ("inputs", "task source", ...)
    label = ""

    def part(self, task: Any, ctx: Any, parameters: dict[str, Any]) -> bytes | None:
        raise NotImplementedError

    def components(self) -> tuple[CachePolicy, ...]:
        return (self,)

    def compute_key(
        self, task: Any, ctx: Any, parameters: dict[str, Any]
    ) -> tuple[str, tuple[str, ...]] | None:
        """The key and the labels of its parts, or ``None`` when this call must not be cached."""
        parts: list[bytes] = [task.task_key.encode()]
        labels: list[str] = []
        for policy in self.components():
            try:
                part = policy.part(task, ctx, parameters)
            except _Unhashable as exc:
                _warn_unhashable(task.name, exc.detail, exc.param)
                return None
            if part is None:
                return None
            parts.append(type(policy).__name__.encode() + b":" + part)
            labels.append(policy.label)
        return _digest(parts), tuple(labels)

    def __add__(self, other: object) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            raise TypeError(
                f"A cache policy can only be combined with another cache policy, not "
                f"{type(other).__name__}; use e.g. INPUTS + TASK_SOURCE."
            )
        return _Compound((*self.components(), *other.components()))

    def __sub__(self, name: object) -> CachePolicy:
        if not isinstance(name, str):
            raise TypeError(
                f"Subtract a parameter name from a cache policy (INPUTS - 'debug'), not "
                f"{type(name).__name__}."
            )
        return _Compound(
            tuple(p.without(name) if isinstance(p, _Inputs) else p for p in self.components())
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CachePolicy) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


class _Inputs(CachePolicy):
    label = "inputs"

    def __init__(self, exclude: frozenset[str] = frozenset()) -> None:
        self.exclude = exclude

    def without(self, name: str) -> _Inputs:
        return _Inputs(self.exclude | {name})

    def part(self, task: Any, ctx: Any, parameters: dict[str, Any]) -> bytes | None:
        chunks = []
        for name in sorted(parameters):
            if name in self.exclude:
                continue
            chunks.append(name.encode() + b"=" + _hash_value(parameters[name], name))
        return b"\0".join(chunks)

    def __repr__(self) -> str:
        return "INPUTS" + "".join(f" - {n!r}" for n in sorted(self.exclude))


def _unhashable_detail(value: Any, exc: BaseException) -> str:
    if inspect.isgenerator(value) or inspect.isasyncgen(value):
        return "is a generator, which can be read only once and has no stable identity"
    return f"is a {type(value).__name__} that cannot be pickled ({exc})"


class _TaskSource(CachePolicy):
    label = "task source"

    def part(self, task: Any, ctx: Any, parameters: dict[str, Any]) -> bytes | None:
        return task.code_fingerprint()

    def __repr__(self) -> str:
        return "TASK_SOURCE"


class _RunId(CachePolicy):
    label = "flow run"

    def part(self, task: Any, ctx: Any, parameters: dict[str, Any]) -> bytes | None:
        flow = getattr(ctx, "flow_run", None)
        run_id = flow.run_id if flow is not None else None
        return (run_id or "no flow run").encode()

    def __repr__(self) -> str:
        return "RUN_ID"


class _FlowParameters(CachePolicy):
    label = "flow parameters"

    def part(self, task: Any, ctx: Any, parameters: dict[str, Any]) -> bytes | None:
        flow = getattr(ctx, "flow_run", None)
        params = flow.parameters if flow is not None else {}
        return _hash_value(sorted(params.items()), "(the flow's parameters)")

    def __repr__(self) -> str:
        return "FLOW_PARAMETERS"


class _NoCache(CachePolicy):
    label = "none"

    def part(self, task: Any, ctx: Any, parameters: dict[str, Any]) -> bytes | None:
        return None

    def __repr__(self) -> str:
        return "NONE"


class _Compound(CachePolicy):
    def __init__(self, policies: tuple[CachePolicy, ...]) -> None:
        seen: dict[str, CachePolicy] = {}
        for p in policies:
            seen.setdefault(repr(p), p)
        self.policies = tuple(seen.values())

    def components(self) -> tuple[CachePolicy, ...]:
        return self.policies

    def __repr__(self) -> str:
        return " + ".join(repr(p) for p in self.policies)


INPUTS: CachePolicy = _Inputs()
TASK_SOURCE: CachePolicy = _TaskSource()
RUN_ID: CachePolicy = _RunId()
FLOW_PARAMETERS: CachePolicy = _FlowParameters()
NONE: CachePolicy = _NoCache()
DEFAULT: CachePolicy = INPUTS + TASK_SOURCE + RUN_ID


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """A cache key from the task's identity, its code and its inputs (for ``cache_key_fn``).

    Returns ``None`` (no caching, with a warning naming the parameter) when an input cannot
    be hashed faithfully.
    """
    task = context.task
    computed = _INPUTS_AND_SOURCE.compute_key(task, context, arguments)
    return None if computed is None else computed[0]


_INPUTS_AND_SOURCE = INPUTS + TASK_SOURCE
# what a cache hit made with task_input_hash says matched
task_input_hash.cache_parts = ("inputs", "task source")  # type: ignore[attr-defined]


class ResultCache:
    """Cache entries ``key -> CacheEntry``: in memory (bounded LRU), on disk when persisted."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._mem: OrderedDict[str, CacheEntry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> CacheEntry | None:
        with self._lock:
            entry = self._mem.get(key)
            if entry is not None:
                self._mem.move_to_end(key)
                return entry
        path = self._path(key)
        try:
            with path.open("rb") as fh:
                loaded = pickle.load(fh)
        except FileNotFoundError:
            return None
        except Exception:  # a damaged or incompatible file: a miss, the run recomputes it
            return None
        entry = CacheEntry(*loaded)
        self._remember(key, entry)
        return entry

    def put(
        self,
        key: str,
        result: Any,
        expires_at: float | None,
        run_id: str,
        persist: bool,
        task_name: str = "?",
    ) -> str | None:
        """Keep ``result`` under ``key``; returns the file it was persisted to, if any."""
        entry = CacheEntry(result, expires_at, run_id)
        self._remember(key, entry)
        if not persist:
            return None
        return _write_pickle(self._path(key), tuple(entry), task_name, result)

    def _remember(self, key: str, entry: CacheEntry) -> None:
        with self._lock:
            self._mem[key] = entry
            self._mem.move_to_end(key)
            while len(self._mem) > self.max_entries:
                self._mem.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._mem.clear()

    @staticmethod
    def _path(key: str) -> Path:
        return get_settings().results_dir / f"{key}.pkl"


def _write_pickle(path: Path, payload: Any, task_name: str, result: Any) -> str | None:
    """Pickle ``payload`` to ``path`` atomically; warn (naming the task and type) on failure."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        warnings.warn(
            f"Task {task_name!r} returned a {type(result).__name__}, which cannot be pickled "
            f"({exc}); its result is not persisted (the run is still Completed). Return "
            "picklable data, or set persist_result=False.",
            OrionNBWarning,
            stacklevel=4,
        )
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the folder itself may be what is broken
            tmp.unlink(missing_ok=True)
        warnings.warn(
            f"Task {task_name!r}: could not write its result to {path.parent} ({exc}); the "
            "result is not persisted (the run is still Completed).",
            OrionNBWarning,
            stacklevel=4,
        )
        return None
    return str(path)


def persist_result(run_id: str, result: Any, task_name: str) -> str | None:
    """Persist a result that has no cache key (``persist_result=True``), named by its run."""
    path = get_settings().results_dir / f"{run_id}.pkl"
    return _write_pickle(path, result, task_name, result)


result_cache = ResultCache()
