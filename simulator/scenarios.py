"""`Scenario`: the settings of one simulated cluster, and the workload they make of a trace."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from foreseer.simulator.traces import Trace, TraceError

DEFAULT_P99_REPLICAS = 20.0
DEFAULT_TARGET_FRACTION = 0.7
MIN_STARTUP_SECONDS = 120.0
MIN_INTERVAL_SECONDS = 30.0


@dataclass(frozen=True)
class Scenario:
    """How the trace is turned into a cluster; None means "derive it from the trace"."""

    p99_replicas: float | None = DEFAULT_P99_REPLICAS
    """Replicas the trace's 99th percentile needs at full capacity (the p99, not the peak,
    so one spike does not shrink the rest of the trace); None keeps the load unscaled."""
    capacity: float = 1.0
    """Load one ready replica can serve before it is under-provisioned."""
    target_fraction: float = DEFAULT_TARGET_FRACTION
    """targetPerReplica as a fraction of capacity; the same for every policy compared."""
    startup: float | None = None
    """Seconds from adding a replica to it being ready; default max(2m, one trace step)."""
    scrape_lag: float = 30.0
    """Seconds between the load happening and a policy seeing it."""
    interval: float | None = None
    """Seconds between decisions; default max(30s, one trace step)."""
    capacity_drop: float = 0.0
    """From the middle of the trace on, a replica serves this fraction less (a release that
    made requests costlier): 0.3 is a 30 % drop. The load metric does not show it; the
    utilisation and the scoring do."""

    def __post_init__(self) -> None:
        if not 0 <= self.capacity_drop < 1:
            raise ValueError(f"capacity_drop must be in [0, 1), got {self.capacity_drop!r}")
        for name in ("p99_replicas", "startup", "interval"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not (math.isfinite(self.capacity) and self.capacity > 0):
            raise ValueError(f"capacity must be a positive number, got {self.capacity!r}")
        if not 0 < self.target_fraction <= 1:
            raise ValueError(f"target_fraction must be in (0, 1], got {self.target_fraction!r}")
        if not (math.isfinite(self.scrape_lag) and self.scrape_lag >= 0):
            raise ValueError(f"scrape_lag must be zero or more seconds, got {self.scrape_lag!r}")


@dataclass(frozen=True)
class Workload:
    """A scenario resolved against one trace: every number the simulation needs."""

    trace: Trace
    """The load, already scaled."""
    capacity: float
    """Load one ready replica serves."""
    target_per_replica: float
    """The metric target every policy is given."""
    startup: float
    """Seconds until a new replica is ready."""
    scrape_lag: float
    """Seconds of metric lag."""
    interval: float
    """Seconds between decisions."""
    drop_at: float = math.inf
    """When the capacity drops (Unix seconds; never by default)."""
    drop: float = 0.0
    """By how much, as a fraction."""

    def cost(self, times: np.ndarray) -> np.ndarray:
        """Work per unit of load at ``times``: 1, and 1 / (1 - drop) from ``drop_at`` on."""
        return np.where(np.asarray(times) >= self.drop_at, 1.0 / (1.0 - self.drop), 1.0)

    @property
    def grid_step(self) -> float:
        """The evaluation grid: fine enough that every tick and every replica start lands on it."""
        return float(max(1, math.gcd(round(self.interval), round(self.startup))))

    def ticks(self) -> np.ndarray:
        """Decision times, from the first point of the trace to its last."""
        count = int((self.trace.end - self.trace.start) // self.interval) + 1
        return self.trace.start + self.interval * np.arange(count, dtype=np.float64)

    def grid(self) -> np.ndarray:
        """Evaluation times on `grid_step`, covering the same span as `ticks`."""
        span = self.ticks()[-1] + self.interval - self.trace.start
        count = round(span / self.grid_step)
        return self.trace.start + self.grid_step * np.arange(count, dtype=np.float64)


def resolve(trace: Trace, scenario: Scenario) -> Workload:
    """Scale ``trace`` and fill in the defaults that depend on its step."""
    step = trace.step
    load = trace
    if scenario.p99_replicas is not None:
        p99 = float(np.percentile(trace.values, 99))
        if p99 <= 0:
            raise TraceError(f"{trace.name}: the load's 99th percentile is 0; nothing to scale")
        load = trace.scaled(scenario.p99_replicas * scenario.capacity / p99)
    return Workload(
        trace=load,
        capacity=scenario.capacity,
        target_per_replica=scenario.capacity * scenario.target_fraction,
        startup=(
            scenario.startup if scenario.startup is not None else max(MIN_STARTUP_SECONDS, step)
        ),
        scrape_lag=scenario.scrape_lag,
        interval=(
            scenario.interval if scenario.interval is not None else max(MIN_INTERVAL_SECONDS, step)
        ),
        drop_at=(trace.start + trace.end) / 2 if scenario.capacity_drop else math.inf,
        drop=scenario.capacity_drop,
    )
