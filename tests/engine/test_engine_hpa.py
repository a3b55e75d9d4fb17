"""With forecasts disabled, the engine scales exactly as the HPA v2 controller.

Worked examples from https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/
(algorithm details, tolerance, stabilization window, scaling policies, selectPolicy).
Load is the total over the target; targetPerReplica is 100, so a load of 100 per
replica is exactly on target.
"""

from __future__ import annotations

import pytest
from engine_builders import Loop, policy
from engine_strategies import specs
from hpa_reference import ReferenceHpa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foreseer.operator.specs import Mode, ScalingPolicySpec


def test_twice_the_target_value_doubles_the_replicas() -> None:
    # "if the current metric value is 200m, and the desired value is 100m, the number
    #  of replicas will be doubled, since 200.0 / 100.0 == 2.0"
    loop = Loop(policy(), replicas=4)
    assert loop.step(4 * 200).replicas == 8


def test_half_the_target_value_halves_the_replicas_once_the_window_has_passed() -> None:
    # "If the current value is instead 50m, you'll halve the number of replicas" — after
    # the default 300 s scale-down stabilization window.
    loop = Loop(policy(), replicas=8)
    loop.step(8 * 100)
    assert loop.step(8 * 50, after=15).replicas == 8
    assert loop.step(8 * 50, after=284).replicas == 8
    # The on-target sample is now exactly 300 s old: like the HPA, the window excludes it.
    assert loop.step(8 * 50, after=1).replicas == 4


@pytest.mark.parametrize(("load", "expected"), [
    (10 * 109, 10),  # ratio 1.09: within the default tolerance of 0.1, nothing moves
    (10 * 105, 10),
    # ratio 1.1: |1 - 1.1| is 0.10000000000000009 in floating point, above the tolerance,
    # so the HPA (the same IEEE arithmetic in Go) scales; so do we.
    (10 * 110, 11),
    (10 * 111, 12),  # ratio 1.11: ceil(1110 / 100)
    (10 * 91, 10),
])
def test_a_usage_ratio_within_the_tolerance_skips_scaling(load: float, expected: int) -> None:
    loop = Loop(policy(), replicas=10)
    assert loop.step(load).replicas == expected


def test_a_custom_tolerance_widens_the_band() -> None:
    loop = Loop(policy(behavior={"tolerance": 0.25}), replicas=10)
    assert loop.step(10 * 120).replicas == 10
    assert loop.step(10 * 130).replicas == 13


def test_scale_down_uses_the_highest_recommendation_of_the_stabilization_window() -> None:
    # "the algorithm looks into previously computed desired states, and uses the highest
    #  value from the specified interval"
    loop = Loop(policy(behavior={"scaleDown": {"stabilizationWindowSeconds": 60}}), replicas=10)
    assert loop.run([1000, 700, 500, 600], after=15) == [10, 10, 10, 10]
    # The 10 is now exactly 60 s old and has left the window: 7, 5, 6 and 4 remain.
    assert loop.step(400, after=15).replicas == 7
    assert loop.step(400, after=15).replicas == 6


def test_scale_up_stabilization_uses_the_lowest_recommendation_of_its_window() -> None:
    loop = Loop(policy(behavior={"scaleUp": {"stabilizationWindowSeconds": 30}}), replicas=2)
    # At 30 s the window holds the 6 and the 8 (the 2 is exactly 30 s old): min is 6.
    assert loop.run([200, 600, 800, 800], after=15) == [2, 2, 6, 8]


def test_default_scale_up_doubles_or_adds_four_pods_every_15_seconds_whichever_is_more() -> None:
    loop = Loop(policy(), replicas=2)
    assert loop.run([100_000] * 6, after=15) == [6, 12, 24, 48, 96, 100]


def test_default_scale_up_cannot_exceed_the_limit_within_one_period() -> None:
    loop = Loop(policy(), replicas=2)
    assert loop.step(100_000).replicas == 6
    # 5 s later the period still counts the +4, so 2 replicas are the period's start.
    assert loop.step(100_000, after=5).replicas == 6
    assert loop.step(100_000, after=10).replicas == 12


def test_default_scale_down_goes_straight_to_the_recommendation_after_the_window() -> None:
    loop = Loop(policy(), replicas=50)
    loop.step(5000)
    assert loop.step(100, after=301).replicas == 1


DOCS_SCALE_DOWN = {"policies": [
    {"type": "Pods", "value": 4, "periodSeconds": 60},
    {"type": "Percent", "value": 10, "periodSeconds": 60},
]}


