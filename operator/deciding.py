"""The decision engine: how many replicas, and why. Pure: typed values in, a Decision out.

    decide(spec, observation, forecasts, state, now) -> Decision

1. **Reactive floor**: the HPA formula on each metric's current value, with the
   tolerance; the maximum over metrics.
2. **Predictive value**: replicas for each metric's forecast quantile at the horizon,
   through `foreseer.predictors.resources.replicas_for`. A forecast is *trusted* when
   its MASE against the naive forecast is at most guards.forecastTrust.maxErrorRatio.
3. **Raw recommendation**: in Auto (and Observe), each metric with a trusted forecast
   uses its predictive value and the others their reactive one; the maximum wins. So
   a forecast raises capacity above the floor, and lowers it below the floor only when
   trusted, and then only as far as the scale-down stabilization (and the cooldown
   guard) allow. In Reactive, or without a trusted forecast, raw is the floor.
4. **Guards** (`guards.CHAIN`): circuit breaker, stabilization, cooldown, metrics
   outage, rate policies, bounds. A target outside [minReplicas, maxReplicas] goes
   straight to the nearest bound, as with the HPA.

A missing metric is never zero: it adds nothing to the recommendation (its forecast
is ignored too) and the outage guard keeps the replicas from falling. A cycle counts
as a failure for the circuit breaker when no metric is available or the scale write
failed (`Observation.scale_error`).

With no forecasts, this is the HPA v2 algorithm with its default behavior. The
returned ``new_state`` is the next status: it holds everything the next call needs,
so an operator that restarts from its status decides exactly as one that did not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from foreseer.operator.durations import format_duration
from foreseer.operator.guards import (
    GuardContext,
    Guarded,
    Timed,
    advance_breaker,
    apply_guards,
)
from foreseer.operator.specs import MetricSpec, Mode, ScalingPolicySpec
from foreseer.operator.statuses import (
    HISTORY_LIMIT,
    CapacityStatus,
    Condition,
    ConditionType,
    ForecastStatus,
    History,
    Recommendation,
    ScaleEvent,
    ScalingPolicyStatus,
    TimedRecommendation,
    set_condition,
    to_time,
)
from foreseer.predictors.resources import replicas_for

MAX_REPLICAS = 2**31 - 1
"""Kubernetes' replica counts are int32; a huge load saturates here instead of overflowing."""


class OutageKind(StrEnum):
    """Why a metric has no usable value this cycle. None of these is ever read as zero."""

    ERROR = "Error"
    """The query failed (HTTP error, timeout, bad PromQL)."""
    EMPTY = "Empty"
    """The query returned no series (or the metric was not reported at all)."""
    NAN = "NaN"
    """The value was NaN."""
    STALE = "Stale"
    """The newest sample is older than the shell's staleness limit."""
    INVALID = "Invalid"
    """The value was infinite or negative: not a load."""


@dataclass(frozen=True)
class MetricOutage:
    """A metric without a usable value this cycle."""

    kind: OutageKind
    """What went wrong."""
    detail: str = ""
    """The error message or other detail, for status."""


@dataclass(frozen=True)
class Observation:
    """What the shell saw this cycle."""

    current_replicas: int
    """Replicas of the target now (its /scale subresource's spec.replicas)."""
    metrics: Mapping[str, float | MetricOutage]
    """Per metric name (spec.metrics[].name): the current total load, or why there is
    none. A metric missing from the mapping is an EMPTY outage; a NaN, infinite or
    negative float is an outage too."""
    generation: int | None = None
    """metadata.generation of the policy, for observedGeneration."""
    unforecast: Mapping[str, str] = field(default_factory=dict)
    """Per metric name, why it has no forecast this cycle although it should (its fit
    failed, its history holds no usable sample, the forecast step raised): the metric
    acts reactively and the ForecastTrusted condition names the cause, not a cold start."""
    utilization: Mapping[str, float | MetricOutage] = field(default_factory=dict)
    """Per metric with ``utilization``: the current mean utilisation of the ready replicas
    (a fraction), or why there is none; missing from the mapping is an EMPTY outage."""
    capacities: Mapping[str, CapacityStatus] = field(default_factory=dict)
    """Per metric, its learned capacity (`foreseer.operator.capacities.learn`); a trusted
    one sizes the metric's load, and all are carried into the status."""
    scale_error: str | None = None
    """Set when patching /scale with this cycle's decision failed: call decide() again
    with the same inputs (and the state from before this cycle) plus this error. That
    decision records no scale event, since the rate policies must count only changes
    that happened, keeps the replicas where they are, and counts the cycle as a
    failure for the circuit breaker."""

    def __post_init__(self) -> None:
        if self.current_replicas < 0:
            raise ValueError(f"current_replicas must be >= 0, got {self.current_replicas}")


