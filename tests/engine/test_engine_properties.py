"""Hypothesis properties of decide() over random valid policies and hostile metric streams.

Streams mix healthy loads with NaN, infinities, negative and huge values, typed outages,
absent metrics, broken or untrusted forecasts, failing scale writes and irregular
intervals; replicas may start outside [min, max].
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from engine_builders import T0
from engine_strategies import NAMES, specs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foreseer.operator.deciding import (
    Decision,
    ForecastInput,
    MetricOutage,
    Observation,
    OutageKind,
    decide,
)
from foreseer.operator.specs import (
    MetricsOutagePolicy,
    Mode,
    PolicyType,
    ScalingPolicySpec,
    ScalingRules,
    SelectPolicy,
)
from foreseer.operator.statuses import ScalingPolicyStatus

values = st.one_of(
    st.floats(0, 1e5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, 1e300, math.nan, math.inf, -math.inf]),
    st.builds(MetricOutage, st.sampled_from(list(OutageKind)), st.text(max_size=5)),
)
forecasts = st.builds(
    ForecastInput,
    value=st.one_of(st.floats(0, 1e5), st.floats(allow_nan=True, allow_infinity=True)),
    model=st.sampled_from(["seasonal", "ewma"]),
    mase=st.one_of(st.none(), st.floats(0, 3),
                   st.sampled_from([math.nan, math.inf, -math.inf])),
    horizon=st.floats(0, 3600),
    quantile=st.just(0.9),
)


@dataclass(frozen=True)
class Step:
    after: float
    metrics: dict[str, float | MetricOutage]
    forecasts: dict[str, ForecastInput]
    apply_fails: bool


steps = st.builds(
    Step,
    after=st.floats(0.5, 400),
    metrics=st.dictionaries(st.sampled_from(NAMES), values, max_size=3),
    forecasts=st.dictionaries(st.sampled_from(NAMES), forecasts, max_size=3),
    apply_fails=st.sampled_from([False] * 9 + [True]),  # one write in ten fails
)
streams = st.lists(steps, min_size=1, max_size=30)


@dataclass
class Cycle:
    """What one cycle saw and decided."""

    current: int
    now: float
    metrics: dict[str, float | MetricOutage]
    decision: Decision
    applied: bool
    """Whether the decision moved replicas and the write worked."""
    failed: bool
    """Whether the decision moved replicas and the write failed."""


def run(spec: ScalingPolicySpec, replicas: int, stream: list[Step],
        restart_every_cycle: bool = False) -> list[Cycle]:
    """The closed loop: apply each decision unless the step says the write fails."""
    state, now, cycles = ScalingPolicyStatus(), T0, []
    for step in stream:
        now += step.after
        if restart_every_cycle:
            state = ScalingPolicyStatus.model_validate_json(state.model_dump_json(by_alias=True))
        observation = Observation(replicas, step.metrics)
        decision = decide(spec, observation, step.forecasts, state, now, seed="uid")
        moves = decision.replicas != replicas
        if moves and step.apply_fails:  # as the operator: decide again with the error
            error = Observation(replicas, step.metrics, scale_error="conflict")
            decision = decide(spec, error, step.forecasts, state, now, seed="uid")
        failed = moves and step.apply_fails
        cycles.append(Cycle(replicas, now, step.metrics, decision, moves and not failed, failed))
        replicas, state = decision.replicas, decision.new_state
    return cycles


def is_missing(value: float | MetricOutage | None) -> bool:
    return not isinstance(value, float | int) or not (math.isfinite(value) and value >= 0)


ENGINE = settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@ENGINE
@given(specs(), st.integers(0, 200), streams)
def test_the_result_is_always_within_min_and_max(spec: ScalingPolicySpec, replicas: int,
                                                 stream: list[Step]) -> None:
    for cycle in run(spec, replicas, stream):
        d = cycle.decision
        assert spec.min_replicas <= d.final <= spec.max_replicas
        if spec.mode is Mode.OBSERVE or cycle.failed:
            assert d.replicas == cycle.current
        else:
            assert d.replicas == d.final


@ENGINE
@given(specs(), st.integers(0, 200), streams)
def test_no_scale_down_while_any_metric_is_missing(spec: ScalingPolicySpec, replicas: int,
                                                   stream: list[Step]) -> None:
    for cycle in run(spec, replicas, stream):
        inside = spec.min_replicas <= cycle.current <= spec.max_replicas
        if inside and any(is_missing(cycle.metrics.get(m.name)) for m in spec.metrics):
            assert cycle.decision.replicas >= cycle.current
            if spec.guards.metrics_outage is MetricsOutagePolicy.HOLD:
                assert cycle.decision.replicas == cycle.current


def allowed(rules: ScalingRules, current: int, changes: list[tuple[float, int]],
            now: float, up: bool) -> int:
    """The HPA's rate limit, from the loop's own record of the changes that happened."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    proposals = []
    for policy in rules.policies or ():
        net = sum(c for t, c in changes if t > now - policy.period_seconds)
        start = current - net
        if policy.type is PolicyType.PODS:
            proposals.append(start + policy.value if up else start - policy.value)
        elif up:
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
        else:
            proposals.append(int(start * (1 - policy.value / 100)))
    most_change = rules.select_policy is SelectPolicy.MAX
    limit = (max if most_change == up else min)(proposals)
    return max(limit, 1) if up and current == 0 else limit  # activation from zero


