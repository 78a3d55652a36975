"""Result caching: :func:`task_input_hash` and where cached results are kept.

Results are cached in memory (bounded, least recently used first out) and, for tasks with
``persist_result=True``, pickled under ``$ORION_NB_HOME/results`` so that another process or a
later session can reuse them. The engine looks a key up *before* proposing RUNNING and hands
the entry to the CacheRetrieval rule, which decides whether it is still valid.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from orion_nb.settings import get_settings

__all__ = ["ResultCache", "task_input_hash"]


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """A cache key from the task's identity and its inputs.

    Two calls of the same task with equal (picklable) arguments share a key. Returns ``None``
    (no caching) when an argument cannot be pickled.
    """
    task = getattr(context, "task", None)
    key = getattr(task, "task_key", repr(task))
    try:
        payload = pickle.dumps((key, sorted(arguments.items())), protocol=4)
    except Exception:
        try:
            payload = repr((key, sorted(arguments.items()))).encode()
        except Exception:
            return None
    return hashlib.sha256(payload).hexdigest()[:32]


class ResultCache:
    """Cache entries: ``key -> (result, expires_at, source_run_id)``."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._mem: OrderedDict[str, tuple[Any, float | None, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[Any, float | None, str] | None:
        with self._lock:
            entry = self._mem.get(key)
            if entry is not None:
                self._mem.move_to_end(key)
                return entry
        path = self._path(key)
        if path.exists():
            try:
                with path.open("rb") as fh:
                    entry = pickle.load(fh)
            except Exception:
                return None
            with self._lock:
                self._mem[key] = entry
            return entry
        return None

    def put(
        self, key: str, result: Any, expires_at: float | None, run_id: str, persist: bool
    ) -> str | None:
        entry = (result, expires_at, run_id)
        with self._lock:
            self._mem[key] = entry
            self._mem.move_to_end(key)
            while len(self._mem) > self.max_entries:
                self._mem.popitem(last=False)
        if not persist:
            return None
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with tmp.open("wb") as fh:
                pickle.dump(entry, fh, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(path)
        except Exception:
            return None
        return str(path)

    def clear(self) -> None:
        with self._lock:
            self._mem.clear()

    @staticmethod
    def _path(key: str) -> Path:
        return get_settings().results_dir / f"{key}.pkl"


result_cache = ResultCache()
