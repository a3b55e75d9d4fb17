"""`Engine`: the operator's `decide()` with its state carried from tick to tick, as in a cluster."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from foreseer.operator.deciding import ForecastInput, Observation, decide
from foreseer.operator.specs import ScalingPolicySpec
from foreseer.operator.statuses import CapacityStatus, ScalingPolicyStatus


@dataclass
class Engine:
    """One policy's decision engine; ``state`` is what the operator would keep in status."""

    spec: ScalingPolicySpec
    state: ScalingPolicyStatus = field(default_factory=ScalingPolicyStatus)

    @property
    def metric(self) -> str:
        return self.spec.metrics[0].name

    def decide(self, now: float, replicas: int, load: float,
               forecast: ForecastInput | None = None, utilization: float = math.nan,
               capacities: Mapping[str, CapacityStatus] | None = None) -> int:
        """Replicas for this tick from the current ``load`` (NaN = missing), a forecast, and
        for a metric with ``utilization`` the current utilisation and learned capacity."""
        metric = self.spec.metrics[0]
        observation = Observation(
            current_replicas=replicas, metrics={metric.name: load},
            utilization={metric.name: utilization} if metric.utilization else {},
            capacities=capacities or {})
        forecasts = {self.metric: forecast} if forecast is not None else {}
        decision = decide(self.spec, observation, forecasts, self.state, now)
        self.state = decision.new_state
        return decision.replicas
