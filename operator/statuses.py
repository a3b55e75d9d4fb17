"""The ScalingPolicy status: what the operator decided, why, and what it must remember.

The status is also the decision engine's state: everything `deciding.decide` needs
from the past (the recommendation and scale-event history of the HPA's stabilization
windows and rate policies, the circuit breaker) lives here, so an operator that
restarts reads its status back and decides exactly as before.

Times are timezone-aware UTC ``datetime`` values in Python and RFC3339 strings on the
wire (as Kubernetes' metav1.Time), at microsecond precision so that a JSON round trip
is exact. The engine receives ``now`` as an argument and never reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

HISTORY_LIMIT = 256
"""Most entries kept in each history list (a bound on the status size in etcd)."""


class StatusModel(BaseModel):
    """camelCase on the wire like the spec; unknown fields are ignored, not rejected,
    because other writers (Kopf's progress storage, older operator versions) share
    the status object. Every number is finite."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True,
        # A real API server refuses a body with NaN or Infinity (they are not JSON), and then
        # every status write of the policy fails: a non-finite number is refused here, loudly.
        allow_inf_nan=False,
    )


def to_time(seconds: float) -> datetime:
    """Unix seconds as the UTC datetime stored in the status (microsecond precision)."""
    return datetime.fromtimestamp(seconds, UTC)


class Recommendation(StatusModel):
    """The replica counts of one decision, from the metrics to what was applied."""

    reactive: int | None = Field(
        None, description="The HPA formula on current metric values (the reactive floor).")
    predictive: int | None = Field(
        None, description="Replicas for the forecast quantile at the horizon, when forecast.")
    raw: int | None = Field(None, description="The recommendation before the guards.")
    final: int | None = Field(None, description="The replica count after every guard.")
    limited_by: list[str] = Field(
        default_factory=list, description="The guards that changed the value, in order "
                                          "(utilization first when the utilisation floor "
                                          "raised it above what the load asks).")
    sized_by: str | None = Field(
        None, description="The metric and sizing (capacity, targetPerReplica, utilization) "
                          "that set the recommendation.")
    reason: str = Field("", description="Why, in one sentence.")


class ForecastStatus(StatusModel):
    """The forecast that drove (or would have driven) the predictive recommendation."""

    metric: str | None = Field(None, description="The metric whose forecast needs most replicas.")
    model: str | None = Field(None, description="The model that produced the forecast.")
    model_version: int | None = Field(
        None, ge=1, description="Its version in the model store, when models are stored.")
    horizon: str | None = Field(None, description="Lead time forecast, as a duration.")
    quantile: float | None = Field(None, description="Forecast quantile provisioned for.")
    value: float | None = Field(None, description="Forecast load at the horizon.")
    mase: float | None = Field(
        None, description="The model's error relative to the naive forecast (MASE).")
    trusted: bool = Field(False, description="Whether the forecast is used for scaling.")


class BreakerState(StrEnum):
    CLOSED = "Closed"
    OPEN = "Open"
    HALF_OPEN = "HalfOpen"


class BreakerStatus(StatusModel):
    """The circuit breaker around the whole control loop."""

    state: BreakerState = Field(BreakerState.CLOSED, description="Closed, Open or HalfOpen.")
    failures: int = Field(0, ge=0, description="Consecutive failed control cycles.")
    open_until: AwareDatetime | None = Field(
        None, description="While Open, when the next probe is allowed.")


class TimedRecommendation(StatusModel):
    """One unstabilized recommendation, as the HPA keeps for its stabilization windows."""

    time: AwareDatetime
    replicas: int


class ScaleEvent(StatusModel):
    """One replica change the operator made, as the HPA keeps for its rate policies."""

    time: AwareDatetime
    change: int = Field(description="Replicas added (positive) or removed (negative).")


class History(StatusModel):
    """The bounded memory the stabilization windows and rate policies need.

    Only entries younger than the longest window or policy period are kept (and the
    latest scale-up, which the cooldown guard needs), so the lists stay short; each
    holds 256 entries at most.
    """

    recommendations: list[TimedRecommendation] = Field(
        default_factory=list, max_length=HISTORY_LIMIT)
    scale_events: list[ScaleEvent] = Field(default_factory=list, max_length=HISTORY_LIMIT)


class ConditionType(StrEnum):
    READY = "Ready"
    METRICS_AVAILABLE = "MetricsAvailable"
    FORECAST_TRUSTED = "ForecastTrusted"
    SCALING_LIMITED = "ScalingLimited"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """A Kubernetes condition (metav1.Condition conventions)."""

    type: str = Field(description="The aspect reported: Ready, MetricsAvailable, ...")
    status: ConditionStatus
    reason: str = Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="A CamelCase machine-readable reason.")
    message: str = Field("", description="Details for humans.")
    last_transition_time: AwareDatetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        None, description="The spec generation the condition was computed for.")


