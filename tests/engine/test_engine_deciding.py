"""decide(): modes, forecasts and trust, outages, the breaker, Observe, status and restarts."""

from __future__ import annotations

import math

import pytest
from engine_builders import T0, Loop, forecast, policy

from foreseer.operator.deciding import (
    MAX_REPLICAS,
    ForecastInput,
    MetricOutage,
    Observation,
    OutageKind,
    decide,
)
from foreseer.operator.statuses import (
    BreakerState,
    ConditionStatus,
    ConditionType,
    ScalingPolicyStatus,
    get_condition,
)

TWO_METRICS = [
    {"name": "rps", "query": "sum(rate(requests[1m]))", "targetPerReplica": 100},
    {"name": "queue", "query": "sum(queue_depth)", "targetPerReplica": 10},
]


def condition(loop: Loop, kind: ConditionType) -> tuple[str, str]:
    found = get_condition(loop.state.conditions, kind)
    assert found is not None
    return found.status, found.reason


# ---- metrics outages --------------------------------------------------------------

@pytest.mark.parametrize("missing", [
    MetricOutage(OutageKind.ERROR, "HTTP 503"),
    MetricOutage(OutageKind.EMPTY),
    MetricOutage(OutageKind.STALE, "last sample 10m ago"),
    math.nan, math.inf, -5.0,
])
def test_a_missing_metric_never_scales_down(missing: float | MetricOutage) -> None:
    loop = Loop(policy(metrics=TWO_METRICS), replicas=10)
    for _ in range(40):  # long past the stabilization window
        decision = loop.step({"rps": 100, "queue": missing}, after=30)
        assert decision.replicas == 10
    assert "metricsOutage" in decision.limited_by
    assert condition(loop, ConditionType.METRICS_AVAILABLE) == ("False", "MetricsMissing")


def test_a_metric_absent_from_the_observation_is_an_outage_not_zero() -> None:
    loop = Loop(policy(metrics=TWO_METRICS), replicas=10)
    assert [loop.step({"rps": 100}, after=60).replicas for _ in range(10)] == [10] * 10


def test_scale_up_on_a_healthy_metric_works_during_an_outage() -> None:
    loop = Loop(policy(metrics=TWO_METRICS), replicas=10)
    decision = loop.step({"rps": 1500, "queue": MetricOutage(OutageKind.ERROR)})
    assert decision.replicas == 15
    assert "metrics missing: queue: Error" in decision.reason


def test_hold_moves_nothing_while_a_metric_is_missing() -> None:
    spec = policy(metrics=TWO_METRICS, guards={"metricsOutage": "Hold"})
    loop = Loop(spec, replicas=10)
    assert loop.step({"rps": 1500, "queue": math.nan}).replicas == 10
    assert loop.step({"rps": 100, "queue": math.nan}, after=600).replicas == 10


def test_with_every_metric_missing_nothing_moves_and_the_policy_is_not_ready() -> None:
    loop = Loop(policy(), replicas=7)
    decision = loop.step({"rps": MetricOutage(OutageKind.ERROR, "connection refused")})
    assert decision.replicas == 7
    assert decision.raw is None and decision.reactive is None
    assert "no metric available (rps: Error (connection refused))" in decision.reason
    assert condition(loop, ConditionType.READY) == ("False", "NoMetrics")


def test_the_metrics_return_and_scaling_resumes() -> None:
    loop = Loop(policy(), replicas=10)
    loop.step(math.nan)
    assert loop.step(100, after=301).replicas == 1
    assert condition(loop, ConditionType.METRICS_AVAILABLE) == ("True", "AllMetricsAvailable")


def test_a_huge_load_saturates_at_max_replicas() -> None:
    loop = Loop(policy(), replicas=1)
    decision = loop.step(1e308)
    assert decision.reactive == MAX_REPLICAS
    assert decision.replicas == 5  # 1 + 4 pods: the default scale-up rate


# ---- circuit breaker --------------------------------------------------------------

