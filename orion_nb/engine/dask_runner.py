"""``DaskTaskRunner``: task runs' functions on a Dask cluster, orchestrated from the kernel.

Dask (``distributed``) is the engine that spreads work over machines; orion_nb does not grow
a cluster of its own. Without an address, a flow run starts a temporary
``distributed.LocalCluster`` (or ``cluster_class(**cluster_kwargs)``) and closes it when it
ends; with one, it connects a client to that scheduler and leaves the cluster running.

How the kernel talks to the cluster (:mod:`orion_nb.engine.remote` has the whole life of an
attempt):

- attempts are submitted in batches with ``Client.map`` (one graph update per batch), keyed
  ``<task name>-<task run id>-<attempt>`` so the Dask dashboard groups them by task;
- a worker reports each start on a topic of its own (``Worker.log_event``); the kernel
  subscribes to it;
- completion callbacks queue the finished futures, and one collector thread fetches their
  outcomes with a single ``Client.gather`` per batch, not one round trip per task;
- cancelling (timeouts, an interrupted cell) is one ``Client.cancel`` per batch.

A worker that dies with an attempt: on a temporary cluster the scheduler is started with
``allowed-failures = 0``, so the future fails at once with ``KilledWorker`` and the kernel
retries or records Crashed. A cluster of your own may restart the attempt on another worker
(up to its ``allowed-failures``); the kernel notices the second start, cancels it, and
decides as well. The workers need orion_nb (and ``cloudpickle``) installed, in the same
version as the kernel.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib
import importlib.util
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from orion_nb.engine.context import current_flow_run, current_task_run
from orion_nb.engine.remote import Attempt
from orion_nb.engine.remote_session import RemoteSession, RemoteTaskRunner, main_hidden
from orion_nb.engine.worker import RemoteCall, interrupt
from orion_nb.errors import (
    ConfigurationError,
    CrashedRun,
    DefinitionError,
    MissingContextError,
    MissingDependencyError,
    describe,
)
from orion_nb.settings import mask_url

__all__ = ["DaskTaskRunner", "close_clients", "get_dask_client"]

_INSTALL_HINT = "pip install 'orion_nb[dask]'"
#: seconds the collector lets finished futures accumulate before one ``gather``, per
#: :data:`_GATHER_STEP` attempts in flight (a long queue waits a little longer, so that one
#: ``gather`` fetches more), at most :data:`_GATHER_MAX`
_GATHER_WINDOW = 0.02
_GATHER_STEP = 16
_GATHER_MAX = 0.2


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise MissingDependencyError(
            f"The Dask task runner needs the 'distributed' package, which is not installed "
            f"({describe(exc)}); install it with: {_INSTALL_HINT}"
        ) from exc
    return distributed


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # blocked, or a broken half-import
        return False


class DaskTaskRunner(RemoteTaskRunner):
    """Runs each task run's function on a Dask cluster; the kernel keeps orchestrating.

    Parameters
    ----------
    address
        A scheduler to connect to (``"tcp://10.0.0.5:8786"``); the cluster stays up after
        the flow run. ``None``: start a temporary cluster for each flow run.
    cluster_class
        The cluster to start when there is no address: a class or its import path
        (``"dask_jobqueue.SLURMCluster"``); default ``distributed.LocalCluster``.
    cluster_kwargs
        Keyword arguments for ``cluster_class`` (e.g. ``{"n_workers": 4}``).
    client_kwargs
        Keyword arguments for ``distributed.Client`` (e.g. ``{"timeout": "30s"}``).
    """

    name = "dask"
    worker_kind = "Dask"

    def __init__(
        self,
        address: str | None = None,
        cluster_class: type | str | None = None,
        cluster_kwargs: Mapping[str, Any] | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not _installed("distributed"):
            raise MissingDependencyError(
                f"DaskTaskRunner needs the 'distributed' package, which is not installed; "
                f"install it with: {_INSTALL_HINT}"
            )
        if address is not None and not isinstance(address, str):
            raise DefinitionError(
                f"DaskTaskRunner(address=...) takes a scheduler address such as "
                f"'tcp://10.0.0.5:8786', not {type(address).__name__}."
            )
        if address is not None and (cluster_class is not None or cluster_kwargs):
            raise DefinitionError(
                "DaskTaskRunner: give either address= (connect to a running scheduler) or "
                "cluster_class=/cluster_kwargs= (start a temporary cluster), not both."
            )
        if cluster_class is not None and not isinstance(cluster_class, str | type):
            raise DefinitionError(
                "DaskTaskRunner(cluster_class=...) takes a cluster class or its import path "
                f"such as 'distributed.LocalCluster', not {type(cluster_class).__name__}."
            )
        for label, value in (("cluster_kwargs", cluster_kwargs), ("client_kwargs", client_kwargs)):
            if value is not None and not isinstance(value, Mapping):
                raise DefinitionError(
                    f"DaskTaskRunner({label}=...) takes a dict of keyword arguments, not "
                    f"{type(value).__name__}."
                )
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})

    def open(self) -> RemoteSession:
        return _DaskSession(self).start()

    def __repr__(self) -> str:
        if self.address is not None:
            return f"DaskTaskRunner(address={mask_url(self.address)!r})"
        cls = self.cluster_class
        name = cls if isinstance(cls, str) or cls is None else f"{cls.__module__}.{cls.__name__}"
        parts = [f"cluster_class={name!r}"] if name else []
        if self.cluster_kwargs:
            parts.append(f"cluster_kwargs={self.cluster_kwargs!r}")
        return f"DaskTaskRunner({', '.join(parts)})"


_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


def _shared_client(distributed: Any, cfg: DaskTaskRunner) -> Any:
    """The kernel's client of the scheduler at ``cfg.address``: one connection, reused.

    A notebook makes a flow run per cell; connecting each time would cost a handshake per
    cell. Each flow run still has its own event topic and cancels only its own futures. A
    client whose connection was lost is replaced; all are closed at interpreter exit.
    """
    kwargs = {"timeout": "10s", **cfg.client_kwargs, "set_as_default": False}
    key = (cfg.address or "", repr(sorted(kwargs.items())))
    with _clients_lock:
        client = _clients.get(key)
        if client is not None and client.status == "running":
            return client
        try:
            client = distributed.Client(cfg.address, **kwargs)
        except (OSError, TimeoutError) as exc:
            raise ConfigurationError(
                f"Cannot reach the Dask scheduler at {mask_url(cfg.address or '')!r} within "
                f"{kwargs['timeout']} ({describe(exc)}). Check the address, that the "
                "scheduler runs ('dask scheduler') and that this machine may connect to "
                "its port; or use DaskTaskRunner() for a temporary local cluster."
            ) from exc
        if not _clients:
            atexit.register(close_clients)
        _clients[key] = client
        return client


def close_clients() -> None:
    """Close the kernel's connections to Dask schedulers (done at exit anyway): before a
    scheduler is shut down for good, so that its client does not try to reconnect."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        with contextlib.suppress(Exception):
            client.close(timeout=2)