@dataclass(frozen=True)
class ForecastInput:
    """One metric's forecast, as the shell's forecaster produced it."""

    value: float
    """The forecast load at the requested quantile at the horizon (max over the horizon
    if the shell provisions for the whole lead time)."""
    model: str
    """Which model produced it."""
    mase: float | None
    """Backtest error relative to the naive forecast (MASE); None when unknown, which
    makes the forecast untrusted."""
    horizon: float
    """Lead time in seconds."""
    quantile: float
    """The quantile level of ``value``."""
    version: int | None = None
    """The stored version of the model (None when models are not stored)."""


@dataclass(frozen=True)
class Decision:
    """The outcome of one cycle."""

    replicas: int
    """What the target should be scaled to (the current count when nothing moves,
    always the current count in Observe mode)."""
    reason: str
    """Why, in a sentence or two, for status and events."""
    limited_by: tuple[str, ...]
    """The guards that changed the recommendation, in order."""
    new_state: ScalingPolicyStatus
    """The next status; pass it back as ``state`` on the next call."""
    reactive: int | None
    """The reactive floor (None when no metric was available)."""
    predictive: int | None
    """Replicas the forecasts ask for (None without forecasts)."""
    raw: int | None
    """The recommendation before the guards (None when no metric was available)."""
    final: int
    """The recommendation after the guards (what Auto would apply in Observe mode)."""


def _replicas(load: float, target: float) -> int:
    """ceil(load / target) through the resource predictor, saturating at int32."""
    if load / target >= MAX_REPLICAS:
        return MAX_REPLICAS
    return replicas_for(load, target) or 0


def _reading(value: float | MetricOutage | None) -> float | MetricOutage:
    if value is None:
        return MetricOutage(OutageKind.EMPTY, "no value reported")
    if isinstance(value, MetricOutage):
        return value
    if math.isnan(value):
        return MetricOutage(OutageKind.NAN)
    if math.isinf(value) or value < 0:
        return MetricOutage(OutageKind.INVALID, f"value {value} is not a load")
    return float(value)


def _utilization(value: float | MetricOutage | None) -> float | MetricOutage:
    reading = _reading(value)
    if isinstance(reading, float) and reading > 10:
        # A fraction far past 1 is a percentage or a wrong query, not a busy pod.
        return MetricOutage(OutageKind.INVALID, f"utilisation {reading} is not a fraction")
    return reading


def hpa_replicas(load: float, target: float, current: int, tolerance: float) -> int:
    """The HPA's per-metric count for an AverageValue target: unchanged while the usage
    ratio is within the tolerance of 1, else ceil(load / target)."""
    if current > 0 and abs(1.0 - load / (target * current)) <= tolerance:
        return current
    return _replicas(load, target)


def hpa_utilization_replicas(utilization: float, target: float, current: int,
                             tolerance: float) -> int:
    """The HPA's per-metric count for a Utilization target: unchanged while utilisation /
    target is within the tolerance of 1, else ceil(current × utilisation / target)."""
    ratio = utilization / target
    if abs(1.0 - ratio) <= tolerance:
        return current
    return _replicas(utilization * current, target)


UTILIZATION = "utilization"
"""The limitedBy entry, and the sizing name, of the HPA formula on a utilisation metric."""


def sizing(metric: MetricSpec, capacities: Mapping[str, CapacityStatus]) -> tuple[
        float | None, str]:
    """The load per replica a metric is sized with, and the sizing's name: a trusted learned
    capacity, else targetPerReplica, else none (the utilisation formula alone serves)."""
    capacity = capacities.get(metric.name)
    if capacity is not None and capacity.trusted and capacity.per_replica:
        return capacity.per_replica, "capacity"
    if metric.target_per_replica is not None:
        return metric.target_per_replica, "targetPerReplica"
    return None, UTILIZATION