def test_repeated_scale_failures_open_the_breaker_which_then_holds() -> None:
    spec = policy(guards={"circuitBreaker": {"failureThreshold": 2, "minBackoff": "1m",
                                             "maxBackoff": "10m"}})
    loop = Loop(spec, replicas=2)
    first = loop.step(1000, apply_fails=True)  # wants 6, the API refuses
    assert first.replicas == 2
    assert "scaling to 6 failed (the API server said no); replicas stay 2" in first.reason
    assert loop.state.breaker.failures == 1
    second = loop.step(1000, apply_fails=True)  # the second failure in a row opens it
    assert loop.state.breaker.state is BreakerState.OPEN
    assert second.replicas == 2 and second.limited_by == ("circuitBreaker",)
    assert condition(loop, ConditionType.READY) == ("False", "CircuitOpen")
    assert loop.step(1000, after=30).replicas == 2  # still open
    probe = loop.step(1000, after=60)               # past openUntil: one probe
    assert loop.state.breaker.state is BreakerState.HALF_OPEN
    assert probe.replicas == 6
    loop.step(1000)
    assert loop.state.breaker.state is BreakerState.CLOSED
    assert condition(loop, ConditionType.READY) == ("True", "Decided")


def test_a_success_between_failures_resets_the_count() -> None:
    spec = policy(guards={"circuitBreaker": {"failureThreshold": 2}})
    loop = Loop(spec, replicas=2)
    loop.step(1000, apply_fails=True)
    loop.step(1000)  # scales to 6
    loop.step(100_000, apply_fails=True)
    assert loop.state.breaker.state is BreakerState.CLOSED
    assert loop.state.breaker.failures == 1


def test_a_failed_scale_is_not_counted_by_the_rate_policies() -> None:
    loop = Loop(policy(), replicas=2)
    loop.step(10_000, apply_fails=True)  # wanted 6, still 2
    assert loop.state.history.scale_events == []
    decision = loop.step(10_000, after=5)
    # Had the failed +4 counted, the period would start at -2 and allow nothing.
    assert decision.replicas == 6
    assert [e.change for e in loop.state.history.scale_events] == [4]


# ---- forecasts --------------------------------------------------------------------

def test_cold_start_auto_acts_reactively_and_says_so() -> None:
    loop = Loop(policy(), replicas=2)
    decision = loop.step(500)
    assert decision.replicas == 5
    assert "cold start" in decision.reason
    assert condition(loop, ConditionType.FORECAST_TRUSTED) == ("False", "ColdStart")


def test_a_trusted_forecast_raises_capacity_before_the_load_arrives() -> None:
    loop = Loop(policy(), replicas=5)
    decision = loop.step(500, {"rps": forecast(900, mase=0.6)})
    assert (decision.reactive, decision.predictive, decision.replicas) == (5, 9, 9)
    assert decision.reason.startswith("predictive")
    assert loop.state.forecast is not None and loop.state.forecast.trusted
    assert loop.state.forecast.horizon == "2m"
    assert condition(loop, ConditionType.FORECAST_TRUSTED) == ("True", "ForecastTrusted")


def test_a_forecast_within_the_tolerance_of_current_capacity_moves_nothing() -> None:
    # 10 replicas carry 1000; forecasts of 1050 and 960 are within the 0.1 tolerance.
    loop = Loop(policy(), replicas=10)
    for value in (1050.0, 960.0, 1050.0):
        decision = loop.step(1000.0, {"rps": forecast(value)})
        assert decision.predictive == 10
        assert loop.replicas == 10
    assert loop.step(1000.0, {"rps": forecast(1150.0)}).predictive == 12


def test_an_untrusted_forecast_is_ignored() -> None:
    loop = Loop(policy(guards={"forecastTrust": {"maxErrorRatio": 0.8}}), replicas=5)
    decision = loop.step(500, {"rps": forecast(900, mase=0.9)})
    assert decision.replicas == 5
    assert "forecast not trusted (rps MASE 0.9; maxErrorRatio 0.8)" in decision.reason
    assert condition(loop, ConditionType.FORECAST_TRUSTED) == ("False", "ForecastUntrusted")


@pytest.mark.parametrize("broken", [forecast(math.nan), forecast(-1.0), forecast(math.inf),
                                    forecast(900, mase=None), forecast(900, mase=math.nan)])
def test_a_broken_forecast_is_never_trusted(broken: ForecastInput) -> None:
    loop = Loop(policy(), replicas=5)
    assert loop.step(500, {"rps": broken}).replicas == 5


def test_reactive_mode_ignores_even_a_trusted_forecast() -> None:
    loop = Loop(policy(mode="Reactive"), replicas=5)
    decision = loop.step(500, {"rps": forecast(900)})
    assert decision.replicas == 5 and decision.predictive == 9
    assert condition(loop, ConditionType.FORECAST_TRUSTED) == ("False", "ReactiveMode")