class _Notify:
    """How an attempt on a Dask worker says it started: an event on the session's topic."""

    __slots__ = ("topic",)

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def __getstate__(self) -> str:
        return self.topic

    def __setstate__(self, topic: str) -> None:
        self.topic = topic

    def __call__(self, key: str, started: float, host: str, pid: int, worker: str) -> None:
        from distributed import get_worker

        try:
            get_worker().log_event(self.topic, [key, started, host, pid, worker])
        except ValueError:  # pragma: no cover - not on a worker: nobody to tell
            pass


class _DaskSession(RemoteSession):
    worker_kind = "Dask"

    def __init__(self, config: DaskTaskRunner) -> None:
        super().__init__(config)
        self.client: Any = None
        self._cluster: Any = None
        self._topic = f"orion_nb-{os.urandom(6).hex()}"
        self._notifier = _Notify(self._topic)
        self._doneq: deque[tuple[Attempt, Any]] = deque()
        self._done_event = threading.Event()
        self._stop = False
        self._collector: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------
    def _connect(self) -> None:
        distributed = _distributed()
        cfg: DaskTaskRunner = self.config  # type: ignore[assignment]
        if cfg.address is None:
            self._start_cluster(distributed, cfg)
        else:
            self.client = _shared_client(distributed, cfg)
        self.client.subscribe_topic(self._topic, self._on_event)
        self._collector = threading.Thread(
            target=self._collect, name="orion-nb-dask-collect", daemon=True
        )
        self._collector.start()

    def _start_cluster(self, distributed: Any, cfg: DaskTaskRunner) -> None:
        import dask

        cls = cfg.cluster_class
        if isinstance(cls, str):
            module, _, attr = cls.rpartition(".")
            try:
                cls = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError, ValueError) as exc:
                raise ConfigurationError(
                    f"DaskTaskRunner(cluster_class={cfg.cluster_class!r}) cannot be imported "
                    f"({describe(exc)}); give a class or an import path such as "
                    "'distributed.LocalCluster'."
                ) from exc
        cls = cls or distributed.LocalCluster
        kwargs = dict(cfg.cluster_kwargs)
        if cls is distributed.LocalCluster:
            # any free port: two flow runs (or a cluster of your own) never clash on :8787
            kwargs.setdefault("dashboard_address", ":0")
        try:
            # a worker that dies fails its attempt at once: the kernel decides on retries
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}), main_hidden():
                self._cluster = cls(**kwargs)
            self.client = distributed.Client(
                self._cluster, **{**cfg.client_kwargs, "set_as_default": False}
            )
        except Exception as exc:
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None
            raise ConfigurationError(
                f"Could not start a temporary Dask cluster ({cls.__name__}"
                f"(**{cfg.cluster_kwargs!r})): {describe(exc)}"
            ) from exc

    def _disconnect(self) -> None:
        self._stop = True
        self._done_event.set()
        if self._collector is not None:
            self._collector.join(30)
        client, cluster = self.client, self._cluster
        self.client = self._cluster = None
        try:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.unsubscribe_topic(self._topic)
                if cluster is not None:  # a temporary cluster's own client
                    client.close()
        finally:
            if cluster is not None:
                cluster.close()

    # -- attempts -----------------------------------------------------------------------------
    def _notify(self) -> Any:
        return self._notifier

    def _send(self, call: RemoteCall, attempts: list[Attempt]) -> None:
        futures = self.client.map(
            call, [a.call for a in attempts], key=[a.key for a in attempts], pure=False
        )
        on_done = self._on_done
        for attempt, fut in zip(attempts, futures, strict=True):
            attempt.handle = fut
            fut.add_done_callback(functools.partial(on_done, attempt))

    def _on_done(self, attempt: Attempt, fut: Any) -> None:
        self._doneq.append((attempt, fut))
        self._done_event.set()

    def _on_event(self, event: Any) -> None:
        _ts, msg = event
        self.started(*msg)

    def _cancel(self, attempts: list[Attempt]) -> None:
        client = self.client
        handles = [a.handle for a in attempts if a.handle is not None]
        if not handles or client is None:
            return
        client.cancel(handles)
        # Dask forgets a cancelled task but its thread runs on: stop the ones that started
        started = {a.started[3] for a in attempts if a.started is not None}
        workers = [w for w in started if w.startswith(("tcp://", "tls://", "inproc://", "ucx://"))]
        if workers:
            keys = [a.key for a in attempts]
            client.run(interrupt, keys, workers=workers, on_error="ignore")

    def _collect(self) -> None:
        """Fetch the outcomes of finished futures, one ``gather`` per batch."""
        while True:
            self._done_event.wait()
            if not self._stop:
                # fetching a result interrupts the busy worker that holds it and costs the
                # kernel (where a local cluster's scheduler runs too) a few messages: fetch
                # what finished within a window together (one request per worker); the
                # window grows with the attempts in flight (0.2 s from 160 on), as a long
                # queue keeps the workers busy anyway
                time.sleep(_gather_window(len(self.inflight)))
            self._done_event.clear()
            items = [self._doneq.popleft() for _ in range(len(self._doneq))]
            if not items and self._stop:
                return
            finished = [(a, f) for a, f in items if f.status == "finished"]
            if finished:
                try:
                    datas = self.client.gather([f for _, f in finished])
                except Exception:  # one of them is gone: fetch them one by one
                    datas = None
                for i, (attempt, fut) in enumerate(finished):
                    if datas is not None:
                        self.finished(attempt, datas[i], None)
                        continue
                    try:
                        self.finished(attempt, fut.result(), None)
                    except BaseException as exc:
                        self.finished(attempt, None, exc)
            for attempt, fut in items:
                if fut.status == "finished":
                    continue
                if fut.status == "cancelled":
                    self.finished(attempt, None, _cancelled(fut))
                    continue
                try:
                    error = fut.exception()
                except BaseException as exc:
                    error = exc
                self.finished(attempt, None, error)

    def classify(self, attempt: Attempt, error: BaseException) -> tuple[str, BaseException]:
        run = attempt.remote.eng.run.name
        kind = type(error).__name__
        if kind == "KilledWorker" or (kind == "CancelledError" and not attempt.cancelled):
            where = f" ({attempt.started[3]})" if attempt.started else ""
            why = "died" if kind == "KilledWorker" else "was stopped by the cluster"
            exc = CrashedRun(
                f"The Dask worker running task run {run!r}{where} {why} ({describe(error)})."
            )
            exc.__cause__ = error
            return "lost", exc
        if isinstance(error, ImportError):
            exc2 = ConfigurationError(
                f"A Dask worker could not load task run {run!r} ({describe(error)}). Install "
                "orion_nb and the modules the task uses on the workers, in the same versions "
                "as in the kernel (client.upload_file() sends a module file next to the "
                "notebook)."
            )
            exc2.__cause__ = error
            return "failed", exc2
        return super().classify(attempt, error)


