"""The autoscalers compared, each a `Policy` over the operator's own `decide()` and predictors.

Only the forecasting ideas of the "-style" baselines are ours (see baselines.py);
the replica arithmetic of every policy, including the HPA, is foreseer's engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from foreseer.operator.deciding import ForecastInput
from foreseer.operator.durations import format_duration, parse_duration
from foreseer.operator.fitting import LiveError
from foreseer.operator.specs import AUTO, Behavior, Mode, ScalingPolicySpec
from foreseer.predictors.forecasts import Forecast
from foreseer.predictors.selecting import AutoForecaster
from foreseer.predictors.series import Series
from foreseer.simulator.baselines import CraneDsp, PhpaHoltWinters
from foreseer.simulator.engines import Engine
from foreseer.simulator.scenarios import Workload
from foreseer.simulator.simulating import Band, Bounds, Policy, Tick

FORESEER_AUTO = "foreseer Auto"
FORESEER_REACTIVE = "foreseer Reactive"
HPA = "HPA v2"
PHPA_STYLE = "PHPA-style"
CRANE_STYLE = "Crane-style"

CRANE_WINDOW = 3600.0
"""Crane's EHPA predictionWindowSeconds in its documented example."""
CRANE_REFIT = 3600.0
"""How often the Crane-style forecast is recomputed."""
HISTORY_STEP = 300.0
"""Default forecast.step of the simulated policy (seconds), when the interval is finer."""


