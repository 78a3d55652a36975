"""What each rule hands back, exactly: the states it builds, its reasons, its boundaries.

The transition table (``test_rules.py``) says which rule decides; these tests pin what the
decision carries, because that is what the history shows and what the engine acts on.
"""

from __future__ import annotations

from typing import Any

import pytest

from orion_nb.errors import ConfigurationError, UpstreamFailedError
from orion_nb.orchestration import states as S
from orion_nb.orchestration.common_rules import (
    EnforceTimeout,
    PreventInvalidTransitions,
    RetryFailedRuns,
    retry_delay,
)
from orion_nb.orchestration.final_state import state_from_return
from orion_nb.orchestration.flow_rules import PropagateCancellation
from orion_nb.orchestration.policies import TASK_POLICY, Policy
from orion_nb.orchestration.rules import (
    CacheEntry,
    Decision,
    DecisionKind,
    Rule,
    RunConfig,
    SlotBlocked,
    TransitionContext,
    UpstreamInput,
)
from orion_nb.orchestration.states import StateType
from orion_nb.orchestration.task_rules import (
    CacheInsertion,
    CacheRetrieval,
    ConcurrencyLimits,
    UpstreamFailed,
)

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def ctx(config: RunConfig, initial: Any, proposed: S.State, **kw: Any) -> TransitionContext:
    proposed.run_id = "run-0123456789abcdef"
    return TransitionContext(
        config=config,
        initial=initial,
        proposed=proposed,
        run_id="run-0123456789abcdef",
        run_name="load-0",
        now=NOW,
        **kw,
    )


CACHED = RunConfig("task", has_cache=True, cache_expiration=3600)


# -- caching ---------------------------------------------------------------------------------


def test_a_cache_hit_carries_the_result_and_says_what_matched_and_until_when():
    entry = CacheEntry({"rows": 3}, NOW + 60, "source-run-89abcdef")
    d = CacheRetrieval().decide(
        ctx(
            CACHED,
            S.Pending(),
            S.Running(),
            cache_key="k" * 32,
            cache_parts=("inputs", "task source"),
            cached=entry,
        )
    )
    assert d is not None and d.kind is DecisionKind.ACCEPT
    assert d.state.name == "Cached" and d.state.result() == {"rows": 3}
    assert d.state.run_id == "run-0123456789abcdef"
    assert d.reason == (
        "cache hit for key kkkkkkkkkkkk (inputs, task source matched) from run 89abcdef "
        "(valid until 2023-11-14 22:14:20 UTC)"
    )


def test_a_cache_entry_that_never_expires_says_so_and_one_expiring_now_is_a_miss():
    forever = CacheEntry(1, None, "source-run-89abcdef")
    d = CacheRetrieval().decide(
        ctx(CACHED, S.Pending(), S.Running(), cache_key="k" * 32, cached=forever)
    )
    assert d is not None and d.reason.endswith("from run 89abcdef (never expires)")
    expiring = CacheEntry(1, NOW, "source-run-89abcdef")
    assert (
        CacheRetrieval().decide(
            ctx(CACHED, S.Pending(), S.Running(), cache_key="k" * 32, cached=expiring)
        )
        is None
    )


def test_cache_insertion_names_the_key_and_the_expiry():
    d = CacheInsertion().decide(
        ctx(CACHED, S.Running(), S.Completed(data=1), cache_key="abcdefabcdef0000")
    )
    assert d is not None and d.cache_insert == ("abcdefabcdef0000", NOW + 3600)
    assert d.reason == "stored result under key abcdefabcdef (expires 2023-11-14 23:13:20 UTC)"
    forever = CacheInsertion().decide(
        ctx(RunConfig("task", has_cache=True), S.Running(), S.Completed(), cache_key="abc")
    )
    assert forever is not None and forever.cache_insert == ("abc", None)
    assert forever.reason == "stored result under key abc (no expiry)"


def test_cache_rules_are_compiled_away_for_tasks_without_a_cache():
    plain = TASK_POLICY.compile(RunConfig("task"))
    assert plain.rules_for(StateType.RUNNING, StateType.COMPLETED) == ()
    assert plain.rules_for(StateType.PENDING, StateType.RUNNING) == ()
    cached = TASK_POLICY.compile(CACHED)
    assert [r.name for r in cached.rules_for(StateType.RUNNING, StateType.COMPLETED)] == [
        "CacheInsertion"
    ]


# -- upstreams and slots -----------------------------------------------------------------------


def test_an_upstream_failure_fails_the_run_with_an_error_naming_the_upstream():
    d = UpstreamFailed().decide(
        ctx(
            RunConfig("task"),
            S.Pending(),
            S.Running(),
            upstream=[
                UpstreamInput("ok-0", S.Completed(), False),
                UpstreamInput("extract-3", S.Failed(), False),
            ],
        )
    )
    assert d is not None and d.state.is_failed() and d.state.run_id == "run-0123456789abcdef"
    exc = d.state.result(raise_on_failure=False)
    assert isinstance(exc, UpstreamFailedError)
    assert str(exc) == (
        "Task run 'load-0' did not run because upstream run 'extract-3' is Failed; wrap the "
        "input in allow_failure(...) to run it anyway."
    )
    assert d.reason == "upstream run 'extract-3' is Failed"


