"""Rules specific to task runs: caching, upstream failures and concurrency limits."""

from __future__ import annotations

from datetime import UTC, datetime

from orion_nb.errors import ConfigurationError, UpstreamFailedError
from orion_nb.orchestration.rules import CacheInsert, Decision, Rule, RunConfig, TransitionContext
from orion_nb.orchestration.states import Cached, Failed, StateType

__all__ = ["CacheInsertion", "CacheRetrieval", "ConcurrencyLimits", "UpstreamFailed"]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class CacheRetrieval(Rule):
    """A run whose cache key has a valid, unexpired result does not run again.

    The engine looks the key up (in memory, then in persisted results) before proposing
    RUNNING; this rule decides whether the entry may be used: not expired, and the definition
    does not ask for ``refresh_cache``. The answer is ``Cached`` carrying the stored result.
    """

    FROM_STATES = frozenset([StateType.PENDING, StateType.SCHEDULED])
    TO_STATES = frozenset([StateType.RUNNING])
    KINDS = frozenset({"task"})

    def applies(self, config: RunConfig) -> bool:
        return super().applies(config) and config.has_cache

    def decide(self, ctx: TransitionContext) -> Decision | None:
        if ctx.cached is None or ctx.cache_key is None or ctx.config.refresh_cache:
            return None
        entry = ctx.cached
        if entry.expires_at is not None and entry.expires_at <= ctx.now:
            return None
        until = (
            "never expires"
            if entry.expires_at is None
            else f"valid until {_when(entry.expires_at)}"
        )
        matched = f" ({', '.join(ctx.cache_parts)} matched)" if ctx.cache_parts else ""
        state = Cached(data=entry.result, run_id=ctx.proposed.run_id)
        return self.accept(
            state,
            f"cache hit for key {ctx.cache_key[:12]}{matched} from run "
            f"{entry.source_run_id[-8:]} ({until})",
        )


class CacheInsertion(Rule):
    """A completed run with a cache key stores its result under that key.

    Later runs with the same key are then answered by :class:`CacheRetrieval`. The reason
    says the key and when the entry expires.
    """

    FROM_STATES = frozenset([StateType.RUNNING])
    TO_STATES = frozenset([StateType.COMPLETED])
    KINDS = frozenset({"task"})

    def applies(self, config: RunConfig) -> bool:
        return super().applies(config) and config.has_cache

    def decide(self, ctx: TransitionContext) -> Decision | None:
        if ctx.cache_key is None:
            return None
        exp = ctx.config.cache_expiration
        expires_at = None if exp is None else ctx.now + exp
        until = "no expiry" if expires_at is None else f"expires {_when(expires_at)}"
        return self.accept(
            ctx.proposed,
            f"stored result under key {ctx.cache_key[:12]} ({until})",
            cache_insert=CacheInsert(ctx.cache_key, expires_at),
        )


class UpstreamFailed(Rule):
    """A run whose inputs come from a run that did not complete cannot run.

    It fails at once with the name of the upstream run, unless that input was wrapped in
    ``allow_failure(...)``, in which case the run proceeds and receives the exception.
    """

    FROM_STATES = frozenset([StateType.PENDING, StateType.SCHEDULED])
    TO_STATES = frozenset([StateType.RUNNING])
    KINDS = frozenset({"task"})
    NEEDS_UPSTREAM = True

    def decide(self, ctx: TransitionContext) -> Decision | None:
        for name, state, allowed in ctx.upstream:
            if not allowed and state.type is not StateType.COMPLETED:
                reason = f"upstream run {name!r} is {state.name}"
                exc = UpstreamFailedError(
                    f"Task run {ctx.run_name!r} did not run because {reason}; "
                    "wrap the input in allow_failure(...) to run it anyway."
                )
                return self.accept(Failed(data=exc, run_id=ctx.proposed.run_id), reason)
        return None


class ConcurrencyLimits(Rule):
    """A run tagged with a limited tag waits until a slot of that tag is free.

    Limits are set with ``orion_nb.set_concurrency_limit(tag, n)`` and honoured by all threads
    of the process. The engine tries to take the slots; when one is taken, this rule answers
    WAIT and says which tag is full. A limit of 0 means "never": waiting would never end, so
    the run fails at once and says how to let it run.
    """

    FROM_STATES = frozenset([StateType.PENDING, StateType.SCHEDULED])
    TO_STATES = frozenset([StateType.RUNNING])
    KINDS = frozenset({"task"})

    def applies(self, config: RunConfig) -> bool:
        return super().applies(config) and bool(config.tags)

    def decide(self, ctx: TransitionContext) -> Decision | None:
        if ctx.concurrency_blocked is None:
            return None
        tag, in_use, limit = ctx.concurrency_blocked
        if limit == 0:
            exc = ConfigurationError(
                f"Task run {ctx.run_name!r} cannot run: tag {tag!r} has a concurrency limit of 0; "
                f"raise it with orion_nb.set_concurrency_limit({tag!r}, n)."
            )
            return self.accept(
                Failed(data=exc, run_id=ctx.proposed.run_id),
                f"tag {tag!r} has a concurrency limit of 0, so runs tagged {tag!r} never run; "
                f"raise it with orion_nb.set_concurrency_limit({tag!r}, n) or remove the tag",
            )
        return self.wait(
            f"tag {tag!r} is at its limit ({in_use} of {limit} slots in use); waiting for a slot"
        )