def simulation_spec(workload: Workload, base: ScalingPolicySpec | None = None) -> ScalingPolicySpec:
    """``base`` (or a default policy) set up for the workload: one metric at the shared target,
    decisions every interval, history at the decision step."""
    step = format_duration(workload.interval)
    # History at 5-minute resolution or the interval if coarser, as a range query would
    # fetch it: finer points cost fitting time and carry little more about the next hour.
    history_step = format_duration(workload.interval * max(1, HISTORY_STEP // workload.interval))
    metric = {"name": "load", "query": "load", "targetPerReplica": workload.target_per_replica}
    if base is None:
        peak = float(workload.trace.values.max())
        # Room to double the peak: bounds that never bind, so only the policies differ.
        ceiling = max(10, math.ceil(2 * peak / workload.target_per_replica))
        return ScalingPolicySpec.model_validate({
            "scaleTargetRef": {"name": "simulated"},
            "minReplicas": 1,
            "maxReplicas": ceiling,
            "metrics": [metric],
            "interval": step,
            "forecast": {"step": history_step},
        })
    data = base.model_dump(by_alias=True, exclude_none=True)
    data["metrics"] = [{**data["metrics"][0], "targetPerReplica": workload.target_per_replica}]
    data["interval"] = step
    # The history is built from one observation per decision, so its step must be a
    # whole number of intervals.
    ratio = parse_duration(base.forecast.step) / workload.interval
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
        data["forecast"] = {**data.get("forecast", {}), "step": step}
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
        return self.engine.decide(tick.now, tick.replicas, float(tick.history.values[-1]))


@dataclass
class Foreseer:
    """foreseer Auto as the operator runs it: the AutoForecaster fitted every ``retrain`` of
    sim time on the history at ``forecast.step``, conditioned on each new point of it in
    between, its live error (MASE against what then happened) gating trust, and decide()
    on top at every tick."""

    engine: Engine
    lead: float
    """Seconds ahead to forecast (horizon auto = replica startup + one interval)."""
    startup: float
    """Seconds a replica ordered now takes to serve: the forecast before that is moot."""
    retrain: float
    """Seconds between refits."""
    label: str = FORESEER_AUTO
    band: Band | None = field(default_factory=Band)
    model_: AutoForecaster | None = field(default=None, init=False)
    fitted_at_: float = field(default=-math.inf, init=False)
    error_: LiveError = field(default_factory=LiveError, init=False)
    forecast_: Forecast | None = field(default=None, init=False)
    """The forecast from the newest complete history point, reused until the next one."""
    points_: int = field(default=-1, init=False)

    def decide(self, tick: Tick) -> int:
        spec = self.engine.spec
        current = float(tick.history.values[-1])
        step = parse_duration(spec.forecast.step)
        per_point = max(1, round(step / tick.history.step))
        points = len(tick.history) // per_point
        if points != self.points_:
            self.points_ = points
            self._refresh(tick.now, tick.history, per_point)
        forecast = self.forecast_
        if forecast is None:
            return self.engine.decide(tick.now, tick.replicas, current)
        # The load while replicas ordered now serve, before the next decision's do.
        first = math.ceil((tick.now + self.startup - forecast.start) / forecast.step)
        last = math.floor((tick.now + self.lead - forecast.start) / forecast.step)
        first = min(max(first, 0), forecast.horizon - 1)
        last = min(max(last, first), forecast.horizon - 1)
        quantile = spec.forecast.quantile
        value = float(np.max(forecast.quantile(quantile)[first : last + 1]))
        given = ForecastInput(value=value, model=forecast.model, mase=self.error_.mase(),
                              horizon=self.lead, quantile=quantile)
        return self.engine.decide(tick.now, tick.replicas, current, given)

    def _refresh(self, now: float, observed: Series, per_point: int) -> None:
        """Forecast again from history that gained a point (as a range query at step sees it)."""
        spec = self.engine.spec
        complete = Series(observed.start, observed.step,
                          observed.values[: self.points_ * per_point])
        history = complete.resample(observed.step * per_point)
        history = history.tail(int(parse_duration(spec.forecast.history) // history.step))
        self.error_.score(history)
        self.forecast_ = None
        if len(history) == 0:
            return
        # Enough steps to cover the lead from every tick until the next point arrives.
        steps = math.ceil(self.lead / history.step) + 2
        try:
            if now - self.fitted_at_ >= self.retrain:
                self.fitted_at_ = now
                models = None if AUTO in spec.forecast.models else spec.forecast.models
                self.model_ = AutoForecaster(models=models, quantile=spec.forecast.quantile
                                             ).fit(history)
            elif self.model_ is not None:
                self.model_.update(history)
            if self.model_ is None:
                return
            forecast = self.model_.predict(steps, (0.5, spec.forecast.quantile))
        except ValueError:
            # Unusable history (too short, all missing): Auto acts as Reactive, as in the
            # operator, and tries again at the next refit.
            self.model_ = None
            return
        self.forecast_ = forecast
        at = max(0, math.ceil(self.lead / history.step) - 1)
        target = forecast.start + at * forecast.step
        self.error_.expect(target, float(forecast.mean[at]), float(history.values[-1]))
        if self.band is not None:
            self.band.times.append(target)
            self.band.low.append(float(forecast.quantile(0.5)[at]))
            self.band.high.append(float(forecast.quantile(spec.forecast.quantile)[at]))


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
    """foreseer Auto and Reactive, the HPA, PHPA-style and Crane-style, in table order."""
    lead = workload.startup + workload.interval
    if spec.forecast.horizon != AUTO:
        lead = parse_duration(spec.forecast.horizon)
    refit = retrain if retrain is not None else parse_duration(spec.forecast.retrain_interval)
    hpa = hpa_spec(spec)
    return [
        Foreseer(Engine(_with(spec, mode=Mode.AUTO)), lead, workload.startup, refit),
        Reactive(FORESEER_REACTIVE, Engine(_with(spec, mode=Mode.REACTIVE))),
        Reactive(HPA, Engine(hpa)),
        PhpaStyle(Engine(hpa), PhpaHoltWinters(season=max(2, round(86400 / workload.interval))),
                  max(1, math.ceil(workload.startup / workload.interval))),
        CraneStyle(Engine(hpa)),
    ]
