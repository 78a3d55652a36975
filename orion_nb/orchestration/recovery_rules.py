"""DetectCrashedRuns: which unfinished runs have lost the process that ran them.

A kernel that is killed (``kill -9``, out of memory, a container stopped) cannot record the
end of its runs; without this rule they would stay Running forever. The store gathers the
facts (each open run's host, pid, process start and last heartbeat; which pids of this host
are alive and since when) and this pure function decides, so the decision is a specification
that tests read without a database or a process table.

The decision, in order:

1. A finished run is never touched: its end was recorded by the process that ran it.
   Neither is a scheduled run no process has claimed yet (no host, no pid): it is a
   deployment's slot waiting for its time, created ahead on purpose (the scheduler marks it
   Late or skips it, see ``export/``), not a run whose process was lost.
2. A run of this very process is alive.
3. A run of this host whose pid is gone is crashed. If the pid is alive but started at a
   different time than the run's process (``pid_start``), the pid was reused (in a container
   the dead kernel's pid is often 1 again): crashed.
4. Otherwise (another host, or a process whose start cannot be compared) the heartbeat
   decides: none for longer than ``grace`` seconds means crashed. A run's heartbeat is written
   every few seconds by its process's writer thread, so a live run is never that quiet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["RULE", "UNKNOWN_START", "Crash", "OpenRun", "detect_crashed_runs"]

RULE = "DetectCrashedRuns"
# what the process table says when a pid is alive but its start time cannot be read
UNKNOWN_START = "?"
_TERMINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


@dataclass(frozen=True)
class OpenRun:
    """What the history says about one run that has not finished."""

    run_id: str
    kind: str  # "flow" or "task"
    state_type: str | None
    host: str | None
    pid: int | None
    pid_start: str | None
    last_seen: float | None  # heartbeat, else start or creation time (epoch seconds)


@dataclass(frozen=True)
class Crash:
    """A run to mark Crashed, and the reason recorded with it."""

    run_id: str
    kind: str
    message: str


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _who(run: OpenRun) -> str:
    return f"pid {run.pid} on host {run.host or 'unknown'}, last heartbeat {_when(run.last_seen)}"


def detect_crashed_runs(
    runs: Iterable[OpenRun],
    *,
    host: str,
    pid: int,
    pid_start: str | None,
    processes: Mapping[int, str | None],
    now: float,
    grace: float,
) -> list[Crash]:
    """The runs among ``runs`` whose process is gone, with the reason for each.

    Parameters
    ----------
    runs
        Unfinished runs as recorded.
    host, pid, pid_start
        This process (its runs are alive by definition).
    processes
        For pids of this host: the start identity of the process that has that pid now,
        :data:`UNKNOWN_START` when it is alive but its start cannot be read, ``None`` when
        no process has it. Pids not in the mapping are treated as unknown.
    now, grace
        The current time and how long a heartbeat may be missing (seconds).
    """
    crashes = []
    for run in runs:
        if run.state_type in _TERMINAL:
            continue
        if run.state_type == "SCHEDULED" and run.host is None and run.pid is None:
            continue  # an unclaimed slot: no process was ever meant to run it yet
        if run.host == host and run.pid == pid and run.pid_start in (None, pid_start):
            continue
        quiet = run.last_seen is not None and now - run.last_seen > grace
        if run.host == host and run.pid is not None and run.pid in processes:
            current = processes[run.pid]
            if current is None:
                crashes.append(
                    Crash(
                        run.run_id,
                        run.kind,
                        f"{RULE}: the process that ran it exited before the run finished "
                        f"(kernel restarted or killed; {_who(run)}).",
                    )
                )
                continue
            if run.pid_start and current not in (UNKNOWN_START, run.pid_start):
                crashes.append(
                    Crash(
                        run.run_id,
                        run.kind,
                        f"{RULE}: the process that ran it is gone; its pid now belongs to "
                        f"another process ({_who(run)}).",
                    )
                )
                continue
            if run.pid_start and current == run.pid_start:
                continue  # the very process that runs it is alive, however quiet
        if quiet:
            assert run.last_seen is not None
            crashes.append(
                Crash(
                    run.run_id,
                    run.kind,
                    f"{RULE}: no heartbeat for {now - run.last_seen:,.0f} s (grace {grace:g} s); "
                    f"its process is presumed gone ({_who(run)}).",
                )
            )
    return crashes
