"""The autoscalers compared, each a `Policy` over the operator's own `decide()` and predictors.

Only the forecasting ideas of the "-style" baselines are ours (see baselines.py);
the replica arithmetic of every policy, including the HPA, is foreseer's engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from foreseer.operator.capacities import capacity_step, fit_capacity
from foreseer.operator.durations import format_duration, parse_duration
from foreseer.operator.forecasting import (
    FIT_RETRY_SECONDS,
    Fitted,
    LiveError,
    Plan,
    fit_recipe,
    forecast_step,
    history_grid,
)
from foreseer.operator.specs import Behavior, MetricSpec, Mode, ScalingPolicySpec
from foreseer.operator.statuses import CapacityStatus
from foreseer.predictors.series import Series
from foreseer.simulator.baselines import CraneDsp, PhpaHoltWinters
from foreseer.simulator.engines import Engine
from foreseer.simulator.scenarios import Workload
from foreseer.simulator.simulating import Band, Bounds, Policy, Tick

FORESEER_AUTO = "foreseer Auto"
FORESEER_REACTIVE = "foreseer Reactive"
HPA = "HPA v2"
FORESEER_UTILIZATION = "foreseer Auto, utilisation target"
HPA_UTILIZATION = "HPA v2, utilisation target"
PHPA_STYLE = "PHPA-style"
CRANE_STYLE = "Crane-style"

CRANE_WINDOW = 3600.0
"""Crane's EHPA predictionWindowSeconds in its documented example."""
CRANE_REFIT = 3600.0
"""How often the Crane-style forecast is recomputed."""


def simulation_spec(workload: Workload, base: ScalingPolicySpec | None = None) -> ScalingPolicySpec:
    """``base`` (or the CRD's default policy) set up for the workload: one metric at the shared
    target, decisions every interval, and the policy's history step where the trace is that
    fine (1 minute by default), else the trace's own step."""
    metric = {"name": "load", "query": "load", "targetPerReplica": workload.target_per_replica}
    if base is None:
        peak = float(workload.trace.values.max())
        # Room to double the peak: bounds that never bind, so only the policies differ.
        ceiling = max(10, math.ceil(2 * peak / workload.target_per_replica))
        base = ScalingPolicySpec.model_validate({
            "scaleTargetRef": {"name": "simulated"}, "minReplicas": 1, "maxReplicas": ceiling,
            "metrics": [metric]})
    data = base.model_dump(by_alias=True, exclude_none=True)
    data["metrics"] = [{**data["metrics"][0], "targetPerReplica": workload.target_per_replica}]
    data["interval"] = format_duration(workload.interval)
    # The simulation scrapes once a decision, so a history step finer than that, or not a
    # whole number of decisions, would only repeat points.
    ratio = parse_duration(base.forecast.step) / workload.interval
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
        data["forecast"] = {**data.get("forecast", {}), "step": data["interval"]}
    return ScalingPolicySpec.model_validate(data)


def bounds_of(spec: ScalingPolicySpec) -> Bounds:
    return Bounds(spec.min_replicas, spec.max_replicas)


def _with(spec: ScalingPolicySpec, **changes: object) -> ScalingPolicySpec:
    return spec.model_copy(update=changes)


def hpa_spec(spec: ScalingPolicySpec) -> ScalingPolicySpec:
    """The Kubernetes HPA v2: reactive, with the default behavior and tolerance."""
    return _with(spec, mode=Mode.REACTIVE, behavior=Behavior())


@dataclass
class Reactive:
    """decide() on the current metric: foreseer Reactive, or the HPA with its default spec."""

    label: str
    engine: Engine
    band: Band | None = None

    def decide(self, tick: Tick) -> int:
        return self.engine.decide(tick.now, tick.replicas, float(tick.history.values[-1]),
                                  utilization=tick.utilization)


