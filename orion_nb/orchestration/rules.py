"""The vocabulary of orchestration: a proposed transition, a rule, and a decision.

A rule is a small class that declares the transitions it cares about (``FROM_STATES`` /
``TO_STATES``) and, in :meth:`Rule.decide`, looks at a :class:`TransitionContext` and either
stays silent (returns ``None``) or returns a :class:`Decision` with a human reason. Rules never
raise to refuse a transition and never perform I/O: whatever they need to know (a cached result,
the upstream states, whether a concurrency slot is free) the engine gathers beforehand and puts
in the context.

Decisions come in three kinds:

- ``ACCEPT`` the (possibly rewritten) proposed state, e.g. ``Failed`` rewritten to
  ``AwaitingRetry`` by the retry rule;
- ``REJECT`` the proposal: the run keeps its current state (e.g. a Cancelled run cannot complete);
- ``WAIT``: the run may not proceed yet (no concurrency slot); the engine waits, then proposes again.

What a rule reads from the engine comes in small named records (:class:`CacheEntry`,
:class:`UpstreamInput`, :class:`SlotBlocked`), and what it asks the engine to do afterwards in
typed fields of the decision (:class:`CacheInsert`, ``cancel_children``), so one rule's contract
reads in one place.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, NamedTuple

from orion_nb.orchestration.states import State, StateType

__all__ = [
    "ALL_TYPES",
    "CacheEntry",
    "CacheInsert",
    "Decision",
    "DecisionKind",
    "Rule",
    "RunConfig",
    "SlotBlocked",
    "TransitionContext",
    "UpstreamInput",
]

ALL_TYPES: frozenset[StateType | None] = frozenset([None, *StateType])


class DecisionKind(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    WAIT = "wait"


class CacheEntry(NamedTuple):
    """A stored result the engine found under a run's cache key."""

    result: Any
    expires_at: float | None
    source_run_id: str


class CacheInsert(NamedTuple):
    """Store the completed run's result under ``key`` until ``expires_at`` (None: forever)."""

    key: str
    expires_at: float | None


class UpstreamInput(NamedTuple):
    """One input of a task run that came from another run.

    ``state`` is the upstream's final state; an upstream known only from a plain result it
    returned (not a future or a state) completed, or the result would not exist.
    """

    name: str
    state: State
    allowed: bool


class SlotBlocked(NamedTuple):
    """The concurrency slot a run could not take: which tag, how many are in use, the limit."""

    tag: str
    in_use: int
    limit: int


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
    cache_insert
        Store the result under this key once the run completed (CacheInsertion).
    cancel_children
        Runs the engine must cancel (PropagateCancellation).
    wait_seconds
        For a rescheduled run: seconds until its next attempt.
    """

    __slots__ = (
        "cache_insert",
        "cancel_children",
        "kind",
        "reason",
        "rule",
        "state",
        "wait_seconds",
    )

    def __init__(
        self,
        kind: DecisionKind,
        state: State | None,
        rule: str,
        reason: str,
        *,
        cache_insert: CacheInsert | None = None,
        cancel_children: tuple[str, ...] = (),
        wait_seconds: float | None = None,
    ) -> None:
        self.kind = kind
        self.state = state
        self.rule = rule
        self.reason = reason
        self.cache_insert = cache_insert
        self.cancel_children = cancel_children
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
        "cache_parts",
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
        cache_parts: tuple[str, ...] = (),
        cached: CacheEntry | None = None,
        upstream: list[UpstreamInput] | None = None,
        concurrency_blocked: SlotBlocked | None = None,
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
        self.cache_parts = cache_parts
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
    #: consulted only for runs that have upstream inputs (a separate compiled policy)
    NEEDS_UPSTREAM: ClassVar[bool] = False

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
