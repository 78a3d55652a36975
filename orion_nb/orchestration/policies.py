"""Policies: the ordered rules for task runs and for flow runs.

Order matters: a rule sees the proposal as rewritten by the rules before it. Timeouts are
named before retries are considered; invalid transitions are refused before anything else.

A policy is *compiled* once per flow/task definition: rules that can never matter for it
(no retries, no cache, no tags) are dropped, and the rest are indexed by (from, to) state type,
so the hot path does one dictionary lookup per transition and usually finds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from orion_nb.orchestration.common_rules import (
    EnforceTimeout,
    PreventInvalidTransitions,
    RetryFailedRuns,
)
from orion_nb.orchestration.flow_rules import PropagateCancellation
from orion_nb.orchestration.rules import Decision, DecisionKind, Rule, RunConfig, TransitionContext
from orion_nb.orchestration.states import StateType
from orion_nb.orchestration.task_rules import (
    CacheInsertion,
    CacheRetrieval,
    ConcurrencyLimits,
    UpstreamFailed,
)

__all__ = ["FLOW_POLICY", "TASK_POLICY", "CompiledPolicy", "Policy"]

Pair = tuple[StateType | None, StateType]


class CompiledPolicy:
    """The rules of a policy that apply to one definition, indexed by transition."""

    __slots__ = ("_index",)

    def __init__(self, index: dict[Pair, tuple[Rule, ...]]) -> None:
        self._index = index

    def rules_for(self, from_type: StateType | None, to_type: StateType) -> tuple[Rule, ...]:
        """The rules consulted for one transition, in policy order (empty: none can apply)."""
        return self._index.get((from_type, to_type), ())

    def decide(
        self, ctx: TransitionContext, rules: tuple[Rule, ...] | None = None
    ) -> Decision | None:
        """Run the rules of ``ctx``'s transition in order (``rules``: already looked up).

        Returns ``None`` when no rule intervened (the proposal stands, with no rule recorded),
        otherwise the last decision. An ACCEPT that rewrites the proposal is seen by later
        rules; REJECT and WAIT stop the chain.
        """
        if rules is None:
            rules = self.rules_for(ctx.initial_type, ctx.proposed.type)
        return _run_rules(rules, ctx) if rules else None

    def __repr__(self) -> str:
        pairs = ", ".join(
            f"{'None' if f is None else f.name} -> {t.name}: [{', '.join(r.name for r in rs)}]"
            for (f, t), rs in sorted(self._index.items(), key=str)
        )
        return f"CompiledPolicy({pairs})"


def _run_rules(rules: Sequence[Rule], ctx: TransitionContext) -> Decision | None:
    decision: Decision | None = None
    for rule in rules:
        if decision is not None and ctx.proposed.type not in rule.TO_STATES:
            # an earlier rule changed where the run is going; this rule no longer applies
            continue
        d = rule.decide(ctx)
        if d is None:
            continue
        if d.kind is not DecisionKind.ACCEPT:
            return d
        if (
            decision is not None
            and d.state is not None
            and decision.state is not None
            and d.state is not decision.state
        ):
            # keep the earlier rule's explanation visible when a later rule rewrites again
            d.state.message = f"{decision.state.message}; {d.state.message}"
        decision = d
        if d.state is not None:
            ctx.proposed = d.state
    return decision


class Policy:
    """An ordered list of rules for one kind of run."""

    def __init__(self, kind: str, rules: Sequence[Rule]) -> None:
        self.kind = kind
        self.rules = tuple(rules)

    def compile(self, config: RunConfig, *, has_upstream: bool = False) -> CompiledPolicy:
        index: dict[Pair, list[Rule]] = {}
        for rule in self.rules:
            if rule.NEEDS_UPSTREAM and not has_upstream:
                continue
            if not rule.applies(config):
                continue
            for pair in sorted(rule.pairs(), key=str):
                index.setdefault(pair, []).append(rule)
        return CompiledPolicy({k: tuple(v) for k, v in index.items()})

    def __repr__(self) -> str:
        return f"Policy({self.kind!r}, [{', '.join(r.name for r in self.rules)}])"


TASK_POLICY = Policy(
    "task",
    [
        PreventInvalidTransitions(),
        UpstreamFailed(),
        CacheRetrieval(),
        ConcurrencyLimits(),
        EnforceTimeout(),
        RetryFailedRuns(),
        CacheInsertion(),
    ],
)

FLOW_POLICY = Policy(
    "flow",
    [
        PreventInvalidTransitions(),
        PropagateCancellation(),
        EnforceTimeout(),
        RetryFailedRuns(),
    ],
)