@dataclass(frozen=True)
class _Plan:
    """The recommendation before the guards, and what went into it."""

    reactive: int | None
    predictive: int | None
    raw: int | None
    trusted: tuple[str, ...]
    lowering_horizon: float | None
    forecast: ForecastStatus | None
    trust: tuple[str, str]
    """The ForecastTrusted condition's (reason, message)."""
    sized_by: str | None
    """The metric and sizing that set ``raw``."""
    floored: bool
    """Whether a utilisation floor set ``raw`` above what every load asks."""


def _usable(forecast: ForecastInput) -> bool:
    return (math.isfinite(forecast.value) and forecast.value >= 0
            and math.isfinite(forecast.horizon) and forecast.horizon >= 0)


def _finite(value: float | None) -> float | None:
    """``value`` when it is a finite number, else None: an undefined error (a flat load the
    model missed gives an infinite MASE) is absent from the status, never ``inf``."""
    return value if value is not None and math.isfinite(value) else None


def _mase_text(mase: float | None) -> str:
    if mase is None or math.isnan(mase):
        return "unknown"
    return "unbounded (the load did not move)" if math.isinf(mase) else f"{mase:.3g}"


def _is_trusted(forecast: ForecastInput, max_ratio: float) -> bool:
    return forecast.mase is not None and math.isfinite(forecast.mase) and \
        forecast.mase <= max_ratio


def _plan(spec: ScalingPolicySpec, loads: Mapping[str, float],
          utilizations: Mapping[str, float], forecasts: Mapping[str, ForecastInput],
          unforecast: Mapping[str, str], sizes: Mapping[str, tuple[float | None, str]],
          current: int) -> _Plan:
    tolerance = spec.behavior.tolerance
    max_ratio = spec.guards.forecast_trust.max_error_ratio
    targets = {n: size for n, (size, _) in sizes.items() if size is not None}
    reactive = {n: hpa_replicas(v, targets[n], current, tolerance)
                for n, v in loads.items() if n in targets}
    # The HPA formula on each utilisation is always in the max: a capacity that dropped
    # (a costlier release) raises utilisation before any refit notices.
    utilization_targets = {m.name: m.utilization.target for m in spec.metrics if m.utilization}
    floors = {n: hpa_utilization_replicas(u, utilization_targets[n], current, tolerance)
              for n, u in utilizations.items() if n in utilization_targets}
    # A metric is forecast in replicas only with a load per replica: the decision never
    # guesses a capacity.
    usable = {n: f for n, f in forecasts.items() if n in loads and n in targets and _usable(f)}
    # The forecast gets the same tolerance band as the current value: without it a
    # forecast that wobbles around the current capacity moves replicas on every tick.
    predictive = {n: hpa_replicas(f.value, targets[n], current, tolerance)
                  for n, f in usable.items()}
    trusted = () if spec.mode is Mode.REACTIVE else tuple(
        n for n in predictive if _is_trusted(usable[n], max_ratio))
    named = {(n, sizes[n][1]): r for n, r in reactive.items()} | {
        (n, UTILIZATION): r for n, r in floors.items()}
    floor = max(named.values(), default=None)

    forecast = None
    if predictive:
        lead = max(predictive, key=lambda n: predictive[n])
        chosen = usable[lead]
        forecast = ForecastStatus(
            metric=lead, model=chosen.model, model_version=chosen.version,
            horizon=format_duration(chosen.horizon),
            quantile=chosen.quantile, value=chosen.value, mase=_finite(chosen.mase),
            trusted=lead in trusted)

    raw, lowering, combined = floor, None, named
    if trusted and floor is not None:
        combined = {**named, **{(n, sizes[n][1]): predictive[n] for n in trusted}}
        raw = max(combined.values())
        if raw < floor:
            lowering = max(usable[n].horizon for n in trusted)
    sized_by, floored = None, False
    if raw is not None:
        winner = max(combined, key=lambda k: (combined[k], k[1] != UTILIZATION))
        text = _sizing_text(winner, targets, utilizations, utilization_targets)
        sized_by = f"{winner[0]} ({text})"
        by_load = [r for k, r in combined.items() if k[1] != UTILIZATION]
        floored = winner[1] == UTILIZATION and bool(by_load) and raw > max(by_load)
    return _Plan(floor, max(predictive.values(), default=None), raw, trusted, lowering,
                 forecast, _trust(spec, loads, forecasts, unforecast, usable, trusted),
                 sized_by, floored)


