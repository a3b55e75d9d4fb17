"""Sizing by utilisation: a learned capacity when trusted, else targetPerReplica, else the HPA
formula on the utilisation, which is also always a reactive floor; drift is watched live."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from engine_builders import T0, forecast, policy
from hypothesis import given, settings
from hypothesis import strategies as st

from foreseer.operator.capacities import DRIFT_INTERVALS, learn, watch
from foreseer.operator.deciding import MetricOutage, Observation, OutageKind, decide
from foreseer.operator.statuses import CapacityStatus, ScalingPolicyStatus

CPU = {"query": "avg(cpu)", "target": 0.7}


def utilisation_policy(per_replica: float | None = None, **overrides: Any) -> Any:
    metric: dict[str, Any] = {"name": "rps", "query": "sum(rate(http_requests_total[1m]))",
                              "utilization": CPU}
    if per_replica is not None:
        metric["targetPerReplica"] = per_replica
    return policy(metrics=[metric], **overrides)


def synthetic(capacity_at_full: float, n: int = 2000, seed: int = 1,
              glitches: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(load, ready, utilisation) of pods that are 5 % busy idle and full at
    ``capacity_at_full`` per replica, with noise and a share of scrape glitches."""
    rng = np.random.default_rng(seed)
    ready = rng.integers(2, 20, n).astype(float)
    load = ready * rng.uniform(0.1, 0.9, n) * capacity_at_full
    util = 0.05 + 0.95 * load / ready / capacity_at_full + rng.normal(0, 0.02, n)
    bad = rng.random(n) < glitches
    util[bad] = rng.uniform(0, 1.5, bad.sum())
    return load, ready, util


def expected_at(target: float, capacity_at_full: float) -> float:
    return (target - 0.05) / 0.95 * capacity_at_full


@settings(max_examples=25, deadline=None)
@given(capacity=st.floats(1.0, 5000.0), seed=st.integers(0, 10_000))
def test_a_capacity_is_recovered_within_five_percent_from_noisy_data_with_outliers(
        capacity: float, seed: int) -> None:
    learned = learn("rps", *synthetic(capacity, seed=seed), target=0.7, now=T0)
    assert learned.trusted, learned.reason
    assert learned.per_replica is not None
    assert abs(learned.per_replica / expected_at(0.7, capacity) - 1) < 0.05


def test_too_few_rows_give_an_untrusted_capacity_that_says_why() -> None:
    load, ready, util = synthetic(100.0, n=10)
    learned = learn("rps", load, ready, util, target=0.7, now=T0)
    assert not learned.trusted and learned.per_replica is None
    assert "usable rows" in learned.reason


def test_a_capacity_status_is_finite_and_writable_whatever_the_data() -> None:
    nan = np.full(100, math.nan)
    for data in [(nan, nan, nan), (np.ones(100), np.ones(100), np.ones(100)),
                 synthetic(100.0, n=40, glitches=0.9)]:
        learned = learn("rps", *data, target=0.7, now=T0)
        dumped = learned.model_dump(mode="json")
        assert all(not isinstance(v, float) or math.isfinite(v) for v in dumped.values())
        ScalingPolicyStatus(capacities=[learned]).model_dump_json()


def trusted(per_replica: float = 50.0) -> CapacityStatus:
    return learn("rps", *synthetic(per_replica / expected_at(0.7, 1.0), seed=3),
                 target=0.7, now=T0)


def test_a_trusted_capacity_sizes_the_forecast_and_the_load() -> None:
    capacity = trusted(50.0)
    assert capacity.per_replica is not None
    observed = Observation(current_replicas=4, metrics={"rps": 200.0},
                           utilization={"rps": 0.7}, capacities={"rps": capacity})
    decision = decide(utilisation_policy(), observed, {"rps": forecast(1000.0)},
                      ScalingPolicyStatus(), T0)
    assert decision.raw == math.ceil(1000.0 / capacity.per_replica)
    assert "learned capacity" in decision.reason
    assert decision.new_state.capacities == [capacity]
    assert decision.new_state.recommendation is not None
    assert decision.new_state.recommendation.sized_by is not None
    assert "rps (learned capacity" in decision.new_state.recommendation.sized_by


def test_the_fallback_targetPerReplica_serves_while_the_capacity_is_untrusted() -> None:
    untrusted = learn("rps", *synthetic(100.0, n=10), target=0.7, now=T0)
    observed = Observation(current_replicas=4, metrics={"rps": 200.0},
                           utilization={"rps": 0.7}, capacities={"rps": untrusted})
    decision = decide(utilisation_policy(per_replica=25.0), observed,
                      {"rps": forecast(1000.0)}, ScalingPolicyStatus(), T0)
    assert decision.raw == 40
    assert "targetPerReplica 25" in decision.reason