def set_condition(
    conditions: Sequence[Condition],
    type: str,
    status: ConditionStatus | bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> list[Condition]:
    """``conditions`` with the ``type`` condition set; the rest keep their order.

    lastTransitionTime moves only when the status changes, as Kubernetes'
    meta.SetStatusCondition does, so it tells how long things have been so.
    """
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    previous = next((c for c in conditions if c.type == type), None)
    since = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(type=type, status=status, reason=reason, message=message,
                        last_transition_time=since, observed_generation=generation)
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == type else c for c in conditions]


def get_condition(conditions: Sequence[Condition], type: str) -> Condition | None:
    """The ``type`` condition, or None."""
    return next((c for c in conditions if c.type == type), None)


class CapacityStatus(StatusModel):
    """One metric's learned per-replica capacity (a checkpoint: a restarted operator sizes
    and watches for drift with it until its next refit)."""

    metric: str = Field(description="The metric (spec.metrics[].name).")
    per_replica: float | None = Field(
        None, description="Load one replica serves at the utilisation target, when learned.")
    target: float = Field(description="The utilisation target it is learned for.")
    baseline: float | None = Field(None, description="Fitted utilisation at no load.")
    slope: float | None = Field(None, description="Fitted utilisation per unit of load per "
                                                  "replica.")
    noise: float | None = Field(None, description="Robust spread of the fit's residuals.")
    r2: float | None = Field(None, description="R² of the fit on its inliers.")
    slope_relative_error: float | None = Field(
        None, description="Standard error of the slope over the slope.")
    samples: int = Field(0, description="Usable (load, replicas, utilisation) rows fitted on.")
    fitted_at: AwareDatetime = Field(description="When it was fitted.")
    trusted: bool = Field(False, description="Whether decisions size the load with it.")
    reason: str = Field("", description="Why it is not trusted, when it is not.")
    drift_streak: int = Field(
        0, description="Consecutive intervals whose live utilisation left the fit's band.")
    since: AwareDatetime | None = Field(
        None, description="After a drift: the fit reads only history from this time on.")


class ScalingPolicyStatus(StatusModel):
    """The status subresource of a ScalingPolicy."""

    observed_generation: int | None = Field(
        None, description="The spec generation last acted on.")
    current_replicas: int | None = Field(None, description="Replicas of the target seen last.")
    desired_replicas: int | None = Field(None, description="Replicas last decided.")
    last_scale_time: AwareDatetime | None = Field(
        None, description="When the operator last changed the replica count.")
    recommendation: Recommendation | None = None
    forecast: ForecastStatus | None = None
    capacities: list[CapacityStatus] = Field(
        default_factory=list,
        description="Per metric with utilization, its learned per-replica capacity.",
        json_schema_extra={"x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["metric"]})
    breaker: BreakerStatus = Field(default_factory=BreakerStatus)
    history: History = Field(default_factory=History)
    conditions: list[Condition] = Field(
        default_factory=list,
        # One condition per type, merged by type under server-side apply (as metav1.Condition).
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})


def substance(status: Mapping[str, Any]) -> Any:
    """What of a status dump is worth a write as soon as it changes (the VPA recommender's
    semantic equality): everything but the numbers that move on every tick without changing
    a decision. Those are the time of each recommendation (their values count), the forecast's
    value and error, the reason text and the condition messages (their type, status and
    reason count)."""
    essence = dict(status)
    recommendation = dict(essence.get("recommendation") or {})
    recommendation.pop("reason", None)
    essence["recommendation"] = recommendation
    forecast = essence.get("forecast")
    if forecast:
        essence["forecast"] = {k: v for k, v in forecast.items() if k not in ("value", "mase")}
    history = dict(essence.get("history") or {})
    history["recommendations"] = [r.get("replicas")
                                  for r in history.get("recommendations", [])]
    essence["history"] = history
    essence["conditions"] = [(c.get("type"), c.get("status"), c.get("reason"))
                             for c in essence.get("conditions", [])]
    return essence


def changed_conditions(old: list[Condition], new: list[Condition]) -> list[Condition]:
    changed = []
    for condition in new:
        before = get_condition(old, condition.type)
        if before is None or (before.status, before.reason) != (condition.status,
                                                                condition.reason):
            changed.append(condition)
    return changed


def is_bad(condition: Condition) -> bool:
    """Whether a condition change is a Warning Event: any type turning not-True, except
    ScalingLimited, where a guard holding the replicas back is normal operation."""
    if condition.type == ConditionType.SCALING_LIMITED:
        return False
    return condition.status != ConditionStatus.TRUE