def test_max_select_policy_removes_ten_percent_above_forty_pods_and_four_below() -> None:
    # "if the target has 80 replicas and must be scaled down to 10 replicas then during
    #  the first step 8 replicas will be reduced. In the next iteration when the number
    #  of replicas is 72, 10% of the pods is 7.2 but the number is rounded up to 8. [...]
    #  Once the number of replicas falls below 40, the first policy (Pods) is applied
    #  and 4 replicas will be reduced at a time."
    loop = Loop(policy(behavior={"scaleDown": DOCS_SCALE_DOWN}), replicas=80)
    steps = loop.run([1000] * 14, after=60)
    assert steps == [72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10]


def test_rate_policies_hold_until_the_period_has_passed() -> None:
    loop = Loop(policy(behavior={"scaleDown": DOCS_SCALE_DOWN}), replicas=80)
    assert loop.run([1000, 1000, 1000], after=20) == [72, 72, 72]
    assert loop.step(1000, after=20).replicas == 64  # the first event is now 60 s old


def test_min_select_policy_takes_the_smallest_change() -> None:
    rules = {**DOCS_SCALE_DOWN, "selectPolicy": "Min"}
    loop = Loop(policy(behavior={"scaleDown": rules}), replicas=80)
    assert loop.run([1000] * 3, after=60) == [76, 72, 68]


def test_disabled_select_policy_never_scales_in_that_direction() -> None:
    loop = Loop(policy(behavior={"scaleDown": {"selectPolicy": "Disabled"}}), replicas=10)
    assert loop.run([100] * 30, after=60)[-1] == 10
    assert loop.step(5000).replicas == 20  # scale-up still works, at its default rate


def test_a_pods_policy_limits_scale_up_per_period() -> None:
    rules = {"policies": [{"type": "Pods", "value": 5, "periodSeconds": 60}]}
    loop = Loop(policy(behavior={"scaleUp": rules}), replicas=1)
    assert loop.run([5000] * 5, after=30) == [6, 6, 11, 11, 16]


def test_percent_scale_up_rounds_up_so_one_replica_can_grow() -> None:
    rules = {"policies": [{"type": "Percent", "value": 10, "periodSeconds": 15}]}
    loop = Loop(policy(behavior={"scaleUp": rules}), replicas=1)
    assert loop.step(5000).replicas == 2


def test_replicas_above_max_go_straight_to_max() -> None:
    loop = Loop(policy(maxReplicas=5), replicas=9)
    decision = loop.step(2000)
    assert decision.replicas == 5
    assert decision.limited_by == ("bounds",)


def test_replicas_below_min_go_straight_to_min_even_without_metrics() -> None:
    loop = Loop(policy(minReplicas=3), replicas=1)
    assert loop.step({}).replicas == 3


def test_without_forecasts_auto_and_reactive_decide_alike() -> None:
    loads = [300, 900, 2500, 2500, 400, 100, 100, 3000, 200] * 3
    auto = Loop(policy(mode="Auto"), replicas=3).run(loads, after=40)
    reactive = Loop(policy(mode="Reactive"), replicas=3).run(loads, after=40)
    assert auto == reactive


# ---- against a reference HPA transliterated from the Go controller -------------------

@st.composite
def hpa_policies(draw: st.DrawFn) -> ScalingPolicySpec:
    """Random valid policies in Reactive mode, with targets in milli-units as the HPA's."""
    spec = draw(specs())
    metrics = [m.model_copy(update={"target_per_replica": draw(st.integers(1, 10**6)) / 1000})
               for m in spec.metrics]
    return spec.model_copy(update={"mode": Mode.REACTIVE, "metrics": metrics})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hpa_policies(), st.integers(0, 200),
       st.lists(st.tuples(st.integers(1, 400), st.lists(st.integers(0, 10**8), min_size=3,
                                                        max_size=3)), min_size=1, max_size=40))
def test_with_forecasts_disabled_the_engine_scales_as_the_hpa_controller(
        spec: ScalingPolicySpec, replicas: int,
        stream: list[tuple[int, list[int]]]) -> None:
    reference = ReferenceHpa(spec)
    loop = Loop(spec, replicas=replicas)
    for after, millis in stream:
        loads = {m.name: v / 1000 for m, v in zip(spec.metrics, millis, strict=False)}
        decision = loop.step(loads, after=after)
        expected = reference.reconcile(loop.now, replicas, loads)
        assert decision.replicas == expected
        replicas = expected