def test_without_a_capacity_or_targetPerReplica_the_hpa_utilisation_formula_decides() -> None:
    observed = Observation(current_replicas=4, metrics={"rps": 200.0},
                           utilization={"rps": 1.1})
    decision = decide(utilisation_policy(), observed, {"rps": forecast(10_000.0)},
                      ScalingPolicyStatus(), T0)
    assert decision.raw == 7  # ceil(4 × 1.1 / 0.7)  # the forecast is never sized by a guess
    assert decision.predictive is None
    assert "utilization 1.1 against target 0.7" in decision.reason


def test_the_utilisation_floor_catches_a_capacity_drop_before_any_refit() -> None:
    capacity = trusted(50.0)  # stale: requests got costlier and pods run hot
    observed = Observation(current_replicas=4, metrics={"rps": 200.0},
                           utilization={"rps": 1.0}, capacities={"rps": capacity})
    decision = decide(utilisation_policy(), observed, {}, ScalingPolicyStatus(), T0)
    assert decision.raw == math.ceil(4 * 1.0 / 0.7)
    assert decision.limited_by[0] == "utilization"


def test_a_missing_utilisation_without_a_capacity_is_an_outage_and_never_scales_down() -> None:
    observed = Observation(current_replicas=8, metrics={"rps": 10.0},
                           utilization={"rps": MetricOutage(OutageKind.ERROR, "timeout")})
    decision = decide(utilisation_policy(), observed, {}, ScalingPolicyStatus(), T0)
    assert decision.replicas == 8
    assert "rps.utilization" in decision.reason


def test_a_percentage_is_not_read_as_a_utilisation() -> None:
    observed = Observation(current_replicas=4, metrics={"rps": 200.0},
                           utilization={"rps": 70.0})
    decision = decide(utilisation_policy(per_replica=50.0), observed, {},
                      ScalingPolicyStatus(), T0)
    assert decision.raw == 4  # sized by targetPerReplica only
    assert "not a fraction" in decision.reason


def test_a_capacity_drop_of_thirty_percent_is_detected_within_the_drift_bound() -> None:
    capacity = trusted(50.0)
    assert capacity.baseline is not None and capacity.slope is not None
    rng = np.random.default_rng(7)
    drifted, intervals = False, 0
    while not drifted and intervals < 10:
        intervals += 1
        ready = 10.0
        load = ready * 40.0
        # The same load per replica now costs 1/0.7 as much CPU.
        util = capacity.baseline + capacity.slope * (load / ready) / 0.7 + rng.normal(0, 0.01)
        capacity, drifted = watch(capacity, load, ready, util)
    assert drifted and intervals == DRIFT_INTERVALS


def test_pairs_on_the_fit_never_count_as_drift() -> None:
    capacity = trusted(50.0)
    assert capacity.baseline is not None and capacity.slope is not None
    rng = np.random.default_rng(8)
    for _ in range(200):
        ready = float(rng.integers(2, 20))
        load = ready * rng.uniform(5, 45)
        util = capacity.baseline + capacity.slope * load / ready + rng.normal(0, 0.02)
        capacity, drifted = watch(capacity, load, ready, util)
        assert not drifted


def test_a_pair_that_cannot_be_judged_keeps_the_streak() -> None:
    capacity = trusted(50.0).model_copy(update={"drift_streak": 2})
    kept, drifted = watch(capacity, math.nan, 4.0, 0.5)
    assert kept.drift_streak == 2 and not drifted
    kept, drifted = watch(capacity, 100.0, 0.0, 0.5)
    assert kept.drift_streak == 2 and not drifted


def test_saturated_rows_do_not_overstate_the_capacity() -> None:
    load, ready, util = synthetic(100.0, seed=3, glitches=0.0)
    # A third of the time the replicas are overloaded: utilisation pins at 1, whatever the load.
    overloaded = np.arange(load.size) % 3 == 0
    load[overloaded] *= 3.0
    util[overloaded] = np.minimum(1.0, util[overloaded] * 3.0)
    learned = learn("rps", load, ready, util, target=0.7, now=T0)
    assert learned.trusted, learned.reason
    assert learned.per_replica is not None
    assert abs(learned.per_replica / expected_at(0.7, 100.0) - 1) < 0.05


def test_an_overloaded_replica_pinned_at_full_utilisation_is_no_drift() -> None:
    capacity = trusted(50.0)
    for _ in range(10):
        # Twice the load a replica can serve: utilisation reads 1.0, far below the line.
        capacity, drifted = watch(capacity, 10.0 * 150.0, 10.0, 1.0)
        assert not drifted
    assert capacity.drift_streak == 0


def test_a_saturated_replica_at_a_load_it_used_to_serve_easily_is_a_drift() -> None:
    capacity = trusted(50.0)
    drifted = False
    for _ in range(DRIFT_INTERVALS):
        # A tenth of the capacity per replica, yet fully busy: the capacity has changed.
        capacity, drifted = watch(capacity, 10.0 * 5.0, 10.0, 1.0)
    assert drifted
