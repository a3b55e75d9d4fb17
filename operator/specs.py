"""The ScalingPolicy API (foreseer.dev/v1alpha1): the pydantic models are the source of truth.

`crds/` is generated from these models (``make crds``); a test fails on drift.
Field names are camelCase on the wire, snake_case in Python.

Every CEL rule the CRD carries (``x-kubernetes-validations``) sits next to the
pydantic check that enforces the same thing, so the API server and the models
accept the same policies. A few cross-field checks on durations ("1h30m" vs
"7d") cannot be written in CEL without Kubernetes-only extensions; those are
enforced here only, and the operator reports them on the policy.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from foreseer.operator.durations import DURATION_PATTERN, parse_duration

GROUP = "foreseer.dev"
VERSION = "v1alpha1"
KIND = "ScalingPolicy"
PLURAL = "scalingpolicies"

# Kubernetes stores replica counts as int32.
MAX_INT32 = 2**31 - 1
# CEL rules must have a bounded cost, so every list and string they read has a maximum size.
MAX_METRICS = 16
MAX_DURATION_LENGTH = 32
NAME_LENGTH = 63
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$"
AUTO: Final = "auto"
# A duration all of whose numbers are zero ("0s", "0m0.0s"); `[.]` avoids escaping in CEL.
ZERO_DURATION_PATTERN = r"^(0+([.]0+)?(ms|s|m|h|d|w))+$"
HORIZON_PATTERN = rf"^({AUTO}|{DURATION_PATTERN[1:-1]})$"
# Bounds that keep one policy from costing the shared operator more than its share:
# Prometheus answers at most 11,000 points per series; a step or an interval under a second
# (KEDA's pollingInterval floor too) multiplies queries, memory and ticks; a refit more often
# than a minute would keep the shared fitting worker busy for one policy; and no history
# outlives the 90-day retention foreseer's Prometheus is set up with.
MAX_POINTS = 11_000
MIN_STEP_SECONDS = 1.0
MIN_INTERVAL_SECONDS = 1.0
MIN_RETRAIN_SECONDS = 60.0
MAX_HISTORY_SECONDS = 90 * 86400.0
# No duration in a policy means more than a year; a longer one is a typo or an attack.
MAX_DURATION_SECONDS = 365 * 86400.0
# The model families of foreseer.predictors.models.MODELS (a test keeps them equal). Listed
# here so that the CRD refuses an unknown name at apply time, and so that the API does not
# import scikit-learn.
ModelName = Literal[
    "auto", "naive", "seasonal_naive", "ewma", "holt_winters", "fourier", "boosting"]


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One ``x-kubernetes-validations`` entry."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def cel_rules(*rules: dict[str, Any]) -> dict[str, Any]:
    """JSON-schema extra that puts CEL rules on a model or field in the generated CRD."""
    return {"x-kubernetes-validations": list(rules)}


def cel_seconds(expr: str) -> str:
    """CEL for the seconds in the duration string ``expr`` (the grammar of DURATION_PATTERN).

    Kubernetes CEL's ``duration()`` knows no days or weeks, so each part is read with the
    Kubernetes regex library (``find``, ``findAll``) and added up with its list library
    (``sum``); ``ms`` is tested before ``s``, which it ends with.
    """
    return (f"{expr}.findAll('[0-9]+([.][0-9]+)?(ms|s|m|h|d|w)').map(p, "
            "double(p.find('^[0-9]+([.][0-9]+)?')) * (p.endsWith('ms') ? 0.001 : "
            "p.endsWith('s') ? 1.0 : p.endsWith('m') ? 60.0 : p.endsWith('h') ? 3600.0 : "
            "p.endsWith('d') ? 86400.0 : 604800.0)).sum()")


def _positive_duration(value: str) -> str:
    # Checked against the CRD's own pattern (not only parse_duration, which also takes
    # spaces and non-ASCII digits) so that the models and the API server agree.
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(
            f"{value!r} is not a duration; use a number with a unit, like 30s, 5m, 1h30m or 7d")
    if parse_duration(value) <= 0:
        raise ValueError(f"{value!r} must be longer than 0s")
    if parse_duration(value) > MAX_DURATION_SECONDS:
        raise ValueError(f"{value!r} must not be longer than 365d")
    return value


def _positive_horizon(value: str) -> str:
    return value if value == AUTO else _positive_duration(value)


_NON_ZERO = cel(f"!self.matches('{ZERO_DURATION_PATTERN}')", "must be longer than 0s")
_AT_MOST_A_YEAR = cel(f"{cel_seconds('self')} <= {MAX_DURATION_SECONDS}",
                      "must not be longer than 365d")
_HORIZON_AT_MOST_A_YEAR = cel(f"self == '{AUTO}' || {_AT_MOST_A_YEAR['rule']}",
                              _AT_MOST_A_YEAR["message"])

Duration = Annotated[
    str,
    Field(max_length=MAX_DURATION_LENGTH,
          json_schema_extra={"pattern": DURATION_PATTERN,
                             **cel_rules(_NON_ZERO, _AT_MOST_A_YEAR)}),
    AfterValidator(_positive_duration),
]
"""A positive duration with a unit: 30s, 5m, 1h30m, 7d."""

Horizon = Annotated[
    str,
    Field(max_length=MAX_DURATION_LENGTH,
          json_schema_extra={"pattern": HORIZON_PATTERN,
                             **cel_rules(_NON_ZERO, _HORIZON_AT_MOST_A_YEAR)}),
    AfterValidator(_positive_horizon),
]
"""``auto`` or a positive duration."""


# JSON types, as the CRD checks them: "5" and true are not numbers, 1.5 is not an integer.
Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]


class Model(BaseModel):
    """camelCase on the wire; unknown fields are an error, so typos are caught.

    NaN and infinity are refused everywhere: a target or ratio of inf would pass
    a ``> 0`` check and then poison every computation downstream.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True,
        allow_inf_nan=False,
    )


