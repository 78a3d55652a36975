"""The one background, batched writer of a process: nothing lost, nothing stuck.

The engine never waits for the database on the hot path: it appends small tuples to
:attr:`Writer.queue` (a ``collections.deque``; ``append`` is atomic and takes ~50 ns). A
coroutine on the writer's own loop thread drains the queue every ``flush_interval`` seconds
and turns what it took into one batch (:mod:`orion_nb.store.batches`: coalesced, cleaned,
with an id), which joins the *backlog*, the ordered list of batches not yet committed. The
backlog is written head first, each batch in one transaction (:mod:`orion_nb.store.targets`).

What can go wrong, and what happens then (docs/reliability.md says it for users): a row the
database refuses is isolated by splitting the batch and replaced by an ERROR log entry of its
run; while the database cannot be written the backlog is retried with a growing delay and,
past ``max_pending_rows``, journaled (:mod:`orion_nb.store.journal`); a replaced SQLite file
is created again; at exit and on SIGTERM at most ``exit_timeout`` seconds are spent writing
and the rest is journaled, to be written exactly once by the next process (each batch's id
is committed with its rows in ``write_batches``); a kill -9 loses at most one flush window.

:meth:`Writer.flush` blocks until everything queued before the call is committed; the engine
calls it when a top-level flow run ends so that its history is visible at once, also to
other processes. While the database is down it warns (once per outage) instead of failing
the user's run. The writer also writes a heartbeat of this process's open flow runs and
standalone task runs every ``heartbeat_interval`` seconds.

Event tuples are declared, with their field types, in :mod:`orion_nb._events`.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
import time
import warnings
from collections import deque
from typing import Any

from orion_nb._collector import collector_paused
from orion_nb._loop import LoopThread
from orion_nb.errors import ConfigurationError, OrionNBWarning, warn_in_background
from orion_nb.settings import get_settings, mask_url
from orion_nb.store import database, recovery
from orion_nb.store.batches import Batch
from orion_nb.store.coalesce import Coalescer
from orion_nb.store.journal import Journal, exit_report, quarantine, rows_of
from orion_nb.store.refusals import refusal, unreadable
from orion_nb.store.targets import PostgresTarget, SQLiteTarget, classify

__all__ = ["Writer"]

_MAX_BACKOFF = 5.0


class _Outage(Exception):
    """The backlog could not be written now (the cause is in ``__cause__``)."""


class Writer:
    """Batched writer bound to one database URL.

    Parameters
    ----------
    url
        The database URL (user form; the async driver is chosen by ``store.database``).
    flush_interval
        Seconds between writes while records are arriving.
    loop_thread
        The loop thread to run on (a new one of its own by default).
    """

    def __init__(
        self, url: str, *, flush_interval: float = 0.05, loop_thread: LoopThread | None = None
    ) -> None:
        s = get_settings()
        self.url = url
        self.flush_interval = flush_interval
        self.heartbeat_interval = s.heartbeat_interval
        self.exit_timeout = s.exit_timeout
        self.max_pending_rows = s.max_pending_rows
        self.crash_grace = s.crash_grace
        self.journal = Journal(s.journal_dir, url)
        self.queue: deque[tuple[Any, ...]] = deque()
        self._engine: Any = None  # sync Engine (SQLite) or AsyncEngine (Postgres)
        # SQLite opened through sqlite3 alone: the engine is made only when asked for
        self._lazy_engine = False
        self._engine_lock = threading.Lock()
        self._lt = loop_thread or LoopThread("orion-nb-writer")
        self._target: Any = None
        # the SQLite target can leave plain task runs' transitions out (batches.py)
        self._coalescer = Coalescer(elide=url.split(":", 1)[0].split("+")[0] == "sqlite")
        self._backlog: deque[Batch] = deque()
        self._spilled: deque[Any] = deque()  # journal files to write before the backlog
        self._waiters: list[concurrent.futures.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._sleeping = False
        self._closed = False
        self._abandoned = False
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._backoff = 0.0
        self._next_heartbeat = 0.0
        self._outage_warned = False
        self._replaced_warned = False
        self.refused = 0  # rows the database refused (each replaced by an ERROR log entry)
        self.journaled = 0  # rows this process sent to the journal
        self.dropped = 0  # events the coalescer could not read (a bug: each warned about)
        self.last_error: BaseException | None = None

    def __repr__(self) -> str:
        return (
            f"Writer(url={mask_url(self.url)!r}, queued={len(self.queue)}, "
            f"backlog={sum(len(b) for b in self._backlog)})"
        )

    @property
    def engine(self) -> Any:
        """The SQLAlchemy engine of this database (``None`` once closed).

        The SQLite writer does not need one (it writes, sets up the schema and detects
        crashed runs through ``sqlite3``, so the first run imports no SQLAlchemy): it is
        made on first use here, for the history reads and deployments that ask for it.
        """
        engine = self._engine
        if engine is None and self._lazy_engine and not self._closed:
            with self._engine_lock:
                if self._engine is None and not self._closed:
                    self._engine = database.create_engine(self.url)
                engine = self._engine
        return engine

    def start(self) -> Writer:
        """Connect, set up the schema, replay the journal, mark crashed runs, start writing.

        Raises
        ------
        ConfigurationError
            When the database cannot be used; the message names the cause and the fix and
            shows no password.
        """
        self._lt.start()
        try:
            self._lt.run(self._start())
        except ConfigurationError:
            self._lt.stop()
            raise
        except Exception as exc:
            self._lt.stop()
            raise ConfigurationError(
                f"Cannot use the database {mask_url(self.url)!r}: {database.explain(exc, self.url)}"
            ) from None
        atexit.register(self.close)
        from orion_nb.store import signals

        signals.install(self)
        return self

    async def _start(self) -> None:
        created = await self._open_store()
        journaled = self.journal.files()
        self._spilled.extend(journaled)
        try:
            await self._write_backlog()
        except _Outage:
            pass  # retried by the loop
        if not created or journaled:  # a database created just now holds no runs to check
            await self._reconcile()
        self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _open_store(self) -> bool:
        """Set up the schema and open the target; whether the database was created just now.

        A plain SQLite file is set up and written through ``sqlite3`` alone (see
        :func:`orion_nb.store.database.open_sqlite`); Postgres, other SQLite URLs and a
        schema that needs Alembic's migrations go through SQLAlchemy.
        """
        path = database.sqlite_path(self.url)
        state = None if path is None else database.open_sqlite(self.url, path)
        if path is not None and state is not None:
            self._lazy_engine = True
            self._target = SQLiteTarget(None, path)
            return state == "created"
        self._lazy_engine = False
        self._engine = database.create_engine(self.url)
        try:
            await database.migrate(self._engine)
            engine = self._engine
            if database.is_async(engine):
                self._target = PostgresTarget(engine)
            else:
                self._target = SQLiteTarget(engine, engine.url.database)
        except BaseException:
            await self._dispose()
            raise
        return False

    async def _reconcile(self) -> None:
        try:
            await self._run_sync(recovery.reconcile, self.crash_grace)
        except Exception as exc:  # crash marking must never keep the store from opening
            warn_in_background(
                f"Could not check for crashed runs in {mask_url(self.url)}: "
                f"{database.explain(exc, self.url)}"
            )

    async def _run_sync(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(connection, *args)`` in one transaction.

        On the writer's own ``sqlite3`` connection when SQLite was opened without
        SQLAlchemy, else on a sync connection of either kind of engine.
        """
        if self._lazy_engine:
            return self._target.in_transaction(fn, *args)
        if database.is_async(self._engine):
            async with self._engine.begin() as conn:
                return await conn.run_sync(fn, *args)
        with self._engine.begin() as conn:
            return fn(conn, *args)

    def put(self, event: tuple[Any, ...]) -> None:
        """Queue one event (thread-safe, non-blocking)."""
        self.queue.append(event)
        if self._sleeping:
            self._sleeping = False
            wake = self._wake
            if wake is not None:
                self._lt.call_soon(wake.set)

    def flush(self, timeout: float | None = 60) -> None:
        """Block until everything queued so far is committed.

        A database failure is reported as an :class:`OrionNBWarning`, once per outage (the
        records are kept and retried); it never turns a user's successful run into an error.
        """
        if self._task is None or self._closed:
            return
        if self._lt.in_thread:
            raise RuntimeError("Writer.flush() cannot block the loop thread; use aflush().")
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.put(("flush", fut))
        self._lt.call_soon(self._wake_now)
        try:
            fut.result(timeout)
        except concurrent.futures.TimeoutError:
            self._warn_outage(f"did not finish within {timeout} s")
        except Exception as exc:
            self._warn_outage(database.explain(exc, self.url))

    def _warn_outage(self, why: str) -> None:
        if self._outage_warned:
            return
        self._outage_warned = True
        warnings.warn(
            f"Could not write run history to {mask_url(self.url)}: {why} Records are kept in "
            f"memory and retried (past {self.max_pending_rows:,} rows they go to the journal "
            f"in {self.journal.dir}); your runs are not affected. This warning is shown once "
            "per outage.",
            OrionNBWarning,
            stacklevel=3,
        )

    async def aflush(self) -> None:
        """Await (from any loop) until everything queued so far is committed."""
        if self._task is None or self._closed:
            return
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.put(("flush", fut))
        self._lt.call_soon(self._wake_now)
        try:
            await asyncio.wrap_future(fut)
        except Exception as exc:
            self._warn_outage(database.explain(exc, self.url))

    def _wake_now(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def close(self, timeout: float | None = None, crash_open_runs: str | None = None) -> None:
        """Write what is pending (for at most ``exit_timeout`` s), journal the rest, stop.

        Idempotent; runs at interpreter exit and on SIGTERM. Never hangs: a driver call that
        does not return in time is abandoned and its batch journaled (a batch that was in fact
        committed is recognised by its id at replay and not written twice).
        ``crash_open_runs`` (the reason) first records every unfinished run of this process
        as Crashed, as the SIGTERM handler does.
        """
        if self._closed or self._task is None:
            return
        self._closed = True
        budget = self.exit_timeout if timeout is None else timeout
        report: dict[str, Any] = {}
        try:
            report = self._lt.run(
                self._final(time.monotonic() + budget, crash_open_runs), timeout=budget + 2
            )
        except Exception:
            report = self._abandon()
        self._lt.stop(timeout=1)  # a thread stuck in a driver call is a daemon: leave it
        atexit.unregister(self.close)
        self._report(report)

    async def _final(self, deadline: float, crash_open_runs: str | None) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except BaseException:
                pass
        self._take(time.time())
        if crash_open_runs:
            self._crash_open_runs(crash_open_runs)
        error: BaseException | None = None
        while self._backlog or self._spilled:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if isinstance(self._target, SQLiteTarget):
                self._target.set_busy_timeout(min(2.0, left))
            try:
                await asyncio.wait_for(self._write_backlog(), left)
            except (_Outage, TimeoutError) as exc:
                error = exc.__cause__ or exc
                await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        report = self._spill_all(error)
        self._fail_waiters(None)
        if isinstance(self._target, SQLiteTarget):
            self._target.close()
        await self._dispose()
        return report

    def _crash_open_runs(self, message: str) -> None:
        now = time.time()
        self.queue.extend(self._coalescer.crashed(message, now))
        self._take(now)

    def _abandon(self) -> dict[str, Any]:
        """The loop thread is stuck in a driver call: journal what is known from this thread."""
        self._abandoned = True
        if not self._lock.acquire(timeout=1):
            return {"lost": len(self.queue), "error": "the writer thread did not respond"}
        try:
            self._take(time.time())
            return self._spill_all(TimeoutError("a database call did not return in time"))
        finally:
            self._lock.release()

    def _spill_all(self, error: BaseException | None) -> dict[str, Any]:
        rows = journaled = lost = 0
        files: set[str] = {str(f.path) for f in self._spilled}
        reason = None
        while self._backlog:
            batch = self._backlog.popleft()
            n = len(batch.without_heartbeats())
            if batch.origin is not None or n == 0:
                continue  # already on disk / nothing worth keeping
            rows += n
            try:
                self.journal.write(batch)
                journaled += n
            except OSError as exc:
                lost += n
                reason = f"{type(exc).__name__}: {exc}"
        pending = sum(rows_of(f) for f in self._spilled)
        self._spilled.clear()
        self.journaled += journaled
        return {
            "journaled": journaled + pending,
            "lost": lost,
            "files": len(files),
            "error": None if error is None else database.explain(error, self.url),
            "journal_error": reason,
        }

    def _report(self, report: dict[str, Any]) -> None:
        text = exit_report(report, mask_url(self.url), self.journal.dir)
        if text:
            warnings.warn(text, OrionNBWarning, stacklevel=3)

    async def _dispose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        if database.is_async(engine):
            await engine.dispose()
        else:
            engine.dispose()

    def _next_wait(self) -> float | None:
        now = time.monotonic()
        if self.queue:
            return self.flush_interval
        if self._backlog or self._spilled:
            return max(0.01, self._retry_at - now)
        flows, tasks = self._coalescer.open_runs()
        if flows or tasks:
            return max(0.01, self._next_heartbeat - now)
        return None

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closed:
            timeout = self._next_wait()
            if timeout is None or timeout > self.flush_interval:
                self._sleeping = True
                if self.queue:  # an event arrived before the flag was set
                    self._sleeping = False
                    timeout = self.flush_interval
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
            self._sleeping = False
            self._wake.clear()
            await self._drain()

    def _take(self, now: float) -> None:
        """Move the queue's events into a new backlog batch (with heartbeats when due)."""
        q = self.queue
        events = [q.popleft() for _ in range(len(q))]
        waiters = [ev[1] for ev in events if ev[0] == "flush"]
        if waiters:
            events = [ev for ev in events if ev[0] != "flush"]
        extra = None
        mono = time.monotonic()
        if mono >= self._next_heartbeat:
            self._next_heartbeat = mono + self.heartbeat_interval
            extra = self._coalescer.heartbeat(now)
        if events or extra:
            try:
                with collector_paused():  # see orion_nb/_collector.py: rows, not cycles
                    batch = self._coalescer.batch(events, extra)
            except Exception as exc:  # a bug, not the database: say so, never hang a flush
                self._unreadable(events, exc)
            else:
                if len(batch):
                    self._backlog.append(batch)
        self._waiters.extend(waiters)

    def _unreadable(self, events: list[tuple[Any, ...]], exc: Exception) -> None:
        self.dropped += len(events)
        warn_in_background(unreadable(len(events), exc))

    async def _drain(self) -> None:
        with self._lock:
            self._take(time.time())
        if time.monotonic() < self._retry_at and not self._waiters:
            return
        try:
            await self._write_backlog()
        except _Outage as exc:
            cause = exc.__cause__ or exc
            self.last_error = cause
            self._backoff = min(_MAX_BACKOFF, max(0.1, self._backoff * 2))
            self._retry_at = time.monotonic() + self._backoff
            self._bound_memory()
            self._fail_waiters(cause)
            return
        self._backoff = 0.0
        self._retry_at = 0.0
        self.last_error = None
        self._outage_warned = False
        self._fail_waiters(None)

    def _fail_waiters(self, exc: BaseException | None) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)

    def _bound_memory(self) -> None:
        """Past ``max_pending_rows``, the oldest batches go to the journal (in order)."""
        total = sum(len(b) for b in self._backlog)
        while self._backlog and total > self.max_pending_rows:
            batch = self._backlog[0]
            if batch.origin is not None:
                break  # a journal file being replayed: it is on disk already
            try:
                file = self.journal.write(batch)
            except OSError as exc:
                warn_in_background(
                    f"orion_nb cannot write its journal in {self.journal.dir} ({exc}); "
                    f"{total:,} history records wait in memory for {mask_url(self.url)}."
                )
                return
            self._backlog.popleft()
            self._spilled.append(file)
            self.journaled += len(batch)
            total -= len(batch)

    async def _write_backlog(self) -> None:
        """Write journal files, then the backlog, head first; raise :class:`_Outage` to stop."""
        while not self._abandoned:
            if self._spilled:
                file = self._spilled.popleft()
                try:
                    batch = file.load()
                except FileNotFoundError:
                    continue  # written (and removed) by another process meanwhile
                except (OSError, ValueError) as exc:
                    quarantine(file, exc)
                    continue
                batch.origin = [file, 1]
                self._backlog.appendleft(batch)
            if not self._backlog:
                return
            batch = self._backlog[0]
            try:
                await self._write_one(batch)
            except Exception as exc:
                kind = classify(exc)
                if kind == "replaced":
                    await self._reopen()
                    continue
                if kind == "data":
                    if len(batch) > 1:
                        self._backlog.popleft()
                        a, b = batch.split()
                        self._backlog.extendleft((b, a))
                        continue
                    await self._refuse(batch, exc)
                else:
                    raise _Outage() from exc
            self._backlog.popleft()
            self._done(batch)

    async def _write_one(self, batch: Batch) -> bool:
        target = self._target
        if isinstance(target, SQLiteTarget):
            with collector_paused():
                return target.write(batch)
        return bool(await target.write(batch))

    def _done(self, batch: Batch) -> None:
        origin = batch.origin
        if origin is not None:
            origin[1] -= 1
            if origin[1] <= 0:
                origin[0].remove()

    async def _refuse(self, batch: Batch, exc: BaseException) -> None:
        """Replace the one row the database refuses by an ERROR log entry of its run."""
        key, row = batch.rows()[0]
        if key.startswith("heartbeat_"):
            return
        flow_id, task_id, what, error, message = refusal(key, row, exc, self.url)
        for ids in ((flow_id, task_id), (None, None)):
            log = {
                "flow_run_id": ids[0],
                "task_run_id": ids[1],
                "level": "ERROR",
                "timestamp": time.time(),
                "message": message,
            }
            try:
                await self._write_one(Batch({"logs": [log]}, batch.id))
                break
            except Exception as again:
                if classify(again) != "data":
                    raise _Outage() from again
        self.refused += 1
        if self.refused == 1:
            warn_in_background(
                f"The history database {mask_url(self.url)} refused a record ({what}: "
                f"{error[:300]}). It was dropped and an ERROR log entry of the run says so; "
                "every other record is written. Later refused records are handled the same "
                "way without this warning."
            )

    async def _reopen(self) -> None:
        """The SQLite file was deleted or replaced: create it again and go on writing there."""
        path = self._target.path if self._target is not None else "?"
        if not self._replaced_warned:
            self._replaced_warned = True
            warn_in_background(
                f"The history database file {path} was deleted or replaced while this process "
                "was writing to it. orion_nb created it again and writes there from now on; "
                "runs still in progress are written again, runs that had finished were in the "
                "old file."
            )
        if self._target is not None:
            self._target.close()
        await self._dispose()
        try:
            await self._open_store()
        except ConfigurationError as exc:
            raise _Outage() from exc
        self._backlog.appendleft(self._coalescer.reinsert_open_runs())