def scraped(tick: Tick, step: float, window: float) -> Series:
    """The history a range query at ``step`` over ``window`` returns at the tick: the operator's
    grid (`history_grid`), each point the newest scrape at or before it (the simulation
    scrapes once a tick), NaN before the first."""
    first, points = history_grid(tick.now, step, window)
    times = first + step * np.arange(points, dtype=np.float64)
    observed = tick.history
    index = np.floor((times - observed.start) / observed.step + 1e-9).astype(np.int64)
    seen = (index >= 0) & (index < len(observed))
    values = np.full(points, np.nan)
    values[seen] = observed.values[index[seen]]
    return Series(first, step, values)


def utilization_spec(spec: ScalingPolicySpec, workload: Workload) -> ScalingPolicySpec:
    """``spec`` with its metric sized by a utilisation target only (the target fraction of
    the workload), not by a known targetPerReplica."""
    metric = spec.metrics[0]
    sized = MetricSpec(name=metric.name, query=metric.query, utilization={
        "query": "utilization", "target": workload.target_per_replica / workload.capacity})
    return _with(spec, metrics=[sized])


@dataclass
class CapacityLearner:
    """The operator's capacity learning on the simulated record: each tick, `capacity_step`
    on the live (load, ready, utilisation), and `fit_capacity` on the record of the policy's
    history window when it says so."""

    spec: ScalingPolicySpec
    ready_: list[float] = field(default_factory=list, init=False)
    busy_: list[float] = field(default_factory=list, init=False)
    capacity_: CapacityStatus | None = field(default=None, init=False)
    drifts_: list[float] = field(default_factory=list, init=False)
    """When a drift was detected."""

    def observe(self, tick: Tick) -> dict[str, CapacityStatus]:
        metric = self.spec.metrics[0]
        assert metric.utilization is not None
        self.ready_.append(float(tick.ready))
        self.busy_.append(tick.utilization)
        history = tick.history
        load = float(history.values[-1])
        watched = capacity_step(self.capacity_, load, float(tick.ready), tick.utilization,
                                tick.now, parse_duration(self.spec.forecast.retrain_interval),
                                history.step)
        self.capacity_ = watched.capacity
        if watched.changed is not None:
            self.drifts_.append(tick.now)
        if watched.refit is not None:
            n = min(len(history), round(parse_duration(self.spec.forecast.history)
                                        / history.step))
            tail = history.tail(n)
            self.capacity_ = fit_capacity(
                metric.name, tail, Series(tail.start, tail.step, np.array(self.ready_[-n:])),
                Series(tail.start, tail.step, np.array(self.busy_[-n:])),
                metric.utilization.target, tick.now, watched.since)
        return {} if self.capacity_ is None else {metric.name: self.capacity_}


@dataclass
class Foreseer:
    """foreseer Auto as the operator runs it: every tick, the operator's forecast step
    (`forecast_step`) on the history its range query would read, `decide()` on the forecast,
    and the operator's fit (`fit_recipe`) whenever the step says a refit is due. A fit lands
    at once, so the next tick uses it, as in the operator when a worker is free."""

    engine: Engine
    lead: float
    """Seconds a new replica takes to become ready (what ``horizon: auto`` measures)."""
    label: str = FORESEER_AUTO
    band: Band | None = field(default_factory=Band)
    learner: CapacityLearner | None = None
    """Learns the capacity, for a metric sized by a utilisation target."""
    fitted_: Fitted | None = field(default=None, init=False)
    failed_at_: float = field(default=-math.inf, init=False)
    error_: LiveError = field(default_factory=LiveError, init=False)
    conditioned_: tuple[object, float] | None = field(default=None, init=False)
    """The model last conditioned, and the end of the history it saw."""

    def decide(self, tick: Tick) -> int:
        spec = self.engine.spec
        plan = Plan.of(spec, self.lead)
        history = scraped(tick, plan.recipe.step, plan.recipe.history)
        fitted = self.fitted_
        seen = None if fitted is None else (fitted.model, history.end)
        fresh = seen is not None and seen != self.conditioned_
        step = forecast_step(history, fitted, plan, self.error_, tick.now, condition=fresh)
        if fresh:
            self.conditioned_ = seen
        if (step.refit is not None and history.observed() > 0
                and tick.now - self.failed_at_ >= FIT_RETRY_SECONDS):
            try:
                model = fit_recipe(history, plan.recipe)
            except ValueError:
                # A history the models refuse (too short, all missing): tried again later,
                # as the operator retries a failed fit.
                self.failed_at_ = tick.now
            else:
                self.fitted_ = Fitted(model, plan.recipe, tick.now, history.observed(), 0.0)
        forecast = step.forecast
        if forecast is not None and step.point is not None and self.band is not None:
            self.band.times.append(tick.now + plan.horizon)
            self.band.low.append(step.point)
            self.band.high.append(forecast.value)
        capacities = None if self.learner is None else self.learner.observe(tick)
        return self.engine.decide(tick.now, tick.replicas, float(tick.history.values[-1]),
                                  forecast, tick.utilization, capacities)