class ScaleTargetRef(Model):
    """Any resource with a /scale subresource, in the policy's namespace (like the HPA's)."""

    api_version: str = Field(
        "apps/v1", max_length=253,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+"
                r"((alpha|beta)[0-9]+)?$",
        description="API version of the target, e.g. apps/v1.")
    kind: str = Field(
        "Deployment", max_length=NAME_LENGTH, pattern=r"^[A-Z][A-Za-z0-9]*$",
        description="Kind of the target, e.g. Deployment or StatefulSet.")
    name: str = Field(
        min_length=1, max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        description="Name of the target in the policy's namespace.")


class Mode(StrEnum):
    AUTO = "Auto"
    """Predictive once the forecast is trusted, reactive until then."""
    REACTIVE = "Reactive"
    """The HPA algorithm on the current metric values only."""
    OBSERVE = "Observe"
    """Compute and publish everything, never change replicas."""


class UtilizationSpec(Model):
    """A resource utilisation the replicas should run at, as the HPA's ``averageUtilization``.

    foreseer learns from its history how much load one replica serves at the target
    (`LearnedCapacity`), and always applies the HPA formula on it as a reactive floor.
    """

    query: str = Field(min_length=1, max_length=8192, pattern=r"\S",
                       description="PromQL returning one series: the mean utilisation of the "
                                   "ready replicas as a fraction (0.7 = 70 %), e.g. CPU usage "
                                   "over CPU requests.")
    target: Number = Field(gt=0, le=1, description="Utilisation to run at, a fraction in (0, 1].")
    replicas_query: str | None = Field(
        None, min_length=1, max_length=8192, pattern=r"\S",
        description="PromQL returning one series: the ready replicas the utilisation is the "
                    "mean over. Default: kube-state-metrics' ready replicas of a Deployment or "
                    "StatefulSet target; other kinds must set it to learn a capacity.")


