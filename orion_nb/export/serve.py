"""``orion-nb serve``: a foreground scheduler for one or more deployments.

One thread per deployment repeats a small cycle:

1. read the deployment again (it may have been paused, resumed or removed meanwhile);
2. make sure its next ``ahead`` slots exist as Scheduled flow runs (every process computes
   the same slots, and the database keeps one row per slot);
3. take the runs that are due and :func:`plan` them: run the newest, mark older ones Late and
   skip them (Cancelled, with the reason) unless ``--catch-up`` asks to run them in order;
4. claim a run atomically (:func:`orion_nb.store.deployments.claim_run`) and run it in a child
   process, ``orion-nb run PATH --scheduled-run ID``, in a session of its own so that the
   terminal's Ctrl-C reaches this scheduler, not the run;
5. sleep until the next slot (or ``poll`` seconds, to notice changes made elsewhere).

Runs of one deployment never overlap; deployments run side by side. Several ``serve``
processes may share a database (Postgres across hosts): each slot runs once.

Stopping: SIGTERM or Ctrl-C stops new runs and lets running ones finish for ``grace``
seconds; then they are asked to stop (SIGTERM: the run ends Cancelled) and killed if they do
not within ``kill_after`` seconds. A run its process left open is ended by this process, so
nothing stays Running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.text import Text

from orion_nb.errors import DeploymentError, OrionNBWarning, ScheduleError
from orion_nb.export import deployments as dep
from orion_nb.export.deployments import DeploymentSpec
from orion_nb.export.schedules import Schedule

__all__ = ["Plan", "Server", "plan", "run_now", "serve_paths", "specs_for_paths"]

_HOST = socket.gethostname()
_TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@dataclass
class Plan:
    """What to do with the due runs of one deployment."""

    run: list[dict[str, Any]]
    late: dict[str, str]  # run id -> why it is Late
    skip: dict[str, str]  # run id -> why it is skipped


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"


def plan(
    due: Sequence[dict[str, Any]], now: datetime, *, catch_up: bool, late_after: float
) -> Plan:
    """Decide about the due runs (oldest first) of one deployment at ``now``.

    - A run more than ``late_after`` seconds past its slot is Late.
    - Without ``catch_up`` only the newest due run may run, and only if it is not Late; the
      others were missed and are skipped, saying why.
    - With ``catch_up`` every due run runs, oldest first.
    """
    out = Plan([], {}, {})
    for i, run in enumerate(due):
        slot: datetime = run["expected_start_time"]
        behind = (now - slot).total_seconds()
        late = behind > late_after
        newest = i == len(due) - 1
        if late:
            out.late[run["id"]] = (
                f"not started {_ago(behind)} after its slot ({slot:%Y-%m-%d %H:%M:%S} UTC)"
            )
        if catch_up:
            out.run.append(run)
        elif not newest:
            out.late.setdefault(
                run["id"], f"slot {slot:%Y-%m-%d %H:%M:%S} UTC missed: a later slot is due"
            )
            out.skip[run["id"]] = (
                f"skipped: slot {slot:%Y-%m-%d %H:%M:%S} UTC was missed and a later one is due "
                "(serve --catch-up runs missed slots)"
            )
        elif late:
            out.skip[run["id"]] = (
                f"skipped: slot {slot:%Y-%m-%d %H:%M:%S} UTC was missed by {_ago(behind)} "
                "(serve --catch-up runs missed slots)"
            )
        else:
            out.run.append(run)
    return out


class Server:
    """Serves deployments until stopped (see the module docstring).

    Parameters
    ----------
    deployments
        Deployment rows (as registered).
    catch_up
        Run missed slots instead of skipping them.
    grace
        Seconds a running run may take to finish after SIGTERM/Ctrl-C before it is cancelled.
    late_after
        Seconds past its slot after which a run that has not started is Late.
    ahead
        How many future slots to keep scheduled.
    poll
        Longest sleep between two looks at the database.
    clock
        Returns the current time (aware, UTC); a seam for tests.
    """

    def __init__(
        self,
        deployments: Sequence[dict[str, Any]],
        *,
        catch_up: bool = False,
        grace: float = 30.0,
        kill_after: float = 10.0,
        late_after: float = 15.0,
        ahead: int = 3,
        poll: float = 5.0,
        clock: Callable[[], datetime] = dep.now,
        console: Console | None = None,
    ) -> None:
        self.deployments = list(deployments)
        self.catch_up = catch_up
        self.grace = grace
        self.kill_after = kill_after
        self.late_after = late_after
        self.ahead = ahead
        self.poll = poll
        self.clock = clock
        self.console = console or Console(stderr=True, highlight=False)
        self.stopping = threading.Event()  # no new runs
        self.cancelling = threading.Event()  # stop running runs now
        self._signals = 0
        self._lock = threading.Lock()
        self._ensured: dict[str, set[datetime]] = {}

    def say(self, *parts: str) -> None:
        """One line of the log, user text as text (never markup)."""
        with self._lock:
            self.console.print(Text(f"{self.clock():%H:%M:%S} " + "".join(parts)))

    # -- life cycle ------------------------------------------------------------------------------
    def serve(self) -> int:
        """Run until SIGTERM/Ctrl-C; returns the exit status."""
        main = threading.current_thread() is threading.main_thread()
        old: dict[signal.Signals, Any] = {}
        if main:
            for sig in (signal.SIGTERM, signal.SIGINT):
                old[sig] = signal.signal(sig, self._on_signal)
        for d in self.deployments:
            self.say(
                f"serving {d['name']!r}: {d.get('schedule') or 'no schedule'}, "
                f"{d['path']}{' (paused)' if d.get('paused') else ''}"
            )
        threads = [
            threading.Thread(target=self._worker, args=(d,), name=f"serve-{d['name']}")
            for d in self.deployments
        ]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(0.2)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        self.say("stopped; nothing is left running")
        return 0

    def stop(self, cancel: bool = False) -> None:
        """Stop scheduling; with ``cancel`` also stop the runs in progress now."""
        if not self.stopping.is_set():
            self.stopping.set()
            if self.grace >= 0:
                timer = threading.Timer(self.grace, self.cancelling.set)
                timer.daemon = True
                timer.start()
        if cancel:
            self.cancelling.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            name = signal.Signals(signum).name
            self.say(
                f"{name}: no new runs; a run in progress may finish within {self.grace:g} s "
                "(send it again to cancel now)"
            )
            self.stop()
        else:
            self.say("cancelling the runs in progress")
            self.stop(cancel=True)

    # -- one deployment --------------------------------------------------------------------------
    def _worker(self, deployment: dict[str, Any]) -> None:
        from orion_nb.settings import mask_url

        delay = 1.0
        while not self.stopping.is_set():
            try:
                self._cycle(deployment)
                return
            except Exception as exc:  # e.g. the database is down: say so, then try again
                first = mask_url(str(exc)).strip().splitlines()[0] if str(exc).strip() else ""
                self.say(
                    f"{deployment['name']}: {type(exc).__name__}: {first[:300]}; trying again "
                    f"in {delay:g} s"
                )
                self.stopping.wait(delay)
                delay = min(delay * 2, 60.0)

    def _cycle(self, deployment: dict[str, Any]) -> None:
        from orion_nb.store import deployments as sql

        did = deployment["id"]
        while not self.stopping.is_set():
            d = dep.call(sql.get_deployment, did)
            if d is None:
                self.say(f"{deployment['name']}: the deployment was removed; not serving it")
                return
            schedule = Schedule.from_row(d)
            wait = self.poll
            if not d["paused"] and schedule is not None:
                self._schedule_ahead(d, schedule)
                now = self.clock()
                due = dep.call(sql.due_runs, did, now)
                todo = plan(due, now, catch_up=self.catch_up, late_after=self.late_after)
                if todo.late:
                    dep.call(sql.mark_late, todo.late, now)
                if todo.skip:
                    for rid in dep.call(sql.skip_runs, todo.skip, now):
                        self.say(f"{d['name']}: {todo.skip[rid]}")
                ran = False
                for run in todo.run:
                    if self.stopping.is_set():
                        break
                    if dep.call(sql.claim_run, run["id"], _HOST, os.getpid()):
                        self.execute(d, run)
                        ran = True
                if ran:  # time has passed: look at what is due now before sleeping
                    continue
                nxt = schedule.next_after(self.clock())
                wait = min(self.poll, max(0.0, (nxt - self.clock()).total_seconds()) + 0.01)
            self.stopping.wait(wait)

    def _schedule_ahead(self, d: dict[str, Any], schedule: Schedule) -> None:
        from orion_nb.engine.params import random_run_name
        from orion_nb.store import deployments as sql

        now = self.clock()
        ensured = self._ensured.setdefault(d["id"], set())
        slots: list[datetime] = []
        if self.catch_up and not ensured:
            latest = dep.call(sql.latest_slot, d["id"])
            if latest is not None and latest < now:
                for slot in schedule.slots(latest, now):
                    slots.append(slot)
                    if len(slots) >= 100:
                        self.say(f"{d['name']}: catching up the last 100 missed slots only")
                        break
        slot = schedule.next_after(now)
        for _ in range(self.ahead):
            slots.append(slot)
            slot = schedule.next_after(slot)
        new = [s for s in slots if s not in ensured]
        if new:
            dep.call(sql.schedule_slots, d, new, now, random_run_name)
            ensured.update(new)
            dep.call(sql.set_next_run_at, d["id"], schedule.next_after(now))
        for old in [s for s in ensured if s < now - timedelta(days=1)]:
            ensured.discard(old)

    # -- one run ---------------------------------------------------------------------------------
    def execute(self, d: dict[str, Any], run: dict[str, Any]) -> str:
        """Run a claimed scheduled run in a child process; returns its final state name."""
        from orion_nb.export.params import param_text
        from orion_nb.settings import get_settings
        from orion_nb.store import deployments as sql

        path = Path(d["path"])
        defaults = _param_defaults(path)[0]
        cmd = [sys.executable, "-m", "orion_nb.cli", "run", str(path), "--scheduled-run", run["id"]]
        if path.suffix == ".ipynb":
            cmd += ["--name", d["flow_name"]]
        for key, value in (run.get("parameters") or {}).items():
            cmd += ["--param", f"{key}={param_text(value, defaults.get(key, ''))}"]
        settings = get_settings()
        env = {
            **os.environ,
            "ORION_NB_HOME": str(settings.home),
            "ORION_NB_DATABASE_URL": settings.effective_database_url,
        }
        slot = run.get("expected_start_time")
        started = time.monotonic()
        try:
            proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        except OSError as exc:
            why = f"could not start {path.name}: {exc}"
            dep.call(sql.close_run, run["id"], "CRASHED", "Crashed", why, self.clock())
            self.say(f"{d['name']}: {why}")
            return "Crashed"
        self.say(
            f"{d['name']}: run {run.get('name')!r} for slot "
            f"{slot:%H:%M:%S} started (pid {proc.pid})"
            if isinstance(slot, datetime)
            else f"{d['name']}: run {run.get('name')!r} started (pid {proc.pid})"
        )
        asked = killed = False
        deadline = 0.0
        while True:
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            if self.cancelling.is_set() and not asked:
                asked = True
                deadline = time.monotonic() + self.kill_after
                proc.send_signal(signal.SIGTERM)
            elif asked and not killed and time.monotonic() > deadline:
                killed = True
                try:  # its whole session: the script's own children (`!cmd`) too
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    proc.kill()
        info = dep.call(sql.run_info, run["id"])
        state = info["state_type"] if info else None
        if state not in _TERMINAL:
            now = self.clock()
            if asked:
                why = (
                    "cancelled by orion-nb serve: it did not finish within the "
                    f"{self.grace:g} s grace period after the scheduler was stopped"
                )
                dep.call(sql.close_run, run["id"], "CANCELLED", "Cancelled", why, now)
            elif state == "SCHEDULED" and proc.returncode == 0:
                why = (
                    f"{path.name} exited without recording a flow run: a deployment's script "
                    "must call a @flow (an exported script does), and the history must be "
                    "writable from it (see its output)"
                )
                dep.call(sql.close_run, run["id"], "FAILED", "Failed", why, now)
            elif state == "SCHEDULED":
                why = (
                    f"the process running {path.name} exited with status {proc.returncode} "
                    "before the run was recorded as started (see its output)"
                )
                dep.call(sql.close_run, run["id"], "CRASHED", "Crashed", why, now)
            else:
                why = f"the process running it exited with status {proc.returncode} first"
                dep.call(sql.close_run, run["id"], "CRASHED", "Crashed", why, now)
            info = dep.call(sql.run_info, run["id"])
        if info and info.get("flow_name") and info["flow_name"] != d["flow_name"]:
            dep.call(sql.set_deployment, d["id"], flow_name=info["flow_name"])
            d["flow_name"] = info["flow_name"]
        name = info["state_name"] if info else "Crashed"
        took = time.monotonic() - started
        extra = (
            f": {info['message']}" if info and info.get("message") and name != "Completed" else ""
        )
        self.say(f"{d['name']}: run {run.get('name')!r} {name} after {took:.1f} s{extra}")
        return str(name)


def _param_defaults(path: Path) -> tuple[dict[str, Any], bool]:
    """A notebook's or script's parameter defaults, and whether it reads ``--param`` itself.

    Notebooks and scripts that call ``command_line()`` (exported ones do) check each value
    against its default; an ordinary script gets the text for its own argument parser.
    """
    try:
        if path.suffix == ".ipynb":
            from orion_nb.export.notebook import read_notebook

            return {k: p.value for k, p in read_notebook(path).parameters()[0].items()}, True
        baked = dep.script_defaults(path)
        return dict(baked.get("parameters") or {}), "parameters" in baked
    except Exception:  # the run itself reports an unreadable file
        return {}, False


def _chosen(path: Path, stored: dict[str, Any], params: Sequence[str], what: str) -> dict[str, Any]:
    """``stored`` values with ``NAME=VALUE`` overrides, each read as its default's type."""
    from orion_nb.export.params import apply_params, split_param

    defaults, checked = _param_defaults(path)
    values = dict(stored)
    if not checked:
        given = dict(split_param(p) for p in params)
        if given:
            warnings.warn(
                f"{path.name} does not call orion_nb.export.runtime.command_line(), so its "
                "parameters reach it only as --param NAME=VALUE arguments for it to read.",
                OrionNBWarning,
                stacklevel=3,
            )
        values.update(given)
        return values
    merged = apply_params({**defaults, **values}, params, what=what)
    values.update({k: merged[k] for k in (split_param(p)[0] for p in params)})
    return values