def test_an_allowed_upstream_failure_does_not_stop_the_run():
    allowed = [UpstreamInput("extract-3", S.Crashed(), True)]
    assert (
        UpstreamFailed().decide(ctx(RunConfig("task"), S.Pending(), S.Running(), upstream=allowed))
        is None
    )


def test_a_full_slot_waits_and_a_limit_of_zero_fails_at_once():
    tagged = RunConfig("task", tags=["db"])
    wait = ConcurrencyLimits().decide(
        ctx(tagged, S.Pending(), S.Running(), concurrency_blocked=SlotBlocked("db", 2, 2))
    )
    assert wait is not None and wait.kind is DecisionKind.WAIT
    assert wait.reason == "tag 'db' is at its limit (2 of 2 slots in use); waiting for a slot"
    never = ConcurrencyLimits().decide(
        ctx(tagged, S.Pending(), S.Running(), concurrency_blocked=SlotBlocked("db", 0, 0))
    )
    assert never is not None and never.kind is DecisionKind.ACCEPT and never.state.is_failed()
    assert isinstance(never.state.result(raise_on_failure=False), ConfigurationError)
    assert "set_concurrency_limit('db', n)" in never.reason


# -- common rules ------------------------------------------------------------------------------


def test_prevent_invalid_transitions_only_refuses_what_it_must():
    rule = PreventInvalidTransitions()
    plain = RunConfig("task")
    assert rule.decide(ctx(plain, None, S.Pending())) is None
    assert rule.decide(ctx(plain, S.Running(), S.Failed())) is None
    assert rule.decide(ctx(plain, S.Pending(), S.Pending())) is None
    back = rule.decide(ctx(plain, S.Running(), S.Pending()))
    assert back is not None and back.kind is DecisionKind.REJECT
    assert back.reason == "a running run cannot go back to Pending"
    done = rule.decide(ctx(plain, S.Completed(), S.Running()))
    assert done is not None and done.kind is DecisionKind.REJECT and done.state.is_completed()
    assert done.reason == "the run is already Completed; a finished run cannot become Running"


def test_a_timeout_keeps_the_failure_and_its_time():
    proposed = S.Failed(data=TimeoutError("late"), ts=NOW - 1)
    d = EnforceTimeout().decide(
        ctx(RunConfig("task", timeout_seconds=0.5), S.Running(), proposed, timed_out=True)
    )
    assert d is not None and d.state.name == "TimedOut"
    assert (d.state.run_id, d.state.ts) == ("run-0123456789abcdef", NOW - 1)
    assert isinstance(d.state.result(raise_on_failure=False), TimeoutError)
    assert d.reason == "exceeded timeout_seconds=0.5"


@pytest.mark.parametrize(
    ("delays", "attempt", "expected"),
    [
        ([1, 5], 1, 1.0),
        ([1, 5], 2, 5.0),
        ([1, 5], 7, 5.0),  # the last value repeats
        ([], 3, 0.0),
        (2.5, 4, 2.5),
    ],
)
def test_retry_delay_per_attempt(delays, attempt, expected):
    assert retry_delay(RunConfig("task", retry_delay_seconds=delays), attempt, None) == expected


def test_retry_jitter_adds_up_to_the_factor():
    config = RunConfig("task", retry_delay_seconds=10, retry_jitter_factor=0.5)
    assert retry_delay(config, 1, 0.0) == 10.0
    assert retry_delay(config, 1, 0.5) == 12.5
    assert retry_delay(config, 1, None) == 10.0


def test_a_retry_keeps_the_failure_and_names_the_attempt():
    config = RunConfig("task", retries=2, retry_delay_seconds=[3])
    proposed = S.Failed(data=ValueError("x"), ts=NOW - 2, message="ValueError: x")
    c = ctx(config, S.Running(), proposed, run_count=1, exception=None)
    d = RetryFailedRuns().decide(c)
    assert d is not None and d.state.name == "AwaitingRetry"
    assert d.state.scheduled_at == NOW + 3 and d.wait_seconds == 3
    assert (d.state.run_id, d.state.ts) == ("run-0123456789abcdef", NOW - 2)
    assert isinstance(d.state.data, ValueError)
    assert d.reason == "attempt 1 of 3 failed (ValueError: x); attempt 2 in 3 s"
    assert RetryFailedRuns().decide(ctx(config, S.Running(), S.Failed(), run_count=3)) is None
    refused = ctx(config, S.Running(), S.Failed(), run_count=1, retry_allowed=False)
    assert RetryFailedRuns().decide(refused) is None


