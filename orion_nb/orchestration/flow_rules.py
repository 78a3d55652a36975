"""Rules specific to flow runs."""

from __future__ import annotations

from orion_nb.orchestration.rules import Decision, Rule, TransitionContext
from orion_nb.orchestration.states import StateType

__all__ = ["PropagateCancellation"]


class PropagateCancellation(Rule):
    """When a flow is cancelled, its running and pending child runs are cancelled too.

    Nothing should keep running, or start, on behalf of a flow the user stopped. The rule
    accepts the cancellation and hands the engine the children to cancel; each of them then
    records ``Cancelled`` with this rule's name.
    """

    FROM_STATES = frozenset(
        [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]
    )
    TO_STATES = frozenset([StateType.CANCELLED])
    KINDS = frozenset({"flow"})

    def decide(self, ctx: TransitionContext) -> Decision | None:
        if not ctx.children:
            return None
        n = len(ctx.children)
        return self.accept(
            ctx.proposed,
            f"flow cancelled; cancelling {n} unfinished child run{'s' if n != 1 else ''}",
            cancel_children=tuple(ctx.children),
        )
