"""Each guard on its own, then the chain and the circuit breaker's state machine."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from engine_builders import T0, policy

from foreseer.operator.guards import (
    CHAIN,
    GuardContext,
    advance_breaker,
    apply_guards,
    backoff,
    bounds,
    circuit_breaker,
    cooldown,
    metrics_outage,
    rate_limit,
    rate_policy,
    stabilization,
)
from foreseer.operator.specs import CircuitBreakerSpec, ScalingRules
from foreseer.operator.statuses import BreakerState, BreakerStatus, to_time


def context(spec_overrides: dict[str, Any] | None = None, **fields: Any) -> GuardContext:
    spec = policy(**(spec_overrides or {}))
    base = GuardContext(spec=spec, now=T0, current=10, floor=10, lowering_horizon=None,
                        missing=(), breaker_holds=False, recommendations=(), events=(),
                        up=spec.behavior.up(), down=spec.behavior.down())
    return replace(base, **fields)


def rules(select: str = "Max", *policies: tuple[str, int, int]) -> ScalingRules:
    return ScalingRules.model_validate({
        "selectPolicy": select,
        "policies": [{"type": t, "value": v, "periodSeconds": p} for t, v, p in policies]})


# ---- circuit breaker guard --------------------------------------------------------

def test_an_open_breaker_holds_the_current_count() -> None:
    assert circuit_breaker(15, context(breaker_holds=True))[0] == 10
    assert circuit_breaker(15, context(breaker_holds=False))[0] == 15


# ---- stabilization ----------------------------------------------------------------

def test_scale_down_is_stabilized_at_the_highest_recommendation_in_the_window() -> None:
    ctx = context(recommendations=((T0 - 200, 14), (T0 - 100, 12), (T0 - 400, 30)))
    # 30 is older than the 300 s window; 14 is the highest left, capped at current 10.
    assert stabilization(4, ctx) == (10, stabilization(4, ctx)[1])
    ctx = context(current=20, recommendations=((T0 - 200, 14), (T0 - 400, 30)))
    assert stabilization(4, ctx)[0] == 14


def test_a_recommendation_exactly_window_old_is_outside_the_window() -> None:
    ctx = context(current=20, recommendations=((T0 - 300, 14),))
    assert stabilization(4, ctx)[0] == 4


def test_scale_up_is_stabilized_at_the_lowest_recommendation_in_its_window() -> None:
    ctx = context({"behavior": {"scaleUp": {"stabilizationWindowSeconds": 60}}},
                  recommendations=((T0 - 30, 12), (T0 - 90, 11)))
    assert stabilization(20, ctx)[0] == 12


def test_stabilization_never_moves_against_the_recommendation() -> None:
    # Mixed history around the current count: neither direction is allowed.
    ctx = context({"behavior": {"scaleUp": {"stabilizationWindowSeconds": 60}}},
                  recommendations=((T0 - 30, 8), (T0 - 20, 14)))
    assert stabilization(20, ctx)[0] == 10
    assert stabilization(5, ctx)[0] == 10


def test_stabilization_leaves_an_unchanged_value_without_a_note() -> None:
    assert stabilization(15, context()) == (15, "")


# ---- cooldown ---------------------------------------------------------------------

def test_cooldown_blocks_a_forecast_drop_below_the_floor_soon_after_a_scale_up() -> None:
    ctx = context(current=12, floor=9, lowering_horizon=300.0, events=((T0 - 100, 4),))
    value, note = cooldown(5, ctx)
    assert value == 9
    assert "forecast horizon" in note


def test_cooldown_allows_the_drop_once_the_scale_up_is_older_than_the_horizon() -> None:
    ctx = context(current=12, floor=9, lowering_horizon=300.0, events=((T0 - 301, 4),))
    assert cooldown(5, ctx)[0] == 5


def test_cooldown_ignores_reactive_scale_downs() -> None:
    ctx = context(current=12, floor=5, lowering_horizon=None, events=((T0 - 10, 4),))
    assert cooldown(5, ctx)[0] == 5


# ---- metrics outage ---------------------------------------------------------------

def test_freeze_scale_down_blocks_scale_down_while_a_metric_is_missing() -> None:
    assert metrics_outage(4, context(missing=("cpu",)))[0] == 10


def test_freeze_scale_down_lets_healthy_metrics_scale_up() -> None:
    assert metrics_outage(14, context(missing=("cpu",)))[0] == 14


def test_hold_moves_nothing_while_a_metric_is_missing() -> None:
    ctx = context({"guards": {"metricsOutage": "Hold"}}, missing=("cpu",))
    assert metrics_outage(14, ctx)[0] == 10
    assert metrics_outage(4, ctx)[0] == 10


def test_the_outage_guard_does_nothing_when_every_metric_is_there() -> None:
    assert metrics_outage(4, context()) == (4, "")


# ---- rate policies ----------------------------------------------------------------

def up_limit(current: int, select: str, *policies: tuple[str, int, int],
             events: tuple[tuple[float, int], ...] = ()) -> int:
    return rate_limit(current, events, rules(select, *policies), T0, up=True)


def down_limit(current: int, select: str, *policies: tuple[str, int, int],
               events: tuple[tuple[float, int], ...] = ()) -> int:
    return rate_limit(current, events, rules(select, *policies), T0, up=False)


PODS_3, PODS_4 = ("Pods", 3, 60), ("Pods", 4, 60)
PERCENT_10, PERCENT_50 = ("Percent", 10, 60), ("Percent", 50, 60)


def test_pods_and_percent_scale_up_limits() -> None:
    assert up_limit(10, "Max", PODS_4) == 14
    assert up_limit(10, "Max", PERCENT_50) == 15
    assert up_limit(10, "Max", PODS_4, PERCENT_50) == 15
    assert up_limit(10, "Min", PODS_4, PERCENT_50) == 14
    assert up_limit(10, "Disabled", PODS_4) == 10


def test_percent_scale_up_rounds_up_as_go_does() -> None:
    # 50 * (1 + 10/100) is 55.00000000000001 in IEEE arithmetic; the HPA's ceil makes it 56.
    assert up_limit(50, "Max", PERCENT_10) == 56
    assert up_limit(1, "Max", PERCENT_10) == 2


def test_percent_scale_down_truncates_as_go_does() -> None:
    assert down_limit(72, "Max", PERCENT_10) == 64
    assert down_limit(10, "Max", PODS_3, PERCENT_50) == 5
    assert down_limit(10, "Min", PODS_3, PERCENT_50) == 7
    assert down_limit(10, "Disabled", PODS_3) == 10


def test_the_period_starts_from_the_replicas_before_its_events() -> None:
    # +4 at -30 s and -2 at -10 s: the 60 s period started at 10 - 4 + 2 = 8.
    events = ((T0 - 30, 4), (T0 - 10, -2), (T0 - 60, 50))
    assert up_limit(10, "Max", PODS_4, events=events) == 12
    assert down_limit(10, "Max", PODS_4, events=events) == 4


def test_the_rate_guard_caps_both_directions_and_never_reverses() -> None:
    ctx = context()  # defaults: up max(+100%, +4) per 15 s, down 100% per 15 s
    assert rate_policy(50, ctx)[0] == 20
    assert rate_policy(0, ctx)[0] == 0
    # A limit below the current count (events already used it up) holds, never shrinks.
    spent = context(events=((T0 - 5, 8),))  # started at 2: limit max(4, 6) < 10
    assert rate_policy(50, spent)[0] == 10


def test_a_target_at_zero_replicas_can_always_be_activated() -> None:
    percent_only = {"behavior": {"scaleUp": {"policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 15}]}}, "minReplicas": 0}
    assert rate_policy(5, context(percent_only, current=0))[0] == 1
    disabled = {"behavior": {"scaleUp": {"selectPolicy": "Disabled"}}, "minReplicas": 0}
    assert rate_policy(5, context(disabled, current=0))[0] == 0


# ---- bounds and the chain ---------------------------------------------------------

def test_bounds_clamp_to_min_and_max() -> None:
    ctx = context({"minReplicas": 2, "maxReplicas": 30})
    assert bounds(50, ctx)[0] == 30
    assert bounds(1, ctx)[0] == 2
    assert bounds(7, ctx) == (7, "")


def test_the_chain_records_every_guard_that_changed_the_value_in_order() -> None:
    ctx = context({"maxReplicas": 15})
    guarded = apply_guards(50, ctx)
    assert guarded.value == 15
    assert guarded.limited_by == ("ratePolicy", "bounds")
    assert len(guarded.notes) == 2
    names = [name for name, _ in CHAIN]
    assert (names[0], names[-1]) == ("circuitBreaker", "bounds")


# ---- the breaker's state machine --------------------------------------------------

BREAKER = CircuitBreakerSpec(failure_threshold=3, min_backoff="30s", max_backoff="10m")


def test_the_breaker_opens_after_the_threshold_of_consecutive_failures() -> None:
    state = BreakerStatus()
    holds = []
    for i in range(3):
        state, hold = advance_breaker(state, True, BREAKER, T0 + i, "uid")
        holds.append(hold)
    assert holds == [False, False, True]
    assert state.state is BreakerState.OPEN
    assert state.failures == 3
    assert state.open_until == to_time(T0 + 2 + backoff(BREAKER, 3, "uid"))


def test_a_success_resets_the_failure_count() -> None:
    state, _ = advance_breaker(BreakerStatus(failures=2), False, BREAKER, T0, "uid")
    assert state == BreakerStatus()


def test_an_open_breaker_holds_until_open_until_then_lets_one_probe_through() -> None:
    opened = BreakerStatus(state=BreakerState.OPEN, failures=3, open_until=to_time(T0 + 30))
    assert advance_breaker(opened, False, BREAKER, T0 + 29, "uid") == (opened, True)
    probe, holds = advance_breaker(opened, False, BREAKER, T0 + 30, "uid")
    assert probe.state is BreakerState.HALF_OPEN and not holds
    closed, holds = advance_breaker(probe, False, BREAKER, T0 + 45, "uid")
    assert closed == BreakerStatus() and not holds


def test_a_failed_probe_reopens_with_a_longer_backoff() -> None:
    probe = BreakerStatus(state=BreakerState.HALF_OPEN, failures=3)
    reopened, holds = advance_breaker(probe, True, BREAKER, T0, "uid")
    assert holds and reopened.state is BreakerState.OPEN and reopened.failures == 4
    assert reopened.open_until is not None
    assert reopened.open_until - to_time(T0) > timedelta(seconds=30)


def test_failures_while_open_do_not_grow_the_backoff() -> None:
    opened = BreakerStatus(state=BreakerState.OPEN, failures=3, open_until=to_time(T0 + 30))
    assert advance_breaker(opened, True, BREAKER, T0 + 10, "uid")[0].failures == 3


def test_backoff_doubles_up_to_max_with_deterministic_jitter() -> None:
    delays = [backoff(BREAKER, f, "uid") for f in range(3, 12)]
    assert delays[0] == 30.0  # the first open period is minBackoff
    for failures, delay in enumerate(delays[1:], start=4):
        ceiling = min(600.0, 30.0 * 2 ** (failures - 3))
        assert ceiling / 2 <= delay <= ceiling
    assert delays == [backoff(BREAKER, f, "uid") for f in range(3, 12)]
    assert delays != [backoff(BREAKER, f, "other-uid") for f in range(3, 12)]


@pytest.mark.parametrize(("low", "high"), [("1ms", "1ms"), ("1s", "365d"), ("365d", "365d")])
def test_backoff_is_finite_for_any_durations_the_schema_accepts(low: str, high: str) -> None:
    spec = CircuitBreakerSpec(failure_threshold=1, min_backoff=low, max_backoff=high)
    for failures in (1, 2, 100, 10**6):
        state, _ = advance_breaker(BreakerStatus(failures=failures - 1), True, spec, T0, "s")
        assert state.open_until is not None