@dataclass
class CraneStyle:
    """Crane's EHPA: the HPA acts on max(DSP forecast over the prediction window, current)."""

    engine: Engine
    label: str = CRANE_STYLE
    band: Band | None = None
    model_: CraneDsp = field(default_factory=CraneDsp, init=False)
    fitted_at_: float = field(default=-math.inf, init=False)

    def decide(self, tick: Tick) -> int:
        history = tick.history
        if tick.now - self.fitted_at_ >= CRANE_REFIT:
            self.model_.fit(history.start, history.step, history.values)
            self.fitted_at_ = tick.now
        current = float(history.values[-1])
        ahead = self.model_.window_max(tick.now, tick.now + CRANE_WINDOW)
        value = current if ahead is None or math.isnan(current) else max(ahead, current)
        return self.engine.decide(tick.now, tick.replicas, value)


@dataclass
class PhpaStyle:
    """PHPA: Holt-Winters on the HPA's replica counts; the higher of its forecast and the HPA's."""

    engine: Engine
    model: PhpaHoltWinters
    lead_steps: int
    """Syncs ahead the prediction covers (the replica startup)."""
    label: str = PHPA_STYLE
    band: Band | None = None

    def decide(self, tick: Tick) -> int:
        hpa = self.engine.decide(tick.now, tick.replicas, float(tick.history.values[-1]))
        self.model.update(hpa)
        predicted = self.model.predict(self.lead_steps)
        if predicted is None or not math.isfinite(predicted):
            return hpa
        spec = self.engine.spec
        return int(np.clip(max(hpa, math.ceil(predicted - 1e-9)), spec.min_replicas,
                           spec.max_replicas))


def standard_policies(spec: ScalingPolicySpec, workload: Workload, retrain: float | None = None
                      ) -> list[Policy]:
    """foreseer Auto and Reactive, the HPA, PHPA-style and Crane-style, in table order;
    ``retrain`` (seconds) replaces the policy's ``forecast.retrainInterval``."""
    auto = _with(spec, mode=Mode.AUTO)
    if retrain is not None:
        auto = _with(auto, forecast=spec.forecast.model_copy(
            update={"retrain_interval": format_duration(retrain)}))
    hpa = hpa_spec(spec)
    return [
        Foreseer(Engine(auto), workload.startup),
        Reactive(FORESEER_REACTIVE, Engine(_with(spec, mode=Mode.REACTIVE))),
        Reactive(HPA, Engine(hpa)),
        PhpaStyle(Engine(hpa), PhpaHoltWinters(season=max(2, round(86400 / workload.interval))),
                  max(1, math.ceil(workload.startup / workload.interval))),
        CraneStyle(Engine(hpa)),
    ]


def utilization_policies(spec: ScalingPolicySpec, workload: Workload,
                         retrain: float | None = None) -> list[Policy]:
    """foreseer Auto and the HPA given only a utilisation target (`utilization_spec`):
    foreseer learns the capacity, the HPA applies its utilisation formula."""
    auto = utilization_spec(_with(spec, mode=Mode.AUTO), workload)
    if retrain is not None:
        auto = _with(auto, forecast=spec.forecast.model_copy(
            update={"retrain_interval": format_duration(retrain)}))
    return [
        Foreseer(Engine(auto), workload.startup, FORESEER_UTILIZATION,
                 learner=CapacityLearner(auto)),
        Reactive(HPA_UTILIZATION, Engine(utilization_spec(hpa_spec(spec), workload))),
    ]
