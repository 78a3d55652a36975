"""Orchestration rules as a table of transitions: (rule setup, from, proposed) -> decision."""

from __future__ import annotations

from typing import Any

import pytest

from orion_nb.errors import UpstreamFailedError
from orion_nb.orchestration import states as S
from orion_nb.orchestration.policies import FLOW_POLICY, TASK_POLICY
from orion_nb.orchestration.rules import CacheEntry, DecisionKind, RunConfig, TransitionContext
from orion_nb.orchestration.states import State, StateType

NOW = 1_700_000_000.0


def ctx(config: RunConfig, initial: State | None, proposed: State, **kw: Any) -> TransitionContext:
    return TransitionContext(
        config=config,
        initial=initial,
        proposed=proposed,
        run_id="r1",
        run_name="load-0",
        now=NOW,
        **kw,
    )


def decide(
    kind: str,
    config: RunConfig,
    initial: State | None,
    proposed: State,
    *,
    has_upstream: bool = False,
    **kw: Any,
):
    policy = (TASK_POLICY if kind == "task" else FLOW_POLICY).compile(
        config, has_upstream=has_upstream
    )
    return policy.decide(ctx(config, initial, proposed, **kw))


PLAIN = RunConfig("task")
RETRY = RunConfig("task", retries=2, retry_delay_seconds=[1, 5])
TIMEOUT_RETRY = RunConfig("task", retries=1, timeout_seconds=0.5)
CACHED = RunConfig("task", has_cache=True, cache_expiration=3600)
REFRESH = RunConfig("task", has_cache=True, refresh_cache=True)
TAGGED = RunConfig("task", tags=["db"])
FLOW = RunConfig("flow")

boom = ValueError("boom")