def test_a_trusted_forecast_lowers_capacity_only_through_scale_down_stabilization() -> None:
    loop = Loop(policy(), replicas=10)
    loop.step(1000, {"rps": forecast(1000)})
    low = {"rps": forecast(300)}
    assert loop.step(1000, low, after=150).replicas == 10  # stabilization holds
    decision = loop.step(1000, low, after=151)
    assert decision.replicas == 3
    assert decision.reactive == 10  # below the reactive floor: the forecast was trusted


def test_capacity_added_for_a_forecast_peak_is_not_dropped_before_the_horizon() -> None:
    spec = policy(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    loop = Loop(spec, replicas=5)
    assert loop.step(500, {"rps": forecast(900, horizon=600)}).replicas == 9
    low = {"rps": forecast(200, horizon=600)}
    for _ in range(9):  # long after every 15 s policy period, still within the horizon
        decision = loop.step(900, low, after=60)
        assert decision.replicas == 9 and decision.limited_by == ("cooldown",)
    assert loop.step(900, low, after=60).replicas == 2


def test_only_trusted_metrics_pull_below_their_floor() -> None:
    loop = Loop(policy(metrics=TWO_METRICS,
                       behavior={"scaleDown": {"stabilizationWindowSeconds": 0}}), replicas=10)
    decision = loop.step({"rps": 1000, "queue": 80},
                         {"rps": forecast(200), "queue": forecast(5, mase=3.0)})
    assert decision.replicas == 8  # rps trusted to 2, queue untrusted stays at 8


# ---- Observe ----------------------------------------------------------------------

def test_observe_mode_computes_everything_and_changes_nothing() -> None:
    loop = Loop(policy(mode="Observe"), replicas=3)
    decision = loop.step(500, {"rps": forecast(900)})
    assert decision.replicas == 3
    assert decision.final == 7  # what Auto would do: 3 + 4 pods
    assert loop.state.desired_replicas == 7
    assert "Observe mode: would scale to 7, replicas stay 3" in decision.reason
    assert loop.state.history.scale_events == []
    assert [r.replicas for r in loop.state.history.recommendations] == [9]


# ---- status, conditions and restarts ----------------------------------------------

def test_condition_transition_times_move_only_when_the_status_flips() -> None:
    loop = Loop(policy(), replicas=3)
    loop.step(300)
    first = get_condition(loop.state.conditions, ConditionType.METRICS_AVAILABLE)
    loop.step(300, after=30)
    same = get_condition(loop.state.conditions, ConditionType.METRICS_AVAILABLE)
    loop.step(math.nan, after=30)
    flipped = get_condition(loop.state.conditions, ConditionType.METRICS_AVAILABLE)
    assert first is not None and same is not None and flipped is not None
    assert same.last_transition_time == first.last_transition_time
    assert flipped.status is ConditionStatus.FALSE
    assert flipped.last_transition_time > first.last_transition_time


def test_status_records_generation_replicas_and_recommendation() -> None:
    spec = policy()
    decision = decide(spec, Observation(2, {"rps": 1000}, generation=7), {},
                      ScalingPolicyStatus(), T0)
    status = decision.new_state
    assert (status.observed_generation, status.current_replicas, status.desired_replicas) == \
        (7, 2, 6)
    assert status.recommendation is not None
    assert status.recommendation.limited_by == ["ratePolicy"]
    assert all(c.observed_generation == 7 for c in status.conditions)
    limited = get_condition(status.conditions, ConditionType.SCALING_LIMITED)
    assert limited is not None
    assert (limited.status, limited.reason) == ("True", "RatePolicy")
    assert status.last_scale_time is not None


def test_a_restarted_operator_decides_exactly_as_one_that_kept_running() -> None:
    loads = [500, 2000, 2000, 300, math.nan, 300, 3000, 100, 100, 100, 800] * 4
    steady = Loop(policy(), replicas=3)
    restarted = Loop(policy(), replicas=3)
    for i, load in enumerate(loads):
        fc = {"rps": forecast(load * 1.2, mase=0.5 + (i % 3) * 0.3)} if i > 5 else {}
        a = steady.step(load, fc, after=20)
        restarted.state = ScalingPolicyStatus.model_validate_json(
            restarted.state.model_dump_json(by_alias=True))
        b = restarted.step(load, fc, after=20)
        assert (a.replicas, a.reason, a.limited_by) == (b.replicas, b.reason, b.limited_by)
        assert a.new_state == b.new_state


def test_a_negative_replica_count_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="current_replicas must be >= 0"):
        Observation(-1, {})


def test_a_time_that_is_not_a_number_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="now must be finite Unix seconds"):
        decide(policy(), Observation(1, {"rps": 1.0}), {}, ScalingPolicyStatus(), math.nan)