def _sizing_text(key: tuple[str, str], targets: Mapping[str, float],
                 utilizations: Mapping[str, float],
                 utilization_targets: Mapping[str, float]) -> str:
    name, kind = key
    if kind == UTILIZATION:
        return (f"utilization {utilizations[name]:.3g} against target "
                f"{utilization_targets[name]:g}")
    if kind == "capacity":
        return f"learned capacity {targets[name]:.4g} per replica"
    return f"targetPerReplica {targets[name]:g}"


def _trust(spec: ScalingPolicySpec, loads: Mapping[str, float],
           forecasts: Mapping[str, ForecastInput], unforecast: Mapping[str, str],
           usable: Mapping[str, ForecastInput], trusted: tuple[str, ...]) -> tuple[str, str]:
    """The ForecastTrusted condition's (reason, message)."""
    if spec.mode is Mode.REACTIVE:
        return "ReactiveMode", "Reactive mode: forecasts are not used"
    missing = "; ".join(f"no forecast for {n}: {why}" for n, why in unforecast.items()
                        if n in loads and n not in forecasts)
    if trusted:
        return "ForecastTrusted", "; ".join(
            [f"scaling on the forecasts of {', '.join(trusted)}"] + ([missing] if missing else []))
    if not any(n in loads for n in forecasts):
        if missing:
            return "ForecastUnavailable", f"acting reactively: {missing}"
        return "ColdStart", "acting reactively: too little history to forecast yet (cold start)"
    if not usable:
        return "ForecastInvalid", ("acting reactively: the forecast is not a usable load "
                                   "(NaN, infinite or negative)")
    ratio = spec.guards.forecast_trust.max_error_ratio
    errors = ", ".join(f"{n} MASE {_mase_text(f.mase)}" for n, f in usable.items())
    return "ForecastUntrusted", (f"acting reactively: forecast not trusted ({errors}; "
                                 f"maxErrorRatio {ratio})")


def _prune(recommendations: list[Timed], events: list[Timed], spec: ScalingPolicySpec,
           now: float) -> tuple[list[Timed], list[Timed]]:
    """Keep what a window or policy period can still see, newest HISTORY_LIMIT at most,
    and the latest scale-up for the cooldown.

    Recommendations of equal value keep only the newest: a window holds one of them
    exactly when it holds the newest, so min and max over any window are unchanged.
    """
    up, down = spec.behavior.up(), spec.behavior.down()
    window = max(up.stabilization_window_seconds or 0, down.stabilization_window_seconds or 0)
    newest: dict[int, float] = {}
    for t, r in recommendations:
        if t > now - window:
            newest[r] = max(t, newest.get(r, t))
    kept = sorted((t, r) for r, t in newest.items())[-HISTORY_LIMIT:]
    period = max((p.period_seconds for p in (up.policies or []) + (down.policies or [])),
                 default=0)
    recent = [(t, c) for t, c in events if t > now - period][-HISTORY_LIMIT:]
    ups = [(t, c) for t, c in events if c > 0]
    if ups and ups[-1] not in recent:
        # The cooldown guard looks back a forecast horizon, which may be longer than
        # every policy period; rate policies ignore an event older than their period.
        recent.insert(0, ups[-1])
    return kept, recent


