"""Builders shared by the engine tests: specs from camelCase dicts, and a closed loop."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from foreseer.operator.deciding import Decision, ForecastInput, MetricOutage, Observation, decide
from foreseer.operator.specs import ScalingPolicySpec
from foreseer.operator.statuses import ScalingPolicyStatus

T0 = 1_800_000_000.0
"""A fixed start time (Unix seconds) so every test is reproducible."""


def policy(**overrides: Any) -> ScalingPolicySpec:
    """A one-metric policy (rps, 100 per replica, 1..100 replicas) with camelCase overrides."""
    body: dict[str, Any] = {
        "scaleTargetRef": {"name": "web"},
        "minReplicas": 1,
        "maxReplicas": 100,
        "metrics": [{"name": "rps", "query": "sum(rate(http_requests_total[1m]))",
                     "targetPerReplica": 100}],
    }
    body.update(overrides)
    return ScalingPolicySpec.model_validate(body)


def forecast(value: float, mase: float | None = 0.5, horizon: float = 120.0,
             model: str = "seasonal") -> ForecastInput:
    return ForecastInput(value=value, model=model, mase=mase, horizon=horizon, quantile=0.9)


@dataclass
class Loop:
    """Runs decide() in a closed loop: each decision is applied before the next cycle."""

    spec: ScalingPolicySpec
    replicas: int
    now: float = T0
    state: ScalingPolicyStatus = ScalingPolicyStatus()  # noqa: RUF009 - frozen model
    last: Decision | None = None

    def step(self, metrics: Mapping[str, float | MetricOutage] | float,
             forecasts: Mapping[str, ForecastInput] | None = None, *, after: float = 15.0,
             apply_fails: bool = False) -> Decision:
        """Advance ``after`` seconds (none before the first cycle), decide once and apply
        the decision. If ``apply_fails`` and it moves replicas, the write fails and, as
        the operator does, the cycle is decided again with the error."""
        if self.last is not None:
            self.now += after
        if not isinstance(metrics, Mapping):
            metrics = {"rps": metrics}
        observation = Observation(self.replicas, metrics)
        decision = decide(self.spec, observation, forecasts or {}, self.state, self.now,
                          seed="uid-1")
        if apply_fails and decision.replicas != self.replicas:
            failed = replace(observation, scale_error="the API server said no")
            decision = decide(self.spec, failed, forecasts or {}, self.state, self.now,
                              seed="uid-1")
        self.state, self.last, self.replicas = decision.new_state, decision, decision.replicas
        return decision

    def run(self, loads: Iterable[float], after: float = 15.0) -> list[int]:
        """Replica counts after each of ``loads``."""
        return [self.step(load, after=after).replicas for load in loads]
