"""Applying orchestration decisions to a run: the one place where states change.

Both engines (task and flow) call :func:`propose`, which asks the run's compiled policy, records
the resulting state (store + live view) and returns the decision. Kept tiny because it runs
three times per task run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from orion_nb._events import error_text
from orion_nb.engine import recorder
from orion_nb.engine.runs import Run
from orion_nb.orchestration.policies import CompiledPolicy
from orion_nb.orchestration.rules import Decision, DecisionKind, RunConfig, TransitionContext
from orion_nb.orchestration.states import State, StateType

__all__ = ["propose", "record"]

_FAILED_TYPES = frozenset({StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})


def record(run: Run, state: State) -> None:
    """Make ``state`` the run's state and tell the store and the live view."""
    state.run_id = run.id
    run.state = state
    t = state.type
    # the event gets the fields, not the State: a queued event must not keep a result alive;
    # a failure carries its formatted traceback for views (off the success path)
    ev = (
        "state",
        run.id,
        run.kind,
        t._value_,
        state.name,
        state.ts,
        state.message,
        state.rule,
        run.run_count,
        error_text(state.data) if t in _FAILED_TYPES and state.has_data() else None,
    )
    recorder.emit(ev)
    view = run.view
    if view is not None:
        view.on_event(ev)


def propose(
    run: Run,
    policy: CompiledPolicy,
    config: RunConfig,
    proposed: State,
    _record: Callable[[Run, State], None] = record,
    **context: Any,
) -> Decision | None:
    """Propose ``proposed`` for ``run``; record and return what was decided.

    Returns ``None`` when no rule intervened (the proposal was recorded as is). For a REJECT
    or WAIT nothing is recorded by this function; the caller acts on the decision. ``_record``
    replaces :func:`record` for a caller that records the decided state itself, later (a
    remote attempt is RUNNING from when its worker starts it, not from when it is queued).
    """
    rules = policy.rules_for(None if run.state is None else run.state.type, proposed.type)
    if not rules:
        _record(run, proposed)
        return None
    ctx = TransitionContext(
        config=config,
        initial=run.state,
        proposed=proposed,
        run_id=run.id,
        run_name=run.name,
        run_count=run.run_count,
        now=time.time(),
        **context,
    )
    decision = policy.decide(ctx, rules)
    if decision is None:
        _record(run, proposed)
        return None
    if decision.kind is DecisionKind.ACCEPT:
        assert decision.state is not None
        _record(run, decision.state)
    return decision