class MetricSpec(Model):
    """One load metric: a PromQL query for the total load, and how to size it in replicas:
    the load one replica should carry (``targetPerReplica``), a utilisation target whose
    per-replica capacity is learned (``utilization``), or both (``targetPerReplica`` then
    serves while the learned capacity is not trusted)."""

    model_config = ConfigDict(json_schema_extra=cel_rules(
        cel("!has(self.targetPerReplica) || self.targetPerReplica > 0.0",
            "targetPerReplica must be greater than 0", ".targetPerReplica"),
        cel("has(self.targetPerReplica) || has(self.utilization)",
            "a metric needs targetPerReplica, utilization or both, to size its load in "
            "replicas", ".targetPerReplica")))

    name: str = Field(min_length=1, max_length=NAME_LENGTH, pattern=NAME_PATTERN,
                      description="A unique name for this metric within the policy "
                                  "(lower case, digits, '-' and '_').")
    query: str = Field(min_length=1, max_length=8192, pattern=r"\S",
                       description="PromQL returning one series: the total load.")
    target_per_replica: Number | None = Field(
        None, gt=0, description="Load one ready replica should carry, in the query's unit.")
    utilization: UtilizationSpec | None = Field(
        None, description="A utilisation target; the load per replica at it is learned.")

    @model_validator(mode="after")
    def _check(self) -> MetricSpec:
        if self.target_per_replica is None and self.utilization is None:
            raise ValueError(
                f"metric {self.name!r}: a metric needs targetPerReplica, utilization or both, "
                "to size its load in replicas")
        return self


def _has_all(*fields: str) -> str:
    return " && ".join(f"has(self.{f})" for f in fields)


class ForecastSpec(Model):
    """What to forecast and how; used in Auto and Observe modes."""

    model_config = ConfigDict(json_schema_extra=cel_rules(
        cel(f"!({_has_all('history', 'step')}) || "
            f"{cel_seconds('self.history')} <= {float(MAX_POINTS)} * {cel_seconds('self.step')}",
            f"history / step must be at most {MAX_POINTS} points (Prometheus' limit per series)",
            ".history"),
        cel(f"!has(self.step) || {cel_seconds('self.step')} >= {MIN_STEP_SECONDS}",
            "step must be at least 1s", ".step"),
        cel(f"!has(self.history) || {cel_seconds('self.history')} <= {MAX_HISTORY_SECONDS}",
            "history must be at most 90d", ".history"),
        cel(f"!has(self.retrainInterval) || "
            f"{cel_seconds('self.retrainInterval')} >= {MIN_RETRAIN_SECONDS}",
            "retrainInterval must be at least 1m", ".retrainInterval"),
        cel(f"!({_has_all('horizon', 'history')}) || self.horizon == '{AUTO}' || "
            f"{cel_seconds('self.horizon')} <= {cel_seconds('self.history')}",
            "horizon must not be longer than history", ".horizon"),
    ))

    horizon: Horizon = Field(
        AUTO, description="Lead time to forecast; auto = the measured time a new replica takes "
                          "to become ready, plus one interval.")
    history: Duration = Field("7d", description="How much history to fit on.")
    step: Duration = Field("1m", description="Resolution of the history.")
    quantile: Number = Field(0.9, gt=0, lt=1, description="Forecast quantile to provision for.")
    models: list[ModelName] = Field(
        [AUTO], min_length=1, max_length=len(get_args(ModelName)),
        description="[auto] selects the best model by backtest; or a list of model names to "
                    "select among.",
        json_schema_extra={"x-kubernetes-list-type": "set", **cel_rules(cel(
            f"!('{AUTO}' in self) || size(self) == 1",
            f"{AUTO} selects among all models and cannot be combined with model names"))})
    retrain_interval: Duration = Field("1h", description="How often to refit the model.")

    @property
    def candidates(self) -> tuple[str, ...] | None:
        """The model names to select among, or None to select among every model."""
        return None if self.models == [AUTO] else tuple(self.models)

    @field_validator("models")
    @classmethod
    def _check_models(cls, models: list[ModelName]) -> list[ModelName]:
        if len(set(models)) != len(models):
            raise ValueError(f"must not repeat a name: {models}")
        if AUTO in models and len(models) > 1:
            raise ValueError(f"{AUTO} selects among all models and cannot be combined with "
                             "model names")
        return models

    @model_validator(mode="after")
    def _check(self) -> ForecastSpec:
        history, step = parse_duration(self.history), parse_duration(self.step)
        if history <= step:
            raise ValueError(
                f"forecast.history ({self.history}) must be longer than forecast.step "
                f"({self.step})")
        if history > MAX_POINTS * step:
            raise ValueError(
                f"forecast.history / forecast.step must be at most {MAX_POINTS} points "
                f"(Prometheus' limit per series); {self.history} / {self.step} is "
                f"{history / step:.0f}")
        if step < MIN_STEP_SECONDS:
            raise ValueError(f"forecast.step ({self.step}) must be at least 1s")
        if history > MAX_HISTORY_SECONDS:
            raise ValueError(f"forecast.history ({self.history}) must be at most 90d")
        if parse_duration(self.retrain_interval) < MIN_RETRAIN_SECONDS:
            raise ValueError(
                f"forecast.retrainInterval ({self.retrain_interval}) must be at least 1m")
        if self.horizon != AUTO and parse_duration(self.horizon) > history:
            raise ValueError(
                f"forecast.horizon ({self.horizon}) must not be longer than forecast.history "
                f"({self.history})")
        return self