def decide(spec: ScalingPolicySpec, observation: Observation,
           forecasts: Mapping[str, ForecastInput], state: ScalingPolicyStatus,
           now: float, *, seed: str = "") -> Decision:
    """Decide this cycle's replica count.

    ``spec``: the validated policy. ``observation``: current replicas and metric values
    (see `Observation`). ``forecasts``: per metric name, its forecast; a metric without
    one is in cold start. ``state``: the previous ``new_state`` or the policy's status
    as read back (an empty ``ScalingPolicyStatus()`` the first time). ``now``: Unix
    seconds. ``seed``: makes the breaker's jitter differ between policies (pass the
    policy's uid). Never raises on a spec the schema accepts.
    """
    if not math.isfinite(now):
        raise ValueError(f"now must be finite Unix seconds, got {now}")
    moment = to_time(now)
    t = moment.timestamp()  # on the status' microsecond grid, as restored history is
    current = observation.current_replicas
    readings = {m.name: _reading(observation.metrics.get(m.name)) for m in spec.metrics}
    utilization = {m.name: _utilization(observation.utilization.get(m.name))
                   for m in spec.metrics if m.utilization is not None}
    sizes = {m.name: sizing(m, observation.capacities) for m in spec.metrics}
    for m in spec.metrics:
        # A load with no load per replica to size it and no utilisation to fall back on
        # asks for nothing: it is missing, so the outage guard holds the replicas up.
        if sizes[m.name][0] is None and isinstance(
                readings[m.name], float) and isinstance(utilization.get(m.name), MetricOutage):
            readings[m.name] = MetricOutage(
                OutageKind.EMPTY, "no trusted capacity yet and no utilisation to size it by")
    loads = {n: v for n, v in readings.items() if isinstance(v, float)}
    outages = {n: v for n, v in readings.items() if isinstance(v, MetricOutage)} | {
        f"{n}.{UTILIZATION}": v for n, v in utilization.items() if isinstance(v, MetricOutage)}
    utilizations = {n: v for n, v in utilization.items() if isinstance(v, float)}
    plan = _plan(spec, loads, utilizations, forecasts, observation.unforecast, sizes, current)

    # Entries carried over keep their (immutable) models: rebuilding a few hundred
    # pydantic objects per cycle would dominate the decision's cost.
    known_recommendations = {(r.time.timestamp(), r.replicas): r
                             for r in state.history.recommendations}
    known_events = {(e.time.timestamp(), e.change): e for e in state.history.scale_events}
    recommendations = [(r.time.timestamp(), r.replicas) for r in state.history.recommendations]
    events = [(e.time.timestamp(), e.change) for e in state.history.scale_events]
    last_scale = state.last_scale_time

    failed = observation.scale_error is not None or not loads
    breaker, holds = advance_breaker(state.breaker, failed, spec.guards.circuit_breaker,
                                     t, seed)
    low, high = spec.min_replicas, spec.max_replicas
    if not low <= current <= high:
        # As the HPA: out of bounds, go straight to the nearest bound, no behavior.
        bound = min(max(current, low), high)
        edge = "maxReplicas" if current > high else "minReplicas"
        guarded = Guarded(bound, ("bounds",), (f"current {current} is outside {edge} {bound}",))
    else:
        ctx = GuardContext(
            spec=spec, now=t, current=current, floor=plan.reactive,
            lowering_horizon=plan.lowering_horizon, missing=tuple(outages),
            breaker_holds=holds, recommendations=tuple(recommendations), events=tuple(events),
            up=spec.behavior.up(), down=spec.behavior.down())
        guarded = apply_guards(current if plan.raw is None else plan.raw, ctx)
        if plan.floored:
            guarded = Guarded(guarded.value, (UTILIZATION, *guarded.limited_by), (
                f"the utilisation floor asks for {plan.raw}, more than the load does",
                *guarded.notes))
        # As the HPA, a scale-down recommendation made while a metric is missing is not
        # remembered: it rests on partial data.
        if plan.raw is not None and not (outages and plan.raw < current):
            recommendations.append((t, plan.raw))

    observe = spec.mode is Mode.OBSERVE
    unchanged = observe or observation.scale_error is not None
    replicas = current if unchanged else guarded.value
    if replicas != current:
        events.append((t, replicas - current))
        last_scale = moment
    recommendations, events = _prune(recommendations, events, spec, t)

    reason = _reason(spec, plan, guarded, outages, current, observe, observation.scale_error)
    recommendation = Recommendation(
        reactive=plan.reactive, predictive=plan.predictive, raw=plan.raw,
        final=guarded.value, limited_by=list(guarded.limited_by), sized_by=plan.sized_by,
        reason=reason)
    new_state = ScalingPolicyStatus(
        observed_generation=observation.generation, current_replicas=current,
        desired_replicas=guarded.value, last_scale_time=last_scale,
        recommendation=recommendation, forecast=plan.forecast, breaker=breaker,
        capacities=[observation.capacities[m.name] for m in spec.metrics
                    if m.name in observation.capacities],
        history=History(
            recommendations=[known_recommendations.get((x, r))
                             or TimedRecommendation(time=to_time(x), replicas=r)
                             for x, r in recommendations],
            scale_events=[known_events.get((x, c)) or ScaleEvent(time=to_time(x), change=c)
                          for x, c in events]),
        conditions=_conditions(state, plan, guarded, outages, breaker.open_until, holds,
                               loads, moment, observation.generation))
    return Decision(replicas=replicas, reason=reason, limited_by=guarded.limited_by,
                    new_state=new_state, reactive=plan.reactive, predictive=plan.predictive,
                    raw=plan.raw, final=guarded.value)


