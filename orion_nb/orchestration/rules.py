"""The vocabulary of orchestration: a proposed transition, a rule, and a decision.

A rule is a small class that declares the transitions it cares about (``FROM_STATES`` /
``TO_STATES``) and, in :meth:`Rule.decide`, looks at a :class:`TransitionContext` and either
stays silent (returns ``None``) or returns a :class:`Decision` with a human reason. Rules never
raise to refuse a transition and never perform I/O: whatever they need to know (a cached result,
the upstream states, whether a concurrency slot is free) the engine gathers beforehand and puts
in the context.

Decisions come in four kinds:

- ``ACCEPT`` the (possibly rewritten) proposed state, e.g. ``Failed`` rewritten to
  ``AwaitingRetry`` by the retry rule;
- ``REJECT`` the proposal: the run keeps its current state (e.g. a Cancelled run cannot complete);
- ``WAIT``: the run may not proceed yet (no concurrency slot); the engine waits, then proposes again;
- ``ABORT``: the transition makes no sense and the run must stop (an engine bug, reported as such).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from orion_nb.orchestration.states import State, StateType

__all__ = ["ALL_TYPES", "Decision", "DecisionKind", "Rule", "RunConfig", "TransitionContext"]

ALL_TYPES: frozenset[StateType | None] = frozenset([None, *StateType])


class DecisionKind(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    WAIT = "wait"
    ABORT = "abort"


class Decision:
    """What a rule decided about a proposed transition.

    Attributes
    ----------
    kind
        :class:`DecisionKind`.
    state
        The state the run moves to (for ACCEPT), or keeps (for REJECT).
    rule
        The deciding rule's name.
    reason
        A full sentence for people: shown in the widget and stored with the state.
    effects
        Follow-up work for the engine, by name: ``{"cancel_children": [...]}``,
        ``{"cache_insert": key}``.
    """

    __slots__ = ("effects", "kind", "reason", "rule", "state", "wait_seconds")

    def __init__(
        self,
        kind: DecisionKind,
        state: State | None,
        rule: str,
        reason: str,
        *,
        effects: dict[str, Any] | None = None,
        wait_seconds: float | None = None,
    ) -> None:
        self.kind = kind
        self.state = state
        self.rule = rule
        self.reason = reason
        self.effects = effects or {}
        self.wait_seconds = wait_seconds

    def __repr__(self) -> str:
        return f"Decision({self.kind.name}, {self.state!r}, {self.rule}: {self.reason})"


class RunConfig:
    """The orchestration-relevant options of a flow or task definition.

    Rules read it to decide whether they apply at all (:meth:`Rule.applies`), which is
    evaluated once per definition so that unused rules cost nothing per run.
    """

    __slots__ = (
        "cache_expiration",
        "has_cache",
        "kind",
        "refresh_cache",
        "retries",
        "retry_delay_seconds",
        "retry_jitter_factor",
        "tags",
        "timeout_seconds",
    )

    def __init__(
        self,
        kind: str,
        *,
        retries: int = 0,
        retry_delay_seconds: float | list[float] | Callable[[int], float] = 0,
        retry_jitter_factor: float | None = None,
        timeout_seconds: float | None = None,
        has_cache: bool = False,
        cache_expiration: float | None = None,
        refresh_cache: bool = False,
        tags: Iterable[str] = (),
    ) -> None:
        self.kind = kind
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.retry_jitter_factor = retry_jitter_factor
        self.timeout_seconds = timeout_seconds
        self.has_cache = has_cache
        self.cache_expiration = cache_expiration
        self.refresh_cache = refresh_cache
        self.tags = frozenset(tags)


class TransitionContext:
    """Everything a rule may look at when it decides.

    The engine fills only what the applicable rules need; the rest keeps its default.
    """

    __slots__ = (
        "cache_key",
        "cached",
        "children",
        "concurrency_blocked",
        "config",
        "exception",
        "initial",
        "now",
        "proposed",
        "random",
        "retry_allowed",
        "run_count",
        "run_id",
        "run_name",
        "timed_out",
        "upstream",
    )

    def __init__(
        self,
        *,
        config: RunConfig,
        initial: State | None,
        proposed: State,
        run_id: str = "",
        run_name: str = "",
        run_count: int = 0,
        now: float = 0.0,
        random: Callable[[], float] | None = None,
        exception: BaseException | None = None,
        retry_allowed: bool = True,
        timed_out: bool = False,
        cache_key: str | None = None,
        cached: tuple[Any, float | None, str] | None = None,
        upstream: list[tuple[str, State, bool]] | None = None,
        concurrency_blocked: tuple[str, int, int] | None = None,
        children: list[str] | None = None,
    ) -> None:
        self.config = config
        self.initial = initial
        self.proposed = proposed
        self.run_id = run_id
        self.run_name = run_name
        self.run_count = run_count
        self.now = now
        self.random = random
        self.exception = exception
        self.retry_allowed = retry_allowed
        self.timed_out = timed_out
        self.cache_key = cache_key
        self.cached = cached
        self.upstream = upstream or []
        self.concurrency_blocked = concurrency_blocked
        self.children = children or []

    @property
    def initial_type(self) -> StateType | None:
        return None if self.initial is None else self.initial.type


class Rule:
    """Base class of orchestration rules.

    Subclasses set ``FROM_STATES`` and ``TO_STATES`` (sets of :class:`StateType`, with
    ``None`` standing for "no state yet") and implement :meth:`decide`. The class docstring says
    why the rule exists; it is what the docs show.
    """

    FROM_STATES: ClassVar[frozenset[StateType | None]] = ALL_TYPES
    TO_STATES: ClassVar[frozenset[StateType | None]] = ALL_TYPES
    KINDS: ClassVar[frozenset[str]] = frozenset({"task", "flow"})

    @property
    def name(self) -> str:
        return type(self).__name__

    def pairs(self) -> set[tuple[StateType | None, StateType]]:
        """The (from, to) transitions the rule is consulted for (by default FROM x TO)."""
        return {(f, t) for f in self.FROM_STATES for t in self.TO_STATES if t is not None}

    def applies(self, config: RunConfig) -> bool:
        """Whether the rule can ever matter for runs of this definition (checked once)."""
        return config.kind in self.KINDS

    def decide(self, ctx: TransitionContext) -> Decision | None:  # pragma: no cover - abstract
        raise NotImplementedError

    # helpers for subclasses: build decisions with this rule's name
    def accept(self, state: State, reason: str, **kw: Any) -> Decision:
        state.rule = self.name
        state.message = f"{self.name}: {reason}"
        return Decision(DecisionKind.ACCEPT, state, self.name, reason, **kw)

    def reject(self, ctx: TransitionContext, reason: str) -> Decision:
        return Decision(DecisionKind.REJECT, ctx.initial, self.name, reason)

    def wait(self, reason: str, seconds: float | None = None) -> Decision:
        return Decision(DecisionKind.WAIT, None, self.name, reason, wait_seconds=seconds)

    def abort(self, reason: str) -> Decision:
        return Decision(DecisionKind.ABORT, None, self.name, reason)