# (id, kind, config, initial, proposed, extra context, expected kind or None, expected state name, rule)
CASES = [
    (
        "PENDING -> RUNNING (no rule intervenes)",
        "task",
        PLAIN,
        S.Pending(),
        S.Running(),
        {},
        None,
        None,
        None,
    ),
    (
        "COMPLETED -> RUNNING is refused",
        "task",
        PLAIN,
        S.Completed(data=1),
        S.Running(),
        {},
        "REJECT",
        "Completed",
        "PreventInvalidTransitions",
    ),
    (
        "CANCELLED -> COMPLETED is refused",
        "task",
        PLAIN,
        S.Cancelled(),
        S.Completed(data=1),
        {},
        "REJECT",
        "Cancelled",
        "PreventInvalidTransitions",
    ),
    (
        "FAILED -> RUNNING is refused",
        "task",
        PLAIN,
        S.Failed(),
        S.Running(),
        {},
        "REJECT",
        "Failed",
        "PreventInvalidTransitions",
    ),
    (
        "RUNNING -> PENDING is refused",
        "task",
        PLAIN,
        S.Running(),
        S.Pending(),
        {},
        "REJECT",
        "Running",
        "PreventInvalidTransitions",
    ),
    (
        "flow COMPLETED -> RUNNING is refused",
        "flow",
        FLOW,
        S.Completed(data=1),
        S.Running(),
        {},
        "REJECT",
        "Completed",
        "PreventInvalidTransitions",
    ),
    (
        "RUNNING -> FAILED without retries stays Failed",
        "task",
        PLAIN,
        S.Running(),
        S.Failed(),
        {"run_count": 1},
        None,
        None,
        None,
    ),
    (
        "RUNNING -> FAILED, attempt 1 of 3 -> AwaitingRetry",
        "task",
        RETRY,
        S.Running(),
        S.Failed(data=boom),
        {"run_count": 1, "exception": boom},
        "ACCEPT",
        "AwaitingRetry",
        "RetryFailedRuns",
    ),
    (
        "RUNNING -> FAILED, attempt 3 of 3 -> Failed",
        "task",
        RETRY,
        S.Running(),
        S.Failed(data=boom),
        {"run_count": 3, "exception": boom},
        None,
        None,
        None,
    ),
    (
        "RUNNING -> FAILED, retry_condition_fn says no",
        "task",
        RETRY,
        S.Running(),
        S.Failed(data=boom),
        {"run_count": 1, "retry_allowed": False},
        None,
        None,
        None,
    ),
    (
        "RUNNING -> FAILED after timeout -> TimedOut then AwaitingRetry",
        "task",
        TIMEOUT_RETRY,
        S.Running(),
        S.Failed(),
        {"run_count": 1, "timed_out": True},
        "ACCEPT",
        "AwaitingRetry",
        "RetryFailedRuns",
    ),
    (
        "RUNNING -> FAILED after timeout, no retries left -> TimedOut",
        "task",
        TIMEOUT_RETRY,
        S.Running(),
        S.Failed(),
        {"run_count": 2, "timed_out": True},
        "ACCEPT",
        "TimedOut",
        "EnforceTimeout",
    ),
    (
        "PENDING -> RUNNING with a valid cache entry -> Cached",
        "task",
        CACHED,
        S.Pending(),
        S.Running(),
        {"cache_key": "k" * 32, "cached": CacheEntry(42, NOW + 10, "abcdef0123")},
        "ACCEPT",
        "Cached",
        "CacheRetrieval",
    ),
    (
        "PENDING -> RUNNING with an expired cache entry runs",
        "task",
        CACHED,
        S.Pending(),
        S.Running(),
        {"cache_key": "k" * 32, "cached": CacheEntry(42, NOW - 1, "abcdef0123")},
        None,
        None,
        None,
    ),
    (
        "PENDING -> RUNNING with refresh_cache runs",
        "task",
        REFRESH,
        S.Pending(),
        S.Running(),
        {"cache_key": "k" * 32, "cached": CacheEntry(42, None, "abcdef0123")},
        None,
        None,
        None,
    ),
    (
        "RUNNING -> COMPLETED with a cache key stores it",
        "task",
        CACHED,
        S.Running(),
        S.Completed(data=1),
        {"cache_key": "k" * 32},
        "ACCEPT",
        "Completed",
        "CacheInsertion",
    ),
    (
        "PENDING -> RUNNING with a failed upstream -> Failed",
        "task",
        PLAIN,
        S.Pending(),
        S.Running(),
        {"upstream": [("extract-0", S.Failed(), False)]},
        "ACCEPT",
        "Failed",
        "UpstreamFailed",
    ),
    (
        "PENDING -> RUNNING with an allowed failed upstream runs",
        "task",
        PLAIN,
        S.Pending(),
        S.Running(),
        {"upstream": [("extract-0", S.Failed(), True)]},
        None,
        None,
        None,
    ),
    (
        "PENDING -> RUNNING with a completed upstream runs",
        "task",
        PLAIN,
        S.Pending(),
        S.Running(),
        {"upstream": [("extract-0", S.Completed(data=1), False)]},
        None,
        None,
        None,
    ),
    (
        "PENDING -> RUNNING with a full tag waits",
        "task",
        TAGGED,
        S.Pending(),
        S.Running(),
        {"concurrency_blocked": ("db", 2, 2)},
        "WAIT",
        None,
        "ConcurrencyLimits",
    ),
    (
        "PENDING -> RUNNING with a free tag runs",
        "task",
        TAGGED,
        S.Pending(),
        S.Running(),
        {"concurrency_blocked": None},
        None,
        None,
        None,
    ),
    (
        "flow RUNNING -> CANCELLED with children propagates",
        "flow",
        FLOW,
        S.Running(),
        S.Cancelled(),
        {"children": ["a", "b"]},
        "ACCEPT",
        "Cancelled",
        "PropagateCancellation",
    ),
    (
        "flow RUNNING -> CANCELLED without children",
        "flow",
        FLOW,
        S.Running(),
        S.Cancelled(),
        {},
        None,
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("kind", "config", "initial", "proposed", "extra", "expected", "state_name", "rule"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_transition_table(kind, config, initial, proposed, extra, expected, state_name, rule):
    has_upstream = "upstream" in extra
    decision = decide(kind, config, initial, proposed, has_upstream=has_upstream, **extra)
    if expected is None:
        assert decision is None
        return
    assert decision is not None
    assert decision.kind is DecisionKind[expected]
    assert decision.rule == rule
    assert decision.reason  # every decision explains itself
    if state_name is not None:
        assert decision.state is not None and decision.state.name == state_name
    if expected == "ACCEPT":
        assert decision.state.rule == rule
        assert decision.state.message.startswith(f"{rule}: ") or "; " in decision.state.message


def test_retry_reason_names_attempt_and_delay():
    d = decide("task", RETRY, S.Running(), S.Failed(data=boom), run_count=1, exception=boom)
    assert (
        d.state.message
        == "RetryFailedRuns: attempt 1 of 3 failed (ValueError: boom); attempt 2 in 1 s"
    )
    assert d.state.scheduled_at == NOW + 1
    d2 = decide("task", RETRY, S.Running(), S.Failed(data=boom), run_count=2, exception=boom)
    assert d2.state.scheduled_at == NOW + 5  # the list gives one delay per attempt


def test_retry_jitter_adds_up_to_factor():
    cfg = RunConfig("task", retries=1, retry_delay_seconds=10, retry_jitter_factor=0.5)
    d = decide("task", cfg, S.Running(), S.Failed(), run_count=1, random=lambda: 1.0)
    assert d.wait_seconds == pytest.approx(15.0)
    d = decide("task", cfg, S.Running(), S.Failed(), run_count=1, random=lambda: 0.0)
    assert d.wait_seconds == pytest.approx(10.0)


def test_timeout_then_retry_keeps_both_reasons():
    d = decide("task", TIMEOUT_RETRY, S.Running(), S.Failed(), run_count=1, timed_out=True)
    assert "EnforceTimeout: exceeded timeout_seconds=0.5" in d.state.message
    assert "RetryFailedRuns: attempt 1 of 2" in d.state.message


def test_upstream_failure_carries_an_explaining_exception():
    d = decide(
        "task",
        PLAIN,
        S.Pending(),
        S.Running(),
        has_upstream=True,
        upstream=[("extract-0", S.Crashed(), False)],
    )
    exc = d.state.data
    assert isinstance(exc, UpstreamFailedError)
    assert "'extract-0' is Crashed" in str(exc) and "allow_failure" in str(exc)


def test_cache_insertion_effect_and_expiry():
    d = decide("task", CACHED, S.Running(), S.Completed(data=1), cache_key="abc")
    assert d.cache_insert == ("abc", NOW + 3600)


def test_cancellation_effect_lists_children():
    d = decide("flow", FLOW, S.Running(), S.Cancelled(), children=["a", "b"])
    assert d.cancel_children == ("a", "b")
    assert "cancelling 2 unfinished child runs" in d.reason


def test_policy_drops_rules_that_cannot_apply():
    plain = TASK_POLICY.compile(PLAIN)
    assert plain.rules_for(StateType.PENDING, StateType.RUNNING) == ()
    assert plain.rules_for(StateType.RUNNING, StateType.FAILED) == ()
    # terminal states are always protected
    assert [r.name for r in plain.rules_for(StateType.COMPLETED, StateType.RUNNING)] == [
        "PreventInvalidTransitions"
    ]
    full = TASK_POLICY.compile(
        RunConfig("task", retries=1, timeout_seconds=1, has_cache=True, tags=["x"]),
        has_upstream=True,
    )
    assert [r.name for r in full.rules_for(StateType.PENDING, StateType.RUNNING)] == [
        "UpstreamFailed",
        "CacheRetrieval",
        "ConcurrencyLimits",
    ]
    assert [r.name for r in full.rules_for(StateType.RUNNING, StateType.FAILED)] == [
        "EnforceTimeout",
        "RetryFailedRuns",
    ]
    assert [r.name for r in full.rules_for(StateType.RUNNING, StateType.PENDING)] == [
        "PreventInvalidTransitions"
    ]


def test_every_rule_documents_why():
    for policy in (TASK_POLICY, FLOW_POLICY):
        for rule in policy.rules:
            assert rule.__doc__ and len(rule.__doc__.split()) > 10, rule.name


def test_state_result_and_predicates():
    assert S.Completed(data=3).result() == 3
    with pytest.raises(ValueError, match="boom"):
        S.Failed(data=boom).result()
    assert S.Failed(data=boom).result(raise_on_failure=False) is boom
    assert (
        S.Cached().is_completed() and S.TimedOut().is_failed() and S.AwaitingRetry().is_scheduled()
    )
    assert all(
        S.State(t).is_final()
        for t in (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)
    )
    assert not any(S.State(t).is_final() for t in (StateType.RUNNING, StateType.PENDING))
    assert S.Running().timestamp.tzinfo is not None
