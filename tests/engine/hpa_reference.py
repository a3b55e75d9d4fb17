"""A reference HPA v2 controller for one target, transliterated from the Go source.

k8s.io/kubernetes pkg/controller/podautoscaler: reconcileAutoscaler's bounds
branches, GetExternalPerPodMetricReplicas (AverageValue targets, in milli-units),
normalizeDesiredReplicasWithBehaviors, stabilizeRecommendationWithBehaviors,
convertDesiredReplicasWithBehaviorRate, calculateScaleUpLimitWithScalingRules,
calculateScaleDownLimitWithBehaviors and getReplicasChangePerPeriod.

It is written from the Go code, not from foreseer's engine, so that comparing the two
tests the engine against the algorithm. Two deliberate differences of foreseer are
reproduced and marked: a target at zero replicas is brought to minReplicas (the HPA
disables itself), and it can be activated from zero by a Percent policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from foreseer.operator.specs import PolicyType, ScalingPolicySpec, ScalingRules, SelectPolicy


def milli(value: float) -> int:
    """A resource.Quantity's MilliValue()."""
    return round(value * 1000)


@dataclass
class ReferenceHpa:
    spec: ScalingPolicySpec
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)

    def metric_replicas(self, load: float, target: float, current: int) -> int:
        usage_ratio = load / (target * current) if current else math.inf
        if abs(1.0 - usage_ratio) > self.spec.behavior.tolerance:
            return math.ceil(milli(load) / milli(target))
        return current

    def reconcile(self, now: float, current: int, loads: dict[str, float]) -> int:
        low, high = self.spec.min_replicas, self.spec.max_replicas
        if current > high:
            desired = high
        elif current < low:  # also at zero replicas: foreseer's difference, see above
            desired = low
        else:
            raw = max(self.metric_replicas(loads[m.name], m.target_per_replica, current)
                      for m in self.spec.metrics)
            stabilized = self.stabilize(now, current, raw)
            desired = self.rate(now, current, stabilized)
        if desired > current:
            self.up_events.append((now, desired - current))
        elif desired < current:
            self.down_events.append((now, current - desired))
        return desired

    def stabilize(self, now: float, current: int, desired: int) -> int:
        up_cutoff = now - (self.spec.behavior.up().stabilization_window_seconds or 0)
        down_cutoff = now - (self.spec.behavior.down().stabilization_window_seconds or 0)
        up_recommendation = down_recommendation = desired
        for timestamp, recommendation in self.recommendations:
            if timestamp > up_cutoff:
                up_recommendation = min(recommendation, up_recommendation)
            if timestamp > down_cutoff:
                down_recommendation = max(recommendation, down_recommendation)
        self.recommendations.append((now, desired))
        recommendation = current
        if recommendation < up_recommendation:
            recommendation = up_recommendation
        if recommendation > down_recommendation:
            recommendation = down_recommendation
        return recommendation

    def change_per_period(self, period: int, events: list[tuple[float, int]],
                          now: float) -> int:
        return sum(change for timestamp, change in events if timestamp > now - period)

    def period_start(self, period: int, current: int, now: float) -> int:
        added = self.change_per_period(period, self.up_events, now)
        deleted = self.change_per_period(period, self.down_events, now)
        return current - added + deleted

    def scale_up_limit(self, current: int, rules: ScalingRules, now: float) -> int:
        if rules.select_policy is SelectPolicy.DISABLED:
            return current
        pick, result = (min, 2**31 - 1) if rules.select_policy is SelectPolicy.MIN \
            else (max, -(2**31))
        for policy in rules.policies or ():
            start = self.period_start(policy.period_seconds, current, now)
            if policy.type is PolicyType.PODS:
                proposed = start + policy.value
            else:
                proposed = math.ceil(float(start) * (1 + float(policy.value) / 100))
            result = pick(result, proposed)
        if current == 0:  # foreseer's activation from zero, see above
            result = max(result, 1)
        return result

    def scale_down_limit(self, current: int, rules: ScalingRules, now: float) -> int:
        if rules.select_policy is SelectPolicy.DISABLED:
            return current
        pick, result = (max, -(2**31)) if rules.select_policy is SelectPolicy.MIN \
            else (min, 2**31 - 1)
        for policy in rules.policies or ():
            start = self.period_start(policy.period_seconds, current, now)
            if policy.type is PolicyType.PODS:
                proposed = start - policy.value
            else:
                proposed = int(float(start) * (1 - float(policy.value) / 100))
            result = pick(result, proposed)
        return result

    def rate(self, now: float, current: int, desired: int) -> int:
        if desired > current:
            limit = max(self.scale_up_limit(current, self.spec.behavior.up(), now), current)
            return min(desired, self.spec.max_replicas, limit)
        if desired < current:
            limit = min(self.scale_down_limit(current, self.spec.behavior.down(), now),
                        current)
            return max(desired, self.spec.min_replicas, limit)
        return desired