@ENGINE
@given(specs(), st.integers(0, 200), streams)
def test_rate_policies_are_never_exceeded(spec: ScalingPolicySpec, replicas: int,
                                          stream: list[Step]) -> None:
    changes: list[tuple[float, int]] = []
    for cycle in run(spec, replicas, stream):
        current, target = cycle.current, cycle.decision.replicas
        if spec.min_replicas <= current <= spec.max_replicas:  # else: straight to the bound
            if target > current:
                assert target <= allowed(spec.behavior.up(), current, changes, cycle.now, True)
            if target < current:
                assert target >= allowed(spec.behavior.down(), current, changes, cycle.now,
                                         False)
        if cycle.applied:
            changes.append((cycle.now, target - current))


def outcome(cycles: list[Cycle]) -> list[tuple[Any, ...]]:
    return [(c.decision.replicas, c.decision.reason, c.decision.limited_by,
             c.decision.new_state) for c in cycles]


@ENGINE
@given(specs(), st.integers(0, 200), streams)
def test_every_status_decide_returns_is_strict_json(spec: ScalingPolicySpec, replicas: int,
                                                   stream: list[Step]) -> None:
    # A real API server refuses NaN and Infinity in a patch, and then every status write of
    # the policy fails: an infinite live MASE on a flat night did exactly that.
    for cycle in run(spec, replicas, stream):
        body = cycle.decision.new_state.model_dump(mode="json", by_alias=True)
        json.dumps(body, allow_nan=False)


@ENGINE
@given(specs(), st.integers(0, 200), streams)
def test_the_same_inputs_give_the_same_decisions(spec: ScalingPolicySpec, replicas: int,
                                                 stream: list[Step]) -> None:
    assert outcome(run(spec, replicas, stream)) == outcome(run(spec, replicas, stream))


@ENGINE
@given(specs(), st.integers(0, 200), streams)
def test_restarting_from_the_status_every_cycle_changes_no_decision(
        spec: ScalingPolicySpec, replicas: int, stream: list[Step]) -> None:
    assert outcome(run(spec, replicas, stream, restart_every_cycle=True)) == \
        outcome(run(spec, replicas, stream))


@ENGINE
@given(specs(), st.integers(0, 200), streams)
def test_without_forecasts_auto_scales_exactly_as_reactive(
        spec: ScalingPolicySpec, replicas: int, stream: list[Step]) -> None:
    blind = [Step(s.after, s.metrics, {}, s.apply_fails) for s in stream]
    auto = spec.model_copy(update={"mode": Mode.AUTO})
    reactive = spec.model_copy(update={"mode": Mode.REACTIVE})
    assert [c.decision.replicas for c in run(auto, replicas, blind)] == \
        [c.decision.replicas for c in run(reactive, replicas, blind)]


@ENGINE
@given(specs(), st.integers(0, 200), streams)
def test_no_scale_down_within_the_scale_down_window_after_a_scale_up(
        spec: ScalingPolicySpec, replicas: int, stream: list[Step]) -> None:
    window = spec.behavior.down().stabilization_window_seconds or 0
    last_up = -math.inf
    for cycle in run(spec, replicas, stream):
        inside = spec.min_replicas <= cycle.current <= spec.max_replicas
        if inside and cycle.now - last_up < window:
            assert cycle.decision.replicas >= cycle.current
        if cycle.applied and cycle.decision.replicas > cycle.current:
            last_up = cycle.now
