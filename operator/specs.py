"""The ScalingPolicy API (foreseer.dev/v1alpha1): the pydantic models are the source of truth.

`crds/` is generated from these models (``make crds``); a test fails on drift.
Field names are camelCase on the wire, snake_case in Python.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from foreseer.operator.durations import DURATION_PATTERN, parse_duration

GROUP = "foreseer.dev"
VERSION = "v1alpha1"
KIND = "ScalingPolicy"
PLURAL = "scalingpolicies"

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, examples=["30s", "5m", "7d"])]


class Model(BaseModel):
    """camelCase on the wire; unknown fields are an error, so typos are caught."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class ScaleTargetRef(Model):
    """Any resource with a /scale subresource."""

    api_version: str = Field("apps/v1", description="API version of the target, e.g. apps/v1.")
    kind: str = Field("Deployment", description="Kind of the target, e.g. Deployment.")
    name: str = Field(min_length=1, description="Name of the target in the policy's namespace.")


class Mode(StrEnum):
    AUTO = "Auto"
    REACTIVE = "Reactive"
    OBSERVE = "Observe"


class MetricSpec(Model):
    """One load metric: a PromQL query for the total load and the load one replica should carry."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$",
                      description="A unique name for this metric within the policy.")
    query: str = Field(min_length=1, description="PromQL returning one series: the total load.")
    target_per_replica: float = Field(gt=0, description="Load one ready replica should carry.")


class ForecastSpec(Model):
    horizon: Literal["auto"] | Duration = Field(
        "auto", description="Lead time to forecast; auto = measured replica readiness + interval.")
    history: Duration = Field("7d", description="How much history to fit on.")
    step: Duration = Field("1m", description="Resolution of the history.")
    quantile: float = Field(0.9, gt=0, lt=1, description="Forecast quantile to provision for.")
    models: Literal["auto"] | list[str] = Field(
        "auto", description="auto, or the list of model names to choose from.")
    retrain_interval: Duration = Field("1h", description="How often to refit the model.")


class PolicyType(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class ScalingPolicyRule(Model):
    """An HPA v2 HPAScalingPolicy."""

    type: PolicyType
    value: int = Field(gt=0)
    period_seconds: int = Field(gt=0, le=1800)


class ScalingRules(Model):
    """An HPA v2 HPAScalingRules; None fields take the HPA's defaults for the direction."""

    stabilization_window_seconds: int | None = Field(None, ge=0, le=3600)
    select_policy: SelectPolicy | None = None
    policies: list[ScalingPolicyRule] | None = None


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
    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None
    tolerance: float = Field(0.1, ge=0, lt=1, description="Ratio band around 1.0 where nothing moves.")

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
    HOLD = "Hold"


class CircuitBreakerSpec(Model):
    failure_threshold: int = Field(3, ge=1, description="Consecutive failures that open the breaker.")
    min_backoff: Duration = Field("30s", description="First open period.")
    max_backoff: Duration = Field("10m", description="Longest open period.")


class ForecastTrustSpec(Model):
    max_error_ratio: float = Field(
        1.0, gt=0, description="Forecast MASE vs the naive baseline above which predictions are ignored.")


class GuardsSpec(Model):
    metrics_outage: MetricsOutagePolicy = MetricsOutagePolicy.FREEZE_SCALE_DOWN
    circuit_breaker: CircuitBreakerSpec = CircuitBreakerSpec()
    forecast_trust: ForecastTrustSpec = ForecastTrustSpec()


class ScalingPolicySpec(Model):
    scale_target_ref: ScaleTargetRef
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(ge=1)
    mode: Mode = Mode.AUTO
    metrics: list[MetricSpec] = Field(min_length=1)
    forecast: ForecastSpec = ForecastSpec()
    behavior: Behavior = Behavior()
    guards: GuardsSpec = GuardsSpec()
    interval: Duration = "30s"

    @model_validator(mode="after")
    def _check(self) -> ScalingPolicySpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) must not exceed maxReplicas ({self.max_replicas})")
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metrics names must be unique; repeated: {', '.join(dupes)}")
        return self

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("interval must be longer than 0s")
        return value