def _describe_outages(outages: Mapping[str, MetricOutage]) -> str:
    return "; ".join(f"{n}: {o.kind}{f' ({o.detail})' if o.detail else ''}"
                     for n, o in outages.items())


def _reason(spec: ScalingPolicySpec, plan: _Plan, guarded: Guarded,
            outages: Mapping[str, MetricOutage], current: int, observe: bool,
            scale_error: str | None) -> str:
    if plan.raw is None:
        parts = [f"no metric available ({_describe_outages(outages)}); nothing to act on"]
    elif plan.trusted:
        forecast = plan.forecast
        parts = [f"predictive: trusted forecasts ({', '.join(plan.trusted)}) and current "
                 f"load ask for {plan.raw} replicas; reactive floor {plan.reactive}"]
        if forecast is not None:
            parts.append(f"{forecast.model} forecasts {forecast.value:.4g} for {forecast.metric} "
                         f"in {forecast.horizon}")
    else:
        parts = [f"reactive: current load asks for {plan.raw} replicas "
                 f"(HPA formula, tolerance {spec.behavior.tolerance})"]
        if spec.mode is not Mode.REACTIVE:
            parts.append(plan.trust[1])
    if plan.sized_by is not None:
        parts.append(f"sized by {plan.sized_by}")
    if outages and plan.raw is not None:
        parts.append(f"metrics missing: {_describe_outages(outages)}")
    parts.extend(f"{name}: {note}" for name, note in zip(guarded.limited_by, guarded.notes,
                                                         strict=True))
    if observe:
        parts.append(f"Observe mode: would scale to {guarded.value}, replicas stay {current}")
    elif scale_error is not None and guarded.value != current:
        parts.append(f"scaling to {guarded.value} failed ({scale_error}); "
                     f"replicas stay {current}")
    return "; ".join(parts)


def _conditions(state: ScalingPolicyStatus, plan: _Plan, guarded: Guarded,
                outages: Mapping[str, MetricOutage], open_until: datetime | None, holds: bool,
                loads: Mapping[str, float], now: datetime,
                generation: int | None) -> list[Condition]:
    conditions = list(state.conditions)

    def put(kind: ConditionType, ok: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, kind, ok, reason, message, now, generation)

    if holds:
        put(ConditionType.READY, False, "CircuitOpen",
            f"the circuit breaker is open until {open_until.isoformat() if open_until else '?'}")
    elif not loads:
        put(ConditionType.READY, False, "NoMetrics", "no metric is available")
    else:
        put(ConditionType.READY, True, "Decided", "the last cycle decided normally")
    if outages:
        put(ConditionType.METRICS_AVAILABLE, False, "MetricsMissing", _describe_outages(outages))
    else:
        put(ConditionType.METRICS_AVAILABLE, True, "AllMetricsAvailable",
            "every metric has a current value")
    put(ConditionType.FORECAST_TRUSTED, bool(plan.trusted), *plan.trust)
    if guarded.limited_by:
        first = guarded.limited_by[0]
        put(ConditionType.SCALING_LIMITED, True, first[0].upper() + first[1:],
            "; ".join(f"{n}: {m}" for n, m in zip(guarded.limited_by, guarded.notes,
                                                  strict=True)))
    else:
        put(ConditionType.SCALING_LIMITED, False, "DesiredWithinRange",
            "the recommendation is within every guard")
    return conditions
