"""The closed loop: every interval each policy sees the lagged metric history and sets replicas."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from foreseer.predictors.series import FloatArray, Series
from foreseer.simulator.replicas import ReplicaPool
from foreseer.simulator.scenarios import Workload
from foreseer.simulator.scoring import (
    Score,
    oracle_replicas,
    score,
    step_changes,
    under_provisioned,
)

ORACLE = "oracle"


@dataclass(frozen=True)
class Tick:
    """What a policy knows when it decides: only the past, as Prometheus holds it."""

    now: float
    """Unix seconds."""
    history: Series
    """The metric as scraped, one point per decision, the last one ``scrape_lag`` old."""
    replicas: int
    """The target's replica count (ready or starting)."""
    ready: int
    """Replicas serving now."""
    utilization: float = math.nan
    """The mean utilisation of the ready replicas as scraped (NaN with none ready)."""


@dataclass
class Band:
    """A policy's forecast of the load, drawn where it was aimed: ``times`` are the targets."""

    times: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)


class Policy(Protocol):
    """One autoscaler under test; it keeps its own state between ticks."""

    label: str
    """Its name in tables and plots."""
    band: Band | None
    """Its forecasts, when it makes any."""

    def decide(self, tick: Tick) -> int:
        """The replica count to set now."""
        ...


@dataclass(frozen=True)
class Bounds:
    """The replica range every policy and the oracle share."""

    min_replicas: int
    max_replicas: int


@dataclass
class Run:
    """Everything one simulation produced, for scoring, tables and plots."""

    workload: Workload
    grid: FloatArray
    """Evaluation times."""
    load: FloatArray
    """The load on the grid."""
    ready: dict[str, FloatArray]
    """Ready replicas per policy on the grid (including the oracle)."""
    scores: dict[str, Score]
    bands: dict[str, Band]
    drifts: dict[str, list[float]] = field(default_factory=dict)
    """When each policy that learns a capacity saw it drift (Unix seconds)."""

    def underprov_time(self, label: str, start: float, end: float) -> float | None:
        """Fraction of [start, end) in which ``label`` had less ready capacity than the load
        (None when the span holds no grid point)."""
        inside = (self.grid >= start) & (self.grid < end)
        if not inside.any():
            return None
        short = under_provisioned(self.load[inside], self.ready[label][inside],
                                  self.workload.capacity)
        return float(np.mean(short))


def simulate(
    workload: Workload,
    policies: Sequence[Policy],
    bounds: Bounds,
    progress: Callable[[int], None] | None = None,
) -> Run:
    """Replay the workload against every policy, deterministically; ``progress(ticks)`` is
    called as ticks complete."""
    ticks = workload.ticks()
    # What Prometheus has scraped by each tick: the load `scrape_lag` ago.
    observed = workload.trace.load(ticks - workload.scrape_lag)
    # ...and the work it made, in replicas' worth of capacity, for the utilisation.
    work = observed * workload.cost(ticks - workload.scrape_lag) / workload.capacity
    first = int(
        np.clip(math.ceil(observed[0] / workload.target_per_replica - 1e-9),
                bounds.min_replicas, bounds.max_replicas)
    )
    pools = {p.label: ReplicaPool(workload.startup).start(float(ticks[0]), first) for p in policies}
    report_every = max(1, len(ticks) // 200)
    for k, now in enumerate(ticks):
        history = Series(float(ticks[0]), workload.interval, observed[: k + 1])
        for policy in policies:
            pool = pools[policy.label]
            pool.advance(float(now))
            busy = min(1.0, work[k] / pool.ready) if pool.ready else math.nan
            tick = Tick(float(now), history, pool.replicas, pool.ready, busy)
            pool.scale(float(now), policy.decide(tick))
        if progress is not None and ((k + 1) % report_every == 0 or k + 1 == len(ticks)):
            progress(report_every if (k + 1) % report_every == 0 else (k + 1) % report_every)
    run = evaluate(workload, pools, bounds, {p.label: p.band for p in policies if p.band})
    # Only the policies that learn a capacity have a learner; the protocol does not ask for one.
    run.drifts = {p.label: list(learner.drifts_) for p in policies
                  if (learner := getattr(p, "learner", None)) is not None}
    return run


def evaluate(
    workload: Workload, pools: dict[str, ReplicaPool], bounds: Bounds, bands: dict[str, Band]
) -> Run:
    """Score every pool, and the oracle, on the evaluation grid."""
    grid = workload.grid()
    # Scored as work: after a capacity drop, the same requests need more replicas.
    load = workload.trace.load(grid) * workload.cost(grid)
    step = workload.grid_step
    need, paid = oracle_replicas(
        load, workload.capacity, workload.startup, step, bounds.min_replicas, bounds.max_replicas
    )
    oracle_hours = float(paid.sum()) * step / 3600.0
    events = step_changes(load, step, workload.capacity)
    ready = {label: pool.ready_at(grid) for label, pool in pools.items()}
    scores = {
        label: score(load, ready[label], pool.replicas_at(grid), pool.actions, workload.capacity,
                     step, oracle_hours, events)
        for label, pool in pools.items()
    }
    scores[ORACLE] = score(load, need, paid, int(np.count_nonzero(np.diff(paid))),
                           workload.capacity, step, oracle_hours, events)
    ready[ORACLE] = need
    return Run(workload, grid, load, ready, scores, bands)