class PolicyType(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class ScalingPolicyRule(Model):
    """An HPA v2 HPAScalingPolicy: at most ``value`` Pods or Percent per ``periodSeconds``."""

    type: PolicyType = Field(description="Pods or Percent.")
    value: Int = Field(gt=0, le=MAX_INT32, description="Pods, or percent of current replicas.")
    period_seconds: Int = Field(gt=0, le=1800, description="Window the limit applies to.")


class ScalingRules(Model):
    """An HPA v2 HPAScalingRules; unset fields take the HPA's defaults for the direction."""

    stabilization_window_seconds: Int | None = Field(
        None, ge=0, le=3600,
        description="Past recommendations to consider; default 0 up, 300 down.")
    select_policy: SelectPolicy | None = Field(
        None, description="Max (default), Min or Disabled.")
    policies: list[ScalingPolicyRule] | None = Field(
        None, min_length=1,
        description="Rate limits; default 100% or 4 Pods per 15s up, 100% per 15s down.")


# The HPA v2 defaults (k8s.io/kubernetes pkg/apis/autoscaling/v2/defaults.go).
DEFAULT_SCALE_UP = ScalingRules(
    stabilization_window_seconds=0,
    select_policy=SelectPolicy.MAX,
    policies=[
        ScalingPolicyRule(type=PolicyType.PERCENT, value=100, period_seconds=15),
        ScalingPolicyRule(type=PolicyType.PODS, value=4, period_seconds=15),
    ],
)
DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_window_seconds=300,
    select_policy=SelectPolicy.MAX,
    policies=[ScalingPolicyRule(type=PolicyType.PERCENT, value=100, period_seconds=15)],
)


class Behavior(Model):
    """The HPA v2 behavior, with the same defaults and semantics, plus its tolerance."""

    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None
    tolerance: Number = Field(
        0.1, ge=0, lt=1, description="Ratio band around 1.0 where nothing moves.")

    def up(self) -> ScalingRules:
        """Scale-up rules with the HPA defaults filled in."""
        return _with_defaults(self.scale_up, DEFAULT_SCALE_UP)

    def down(self) -> ScalingRules:
        """Scale-down rules with the HPA defaults filled in."""
        return _with_defaults(self.scale_down, DEFAULT_SCALE_DOWN)


def _with_defaults(rules: ScalingRules | None, default: ScalingRules) -> ScalingRules:
    if rules is None:
        return default
    return ScalingRules(
        stabilization_window_seconds=(
            default.stabilization_window_seconds
            if rules.stabilization_window_seconds is None
            else rules.stabilization_window_seconds
        ),
        select_policy=rules.select_policy or default.select_policy,
        policies=default.policies if rules.policies is None else rules.policies,
    )