def specs_for_paths(
    paths: Sequence[str | Path],
    *,
    name: str | None = None,
    cron: str | None = None,
    interval: str | float | None = None,
    anchor: str | None = None,
    timezone: str | None = None,
    params: Sequence[str] = (),
) -> list[DeploymentSpec]:
    """Deployment specs for notebooks and scripts, validated (paths, schedules, parameters).

    A schedule given here applies to every path; without one, an exported script's own
    schedule is used, then the schedule already stored for a deployment of that name.
    """

    if name is not None and len(paths) > 1:
        raise DeploymentError(
            "--name names one deployment; serve several paths without --name (each is named "
            "after its file) or register them one by one."
        )
    given = Schedule.parse(cron=cron, interval=interval, timezone=timezone, anchor=anchor)
    specs = []
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if not path.is_file():
            raise DeploymentError(f"Cannot serve {str(raw)!r}: there is no such file.")
        baked: dict[str, Any] = {}
        if path.suffix == ".ipynb":
            from orion_nb.export.notebook import read_notebook

            read_notebook(path)  # an unreadable notebook fails now, not at its first slot
            flow_name = name or path.name
        else:
            baked = dep.script_defaults(path)
            flow_name = baked.get("flow_name") or path.stem
        dname = name or baked.get("name") or path.name
        schedule = given
        if schedule is None and ("cron" in baked or "interval" in baked):
            schedule = Schedule.parse(
                cron=baked.get("cron"),
                interval=baked.get("interval"),
                timezone=baked.get("timezone"),
                anchor=baked.get("anchor"),
            )
        if schedule is None:
            from orion_nb.store import deployments as sql

            stored = dep.call(sql.get_deployment, dname)
            schedule = Schedule.from_row(stored) if stored else None
        if schedule is None:
            raise ScheduleError(
                f"No schedule for {path.name}: pass --cron EXPR or --interval SECONDS (or "
                "export the notebook with one)."
            )
        chosen = _chosen(path, {}, params, path.name)
        specs.append(DeploymentSpec(dname, path, flow_name, schedule, chosen))
    return specs


