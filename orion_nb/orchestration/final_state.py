"""What final state a run's return value gives it (Prefect 3's rules, written as a function).

The engine first replaces every future in the return value by that run's state (wherever it
sits: lists, dicts, dataclasses...), then asks :func:`state_from_return`:

- a ``State`` the user built and returned (it belongs to no run yet) is the final state, as
  given: ``Completed(name="Skipped", message=...)`` stays a Completed "Skipped" state, and a
  ``Failed`` state keeps its data and message;
- a ``State`` of another run, or a non-empty list, tuple or set of states, is judged as a
  group: Completed when every member completed, Cancelled when one was cancelled, Paused when
  one is paused, Failed otherwise; the message counts them ("1/3 states failed.") and the
  group itself is the result;
- anything else, including a failed state nested in other data (a tuple with a string, a
  dict), is ordinary data: the run Completed with it as its result (a generator is turned into
  a list, since it could be read only once).

Pure: no I/O, no engine objects.
"""

from __future__ import annotations

import types
from collections import Counter
from typing import Any

from orion_nb.orchestration.states import State, StateType, is_state_iterable

__all__ = ["state_from_return"]


def state_from_return(value: Any) -> State:
    """The state a run ends in when its body returned ``value`` (futures already states)."""
    if isinstance(value, State):
        if value.run_id is None:
            # built by the user: used as given (a copy, so the object stays theirs)
            return State(
                value.type,
                value.name,
                value.message,
                data=value.data,  # a state given no data has the result None, as in Prefect
                scheduled_at=value.scheduled_at,
            )
        return _judge_group([value], value)
    if is_state_iterable(value):
        return _judge_group(list(value), value)
    if isinstance(value, types.GeneratorType):
        value = list(value)
    return State(StateType.COMPLETED, data=value)


def _judge_group(states: list[State], data: Any) -> State:
    counts = Counter(s.type for s in states)
    total = len(states)
    failed = counts[StateType.FAILED] + counts[StateType.CRASHED]
    not_final = total - sum(counts[t] for t in _FINAL)
    if counts[StateType.COMPLETED] == total:
        return State(StateType.COMPLETED, message="All states completed.", data=data)
    if counts[StateType.CANCELLED]:
        kind, message = (
            StateType.CANCELLED,
            f"{counts[StateType.CANCELLED]}/{total} states cancelled.",
        )
    elif counts[StateType.PAUSED]:
        kind, message = StateType.PAUSED, f"{counts[StateType.PAUSED]}/{total} states paused."
    elif failed:
        kind, message = StateType.FAILED, f"{failed}/{total} states failed."
    else:
        kind, message = StateType.FAILED, f"{not_final}/{total} states are not final."
    return State(kind, message=message, data=data)


_FINAL = (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)
