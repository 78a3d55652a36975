"""States a run moves through.

A *state type* is one of eight coarse phases; a *named state* refines it (``Cached`` is a
COMPLETED state, ``AwaitingRetry`` a SCHEDULED one). States are small immutable-by-convention
objects created on the hot path, so they use ``__slots__`` and store the timestamp as epoch
seconds; :attr:`State.timestamp` converts on demand.
"""

from __future__ import annotations

import enum
import time
from datetime import UTC, datetime
from typing import Any

from orion_nb.errors import CancelledRun, CrashedRun, FailedRun, MissingResult

__all__ = [
    "STATE_NAMES",
    "TERMINAL_TYPES",
    "AwaitingRetry",
    "Cached",
    "Cancelled",
    "Completed",
    "Crashed",
    "Failed",
    "Late",
    "Paused",
    "Pending",
    "Retrying",
    "Running",
    "Scheduled",
    "State",
    "StateType",
    "TimedOut",
    "is_state_iterable",
]


class StateType(enum.Enum):
    """The coarse phase of a run."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"
    PAUSED = "PAUSED"

    # members are singletons: hash by identity in C, not Enum's Python-level hash of the name
    # (state types are dictionary keys on every transition)
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"StateType.{self.name}"


TERMINAL_TYPES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
)

_DEFAULT_NAMES = {
    StateType.SCHEDULED: "Scheduled",
    StateType.PENDING: "Pending",
    StateType.RUNNING: "Running",
    StateType.COMPLETED: "Completed",
    StateType.FAILED: "Failed",
    StateType.CRASHED: "Crashed",
    StateType.CANCELLED: "Cancelled",
    StateType.PAUSED: "Paused",
}

# every state name the engine gives, in lifecycle order (the history's categorical order)
STATE_NAMES = (
    "Scheduled",
    "Late",
    "AwaitingRetry",
    "Pending",
    "Running",
    "Retrying",
    "Paused",
    "Completed",
    "Cached",
    "Failed",
    "TimedOut",
    "Crashed",
    "Cancelled",
)

_UNSET: Any = object()


class State:
    """One state of a flow or task run.

    Parameters
    ----------
    type
        The :class:`StateType`.
    name
        The named state (defaults to the type's name, e.g. ``"Completed"``).
    message
        A human explanation (``"RetryFailedRuns: attempt 2 of 3 in 0.5 s"``).
    rule
        Name of the orchestration rule that produced this state, if a rule intervened.
    data
        The run's result for COMPLETED states, or the exception for FAILED/CRASHED ones.
    ts
        Epoch seconds (UTC); defaults to now.
    run_id
        The id of the run this state belongs to.
    scheduled_at
        For SCHEDULED states: when the run should start (epoch seconds).
    """

    __slots__ = ("_data", "message", "name", "rule", "run_id", "scheduled_at", "ts", "type")

    def __init__(
        self,
        type: StateType,
        name: str | None = None,
        message: str | None = None,
        *,
        rule: str | None = None,
        data: Any = _UNSET,
        ts: float | None = None,
        run_id: str | None = None,
        scheduled_at: float | None = None,
    ) -> None:
        self.type = type
        self.name = name or _DEFAULT_NAMES[type]
        self.message = message
        self.rule = rule
        self._data = data
        self.ts = time.time() if ts is None else ts
        self.run_id = run_id
        self.scheduled_at = scheduled_at

    # -- predicates -------------------------------------------------------------------------
    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in TERMINAL_TYPES

    # -- data -------------------------------------------------------------------------------
    @property
    def timestamp(self) -> datetime:
        """When the run entered this state, as a timezone-aware UTC datetime."""
        return datetime.fromtimestamp(self.ts, UTC)

    @property
    def data(self) -> Any:
        return None if self._data is _UNSET else self._data

    def has_data(self) -> bool:
        return self._data is not _UNSET

    def result(self, raise_on_failure: bool = True) -> Any:
        """Return the run's result, or raise its exception.

        Parameters
        ----------
        raise_on_failure
            When the state is FAILED, CRASHED or CANCELLED, raise the original exception
            (default). With ``False`` the exception object is returned instead.
        """
        __tracebackhide__ = True  # IPython hides this frame from user tracebacks
        if self.type is StateType.COMPLETED:
            if self._data is _UNSET:
                raise MissingResult(
                    f"State {self.name!r} of run {self.run_id} holds no result; "
                    "results are kept in memory only while the run's future is referenced "
                    "(set persist_result=True to keep them)."
                )
            return self._data
        if self.type in TERMINAL_TYPES:
            if not raise_on_failure and self._data is not _UNSET and self._data is not None:
                return self._data  # a failed state keeps the data it was given
            exc = self.exception()
            if raise_on_failure:
                raise exc
            return exc
        raise MissingResult(
            f"Run {self.run_id} is in state {self.name!r} and has no result yet; wait for it first."
        )

    def exception(self) -> BaseException:
        """The exception a failed, crashed or cancelled state stands for.

        Its own exception when it has one; for a state that judges a group of states (a flow
        that returned futures), the first failed member's; otherwise a :class:`FailedRun`,
        :class:`CrashedRun` or :class:`CancelledRun` carrying the state's message.
        """
        data = self._data
        if isinstance(data, BaseException):
            return data
        members = [data] if isinstance(data, State) else data if is_state_iterable(data) else ()
        for member in members:
            if member.type in _BAD_TYPES:
                return member.exception()
        cls = {StateType.CANCELLED: CancelledRun, StateType.CRASHED: CrashedRun}.get(
            self.type, FailedRun
        )
        return cls(self.message or f"Run ended in state {self.name!r}.")

    def __repr__(self) -> str:
        msg = f", message={self.message!r}" if self.message else ""
        return f"{self.name}(type={self.type.name}{msg})"

    def __eq__(self, other: object) -> bool:  # states compare by content, not identity
        if not isinstance(other, State):
            return NotImplemented
        return (self.type, self.name, self.ts, self.run_id) == (
            other.type,
            other.name,
            other.ts,
            other.run_id,
        )

    __hash__ = None  # type: ignore[assignment]


_BAD_TYPES = frozenset({StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})


def is_state_iterable(value: Any) -> bool:
    """A non-empty list, tuple or set whose members are all states (judged as a group)."""
    return (
        isinstance(value, (list, tuple, set, frozenset))
        and bool(value)
        and all(isinstance(v, State) for v in value)
    )


# -- named-state constructors (Prefect-compatible names) -----------------------------------


def Scheduled(scheduled_at: float | None = None, **kw: Any) -> State:
    return State(StateType.SCHEDULED, kw.pop("name", "Scheduled"), scheduled_at=scheduled_at, **kw)


def Late(**kw: Any) -> State:
    return State(StateType.SCHEDULED, kw.pop("name", "Late"), **kw)


def AwaitingRetry(scheduled_at: float | None = None, **kw: Any) -> State:
    return State(
        StateType.SCHEDULED, kw.pop("name", "AwaitingRetry"), scheduled_at=scheduled_at, **kw
    )


def Pending(**kw: Any) -> State:
    return State(StateType.PENDING, kw.pop("name", "Pending"), **kw)


def Running(**kw: Any) -> State:
    return State(StateType.RUNNING, kw.pop("name", "Running"), **kw)


def Retrying(**kw: Any) -> State:
    return State(StateType.RUNNING, kw.pop("name", "Retrying"), **kw)


def Completed(**kw: Any) -> State:
    return State(StateType.COMPLETED, kw.pop("name", "Completed"), **kw)


def Cached(**kw: Any) -> State:
    return State(StateType.COMPLETED, kw.pop("name", "Cached"), **kw)


def Failed(**kw: Any) -> State:
    return State(StateType.FAILED, kw.pop("name", "Failed"), **kw)


def TimedOut(**kw: Any) -> State:
    return State(StateType.FAILED, kw.pop("name", "TimedOut"), **kw)


def Crashed(**kw: Any) -> State:
    return State(StateType.CRASHED, kw.pop("name", "Crashed"), **kw)


def Cancelled(**kw: Any) -> State:
    return State(StateType.CANCELLED, kw.pop("name", "Cancelled"), **kw)


def Paused(**kw: Any) -> State:
    return State(StateType.PAUSED, kw.pop("name", "Paused"), **kw)