def _gather_window(inflight: int) -> float:
    """Seconds to let finished futures accumulate with ``inflight`` attempts in flight."""
    return min(_GATHER_MAX, _GATHER_WINDOW * (1 + inflight // _GATHER_STEP))


def _cancelled(fut: Any) -> BaseException:
    from distributed.client import FutureCancelledError

    try:
        return FutureCancelledError(fut.key, reason="cancelled", msg=None)
    except TypeError:  # pragma: no cover - older distributed
        from concurrent.futures import CancelledError

        return CancelledError()


@contextlib.contextmanager
def get_dask_client(timeout: float | str | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for the current run, for Dask collections inside it.

    Inside a task running on a Dask worker it is ``distributed.worker_client()``: the task
    leaves the worker's thread pool while it waits, so its own computations can run. In a
    flow run that uses :class:`DaskTaskRunner` (or a task the flow runs in the kernel) it is
    the runner's client::

        @task
        def total(path):
            with orion_nb.get_dask_client() as client:
                return client.compute(dd.read_parquet(path).x.sum()).result()

    Raises
    ------
    MissingContextError
        Outside a run that uses the Dask task runner.
    MissingDependencyError
        When ``distributed`` is not installed.
    """
    distributed = _distributed()
    task = current_task_run()
    if task is not None:
        try:
            distributed.get_worker()
            on_worker = True
        except ValueError:
            on_worker = False
        if on_worker:
            with distributed.worker_client(timeout=timeout, separate_thread=True) as client:
                yield client
            return
    flow = task.flow_run if task is not None else current_flow_run()
    runner = getattr(flow, "task_runner", None)
    if isinstance(runner, _DaskSession):
        runner.connect()
        yield runner.client
        return
    raise MissingContextError(
        "get_dask_client() was called outside a run that uses the Dask task runner; call it "
        "in a task or flow run of a flow with task_runner=DaskTaskRunner(...) (or 'dask')."
    )