class MetricsOutagePolicy(StrEnum):
    FREEZE_SCALE_DOWN = "FreezeScaleDown"
    """No scale-down while any metric is missing; scale-up on healthy metrics still works."""
    HOLD = "Hold"
    """Nothing moves while any metric is missing."""


class CircuitBreakerSpec(Model):
    """Stops acting on a target after repeated failures, and backs off exponentially."""

    failure_threshold: Int = Field(
        3, ge=1, le=1000, description="Consecutive failures that open the breaker.")
    min_backoff: Duration = Field("30s", description="First open period.")
    max_backoff: Duration = Field("10m", description="Longest open period.")

    @model_validator(mode="after")
    def _check(self) -> CircuitBreakerSpec:
        if parse_duration(self.min_backoff) > parse_duration(self.max_backoff):
            raise ValueError(
                f"circuitBreaker.minBackoff ({self.min_backoff}) must not exceed "
                f"circuitBreaker.maxBackoff ({self.max_backoff})")
        return self


class ForecastTrustSpec(Model):
    """When a forecast is good enough to act on."""

    max_error_ratio: Number = Field(
        1.0, gt=0,
        description="Forecast error relative to the reactive/naive baseline (MASE) above which "
                    "predictions are ignored.")


class GuardsSpec(Model):
    """Safety guards applied after the HPA behavior."""

    metrics_outage: MetricsOutagePolicy = Field(
        MetricsOutagePolicy.FREEZE_SCALE_DOWN,
        description="FreezeScaleDown: never scale down while a metric is missing; "
                    "Hold: nothing moves.")
    circuit_breaker: CircuitBreakerSpec = CircuitBreakerSpec()
    forecast_trust: ForecastTrustSpec = ForecastTrustSpec()


class ScalingPolicySpec(Model):
    """Scale one target from forecasts of Prometheus load metrics."""

    model_config = ConfigDict(json_schema_extra=cel_rules(
        cel("!has(self.minReplicas) || !has(self.maxReplicas) || "
            "self.minReplicas <= self.maxReplicas",
            "minReplicas must not exceed maxReplicas", ".minReplicas"),
        cel("has(self.metrics) && size(self.metrics) > 0", "at least one metric is required",
            ".metrics"),
        cel("!has(self.metrics) || "
            "self.metrics.all(m, self.metrics.exists_one(n, n.name == m.name))",
            "metric names must be unique", ".metrics"),
        cel(f"!has(self.interval) || {cel_seconds('self.interval')} >= {MIN_INTERVAL_SECONDS}",
            "interval must be at least 1s", ".interval"),
    ))

    scale_target_ref: ScaleTargetRef = Field(description="The resource to scale.")
    min_replicas: Int = Field(1, ge=0, le=MAX_INT32, description="Lower bound on replicas.")
    max_replicas: Int = Field(ge=1, le=MAX_INT32, description="Upper bound on replicas.")
    mode: Mode = Field(Mode.AUTO, description="Auto, Reactive or Observe.")
    metrics: list[MetricSpec] = Field(
        min_length=1, max_length=MAX_METRICS,
        description="Load metrics; the desired count is the maximum over them.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})
    forecast: ForecastSpec = ForecastSpec()
    behavior: Behavior = Behavior()
    guards: GuardsSpec = GuardsSpec()
    interval: Duration = Field("30s", description="How often the policy is evaluated.")

    @model_validator(mode="after")
    def _check(self) -> ScalingPolicySpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) must not exceed maxReplicas "
                f"({self.max_replicas})")
        if parse_duration(self.interval) < MIN_INTERVAL_SECONDS:
            raise ValueError(f"interval ({self.interval}) must be at least 1s")
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metrics names must be unique; repeated: {', '.join(dupes)}")
        return self