def test_cancellation_counts_its_children():
    flow = RunConfig("flow")
    one = PropagateCancellation().decide(ctx(flow, S.Running(), S.Cancelled(), children=["a"]))
    assert one is not None and one.reason == "flow cancelled; cancelling 1 unfinished child run"
    assert one.cancel_children == ("a",)
    assert PropagateCancellation().decide(ctx(flow, S.Running(), S.Cancelled())) is None


# -- policies: several rules on one transition ------------------------------------------------


class _Rewrite(Rule):
    """Test rule: rewrites the proposal to ``to``."""

    def __init__(self, label: str, to: StateType) -> None:
        self.label, self.to = label, to

    @property
    def name(self) -> str:
        return self.label

    def decide(self, ctx: TransitionContext) -> Decision | None:
        return self.accept(S.State(self.to), f"{self.label} says so")


class _Silent(Rule):
    """Test rule: never decides, but counts that it was asked."""

    asked = 0

    def decide(self, ctx: TransitionContext) -> Decision | None:
        type(self).asked += 1
        return None


def test_a_later_rule_sees_the_rewrite_and_both_reasons_are_kept():
    policy = Policy(
        "task",
        [_Silent(), _Rewrite("First", StateType.FAILED), _Rewrite("Second", StateType.FAILED)],
    ).compile(RunConfig("task"))
    _Silent.asked = 0
    d = policy.decide(ctx(RunConfig("task"), S.Running(), S.Completed()))
    assert _Silent.asked == 1  # a silent rule does not stop the others
    assert d is not None and d.rule == "Second"
    assert d.state.message == "First: First says so; Second: Second says so"


def test_a_rule_for_the_old_destination_is_skipped_after_a_rewrite():
    class OnlyCompleted(_Rewrite):
        TO_STATES = frozenset([StateType.COMPLETED])

    policy = Policy(
        "task",
        [_Rewrite("ToFailed", StateType.FAILED), OnlyCompleted("Late", StateType.CRASHED)],
    ).compile(RunConfig("task"))
    d = policy.decide(ctx(RunConfig("task"), S.Running(), S.Completed()))
    assert d is not None and d.rule == "ToFailed" and d.state.is_failed()


def test_an_upstream_failure_wins_over_a_cache_hit():
    config = RunConfig("task", has_cache=True)
    policy = TASK_POLICY.compile(config, has_upstream=True)
    d = policy.decide(
        ctx(
            config,
            S.Pending(),
            S.Running(),
            upstream=[UpstreamInput("extract-0", S.Failed(), False)],
            cache_key="k" * 32,
            cached=CacheEntry(1, None, "source-run-89abcdef"),
        )
    )
    assert d is not None and d.rule == "UpstreamFailed" and d.state.is_failed()


def test_policies_describe_their_rules():
    assert repr(TASK_POLICY).startswith("Policy('task', [PreventInvalidTransitions, ")
    compiled = TASK_POLICY.compile(RunConfig("task", retries=1))
    text = repr(compiled)
    assert "RUNNING -> FAILED: [RetryFailedRuns]" in text
    assert "None -> " not in text and "COMPLETED -> RUNNING: [PreventInvalidTransitions]" in text


# -- final state from a return value -----------------------------------------------------------


def test_a_user_state_is_used_as_given_and_keeps_its_schedule():
    mine = S.Scheduled(scheduled_at=NOW + 30, name="Later", message="after the backup")
    final = state_from_return(mine)
    assert (final.type, final.name, final.message, final.scheduled_at) == (
        StateType.SCHEDULED,
        "Later",
        "after the backup",
        NOW + 30,
    )
    assert final is not mine and final.run_id is None
    assert final.has_data() and final.data is None


def _of_run(state: S.State) -> S.State:
    state.run_id = "some-run"
    return state


@pytest.mark.parametrize(
    ("states", "kind", "message"),
    [
        ([S.Completed(), S.Cached()], StateType.COMPLETED, "All states completed."),
        ([S.Completed(), S.Crashed(), S.Failed()], StateType.FAILED, "2/3 states failed."),
        ([S.Failed(), S.Cancelled()], StateType.CANCELLED, "1/2 states cancelled."),
        ([S.Paused(), S.Failed()], StateType.PAUSED, "1/2 states paused."),
        ([S.Completed(), S.Running(), S.Pending()], StateType.FAILED, "2/3 states are not final."),
    ],
)
def test_states_returned_together_are_judged_as_a_group(states, kind, message):
    states = [_of_run(s) for s in states]
    for container in (list, tuple):
        final = state_from_return(container(states))
        assert (final.type, final.message) == (kind, message)
        assert list(final.data) == states


def test_a_generator_becomes_a_list_and_plain_data_completes():
    final = state_from_return(x * 2 for x in range(3))
    assert final.is_completed() and final.result() == [0, 2, 4]
    mixed = ("text", _of_run(S.Failed()))
    assert state_from_return(mixed).result() is mixed
    assert state_from_return([]).result() == []
