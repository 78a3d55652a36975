"""Rules that govern both task runs and flow runs."""

from __future__ import annotations

from orion_nb.errors import describe
from orion_nb.orchestration.rules import ALL_TYPES, Decision, Rule, RunConfig, TransitionContext
from orion_nb.orchestration.states import TERMINAL_TYPES, AwaitingRetry, StateType, TimedOut

__all__ = ["EnforceTimeout", "PreventInvalidTransitions", "RetryFailedRuns", "retry_delay"]


class PreventInvalidTransitions(Rule):
    """Terminal states are final, and a run never goes back from RUNNING to PENDING.

    A run that was cancelled while its code kept running must not become Completed when the
    code returns; a completed run must not be re-run by a late retry. Retries never need an
    exception here: the retry rule rewrites a failure *before* it becomes terminal.
    """

    FROM_STATES = frozenset([*TERMINAL_TYPES, StateType.RUNNING])
    TO_STATES = ALL_TYPES

    def pairs(self) -> set[tuple[StateType | None, StateType]]:
        # consulted only where it can refuse, so RUNNING -> COMPLETED costs nothing
        out: set[tuple[StateType | None, StateType]] = {
            (f, t) for f in TERMINAL_TYPES for t in StateType
        }
        out.add((StateType.RUNNING, StateType.PENDING))
        return out

    def decide(self, ctx: TransitionContext) -> Decision | None:
        initial = ctx.initial
        if initial is None:
            return None
        if initial.type in TERMINAL_TYPES:
            return self.reject(
                ctx,
                f"the run is already {initial.name}; a finished run cannot become {ctx.proposed.name}",
            )
        if initial.type is StateType.RUNNING and ctx.proposed.type is StateType.PENDING:
            return self.reject(ctx, "a running run cannot go back to Pending")
        return None


class EnforceTimeout(Rule):
    """A run that exceeded ``timeout_seconds`` fails as ``TimedOut``, not as a plain failure.

    The engine interrupts the user's code at the deadline and proposes a failure; this rule
    names it, so that the history says *why* the run failed and retries can still apply.
    """

    FROM_STATES = frozenset([StateType.RUNNING])
    TO_STATES = frozenset([StateType.FAILED])

    def applies(self, config: RunConfig) -> bool:
        return super().applies(config) and config.timeout_seconds is not None

    def decide(self, ctx: TransitionContext) -> Decision | None:
        if not ctx.timed_out:
            return None
        state = TimedOut(data=ctx.proposed.data, run_id=ctx.proposed.run_id, ts=ctx.proposed.ts)
        return self.accept(state, f"exceeded timeout_seconds={ctx.config.timeout_seconds:g}")


def retry_delay(config: RunConfig, attempt: int, random: float | None) -> float:
    """Seconds to wait before the retry after failed attempt number ``attempt`` (1-based).

    A list of delays is indexed by attempt (its last value repeats); jitter adds up to
    ``retry_jitter_factor`` times the delay, drawn from ``random`` in [0, 1).
    """
    delays = config.retry_delay_seconds
    if isinstance(delays, (list, tuple)):
        delay = float(delays[min(attempt - 1, len(delays) - 1)]) if delays else 0.0
    else:
        delay = float(delays)  # type: ignore[arg-type]
    if config.retry_jitter_factor and random is not None:
        delay += delay * config.retry_jitter_factor * random
    return delay


class RetryFailedRuns(Rule):
    """A failed attempt with retries left is rescheduled instead of failing the run.

    Answers ``AwaitingRetry`` scheduled ``retry_delay_seconds`` later (a number, a list per
    attempt, with optional jitter) unless the user's ``retry_condition_fn`` said the failure
    is not worth retrying. The reason names the attempt and the wait, so the history reads
    "attempt 1 of 3 failed …; attempt 2 in 0.5 s".
    """

    FROM_STATES = frozenset([StateType.RUNNING])
    TO_STATES = frozenset([StateType.FAILED])

    def applies(self, config: RunConfig) -> bool:
        return super().applies(config) and config.retries > 0

    def decide(self, ctx: TransitionContext) -> Decision | None:
        attempts = ctx.config.retries + 1
        if ctx.run_count >= attempts:
            return None
        what = (
            (describe(ctx.exception) if ctx.exception else None)
            or ctx.proposed.message
            or ctx.proposed.name
        )
        if not ctx.retry_allowed:
            return None
        delay = retry_delay(ctx.config, ctx.run_count, ctx.random() if ctx.random else None)
        state = AwaitingRetry(
            scheduled_at=ctx.now + delay,
            data=ctx.proposed.data,
            run_id=ctx.proposed.run_id,
            ts=ctx.proposed.ts,
        )
        return self.accept(
            state,
            f"attempt {ctx.run_count} of {attempts} failed ({what}); "
            f"attempt {ctx.run_count + 1} in {delay:.3g} s",
            wait_seconds=delay,
        )