def serve_paths(
    paths: Sequence[str | Path] = (),
    *,
    deployments: Sequence[str] = (),
    name: str | None = None,
    cron: str | None = None,
    interval: str | float | None = None,
    anchor: str | None = None,
    timezone: str | None = None,
    params: Sequence[str] = (),
    catch_up: bool = False,
    grace: float = 30.0,
    late_after: float = 15.0,
    ahead: int = 3,
    poll: float = 5.0,
) -> int:
    """Register the deployments for ``paths`` (and load the named ``deployments``), then serve.

    Returns the exit status (0 after a clean stop).
    """
    rows = [
        dep.register(spec)
        for spec in specs_for_paths(
            paths,
            name=name,
            cron=cron,
            interval=interval,
            anchor=anchor,
            timezone=timezone,
            params=params,
        )
    ]
    for key in deployments:
        rows.append(dep.find(key))
    if not rows:
        raise DeploymentError(
            "Nothing to serve: give notebooks or scripts, or --deployment NAME for registered "
            "ones (see orion-nb deployments ls)."
        )
    for row in rows:
        if Schedule.from_row(row) is None:
            raise ScheduleError(
                f"Deployment {row['name']!r} has no schedule; register it again with --cron or --interval."
            )
    server = Server(
        rows, catch_up=catch_up, grace=grace, late_after=late_after, ahead=ahead, poll=poll
    )
    return server.serve()


def run_now(name: str, params: Sequence[str] = ()) -> str:
    """``orion-nb deployments run NAME``: one run of the deployment now, in the foreground.

    The run is recorded with the deployment (claimed by this process as it is created, so no
    ``serve`` process takes it). Ctrl-C or SIGTERM cancels it. Returns its final state name.
    """
    from orion_nb.engine.params import random_run_name
    from orion_nb.store import deployments as sql

    d = dep.find(name)
    values = _chosen(Path(d["path"]), d.get("parameters") or {}, params, f"Deployment {name!r}")
    now = dep.now()
    rid = dep.call(sql.create_run, d, values, now, random_run_name(), _HOST, os.getpid())
    server = Server([d], grace=0)
    old = {
        sig: signal.signal(sig, lambda *_: server.stop(cancel=True))
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        run = {"id": rid, "name": None, "expected_start_time": now, "parameters": values}
        return server.execute(d, run)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
