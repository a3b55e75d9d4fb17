"""The ScalingPolicy spec models: defaults, HPA behavior defaults, and invalid specs
rejected with a message that names the offending field."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from pydantic import ValidationError
from spec_cases import BASE, INVALID, INVALID_MODEL_ONLY, with_

from foreseer.operator.specs import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    MetricsOutagePolicy,
    Mode,
    ModelName,
    PolicyType,
    ScalingPolicyRule,
    ScalingPolicySpec,
    ScalingRules,
    SelectPolicy,
)


def test_a_minimal_spec_gets_the_documented_defaults() -> None:
    spec = ScalingPolicySpec.model_validate(BASE)
    assert spec.min_replicas == 1
    assert spec.mode is Mode.AUTO
    assert spec.interval == "30s"
    forecast = spec.forecast
    assert (forecast.horizon, forecast.history, forecast.step) == ("auto", "7d", "1m")
    assert spec.forecast.quantile == 0.9
    assert spec.forecast.models == ["auto"]
    assert spec.behavior.tolerance == 0.1
    assert spec.guards.metrics_outage is MetricsOutagePolicy.FREEZE_SCALE_DOWN
    assert spec.guards.circuit_breaker.failure_threshold == 3
    assert spec.guards.forecast_trust.max_error_ratio == 1.0


def test_a_spec_round_trips_through_its_wire_form() -> None:
    spec = ScalingPolicySpec.model_validate(with_("forecast.horizon", "5m"))
    wire = spec.model_dump(by_alias=True, mode="json")
    assert wire["scaleTargetRef"] == BASE["scaleTargetRef"]
    assert wire["forecast"]["retrainInterval"] == "1h"
    assert ScalingPolicySpec.model_validate(wire) == spec


@pytest.mark.parametrize(("case", "spec", "field"), INVALID + INVALID_MODEL_ONLY,
                         ids=[c[0] for c in INVALID + INVALID_MODEL_ONLY])
def test_an_invalid_spec_is_rejected_naming_the_field(
    case: str, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as error:
        ScalingPolicySpec.model_validate(spec)
    # Where the error is and what it says; pydantic's own "[type=...]" suffix is left out,
    # so that a field called `type` cannot match by accident.
    reports = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.value.errors()]
    assert any(field in report for report in reports), (case, reports)


def test_unset_behavior_takes_the_hpa_defaults() -> None:
    behavior = Behavior()
    assert behavior.up() == DEFAULT_SCALE_UP
    assert behavior.down() == DEFAULT_SCALE_DOWN
    assert behavior.up().stabilization_window_seconds == 0
    assert behavior.down().stabilization_window_seconds == 300
    assert {(p.type, p.value, p.period_seconds) for p in behavior.up().policies or []} == {
        (PolicyType.PERCENT, 100, 15), (PolicyType.PODS, 4, 15)}
    assert [(p.type, p.value, p.period_seconds) for p in behavior.down().policies or []] == [
        (PolicyType.PERCENT, 100, 15)]


def test_a_partial_behavior_keeps_what_is_set_and_defaults_the_rest() -> None:
    behavior = Behavior.model_validate({
        "scaleUp": {"stabilizationWindowSeconds": 60},
        "scaleDown": {"selectPolicy": "Disabled",
                      "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
    })
    up, down = behavior.up(), behavior.down()
    assert up.stabilization_window_seconds == 60
    assert up.select_policy is SelectPolicy.MAX
    assert up.policies == DEFAULT_SCALE_UP.policies
    assert down.stabilization_window_seconds == 300
    assert down.select_policy is SelectPolicy.DISABLED
    assert down.policies == [ScalingPolicyRule(type=PolicyType.PODS, value=1, period_seconds=60)]


def test_an_explicit_zero_stabilization_window_is_not_replaced_by_the_default() -> None:
    down = Behavior(scale_down=ScalingRules(stabilization_window_seconds=0)).down()
    assert down.stabilization_window_seconds == 0


def test_the_models_are_frozen() -> None:
    spec = ScalingPolicySpec.model_validate(BASE)
    with pytest.raises(ValidationError):
        spec.max_replicas = 3  # type: ignore[misc]


@pytest.mark.parametrize("duration", ["1h30m", "90s", "1.5h", "500ms", "2w", "7d"])
def test_durations_with_any_unit_are_accepted(duration: str) -> None:
    spec = ScalingPolicySpec.model_validate(
        with_("guards.circuitBreaker", {"minBackoff": duration, "maxBackoff": duration}))
    assert spec.guards.circuit_breaker.min_backoff == duration


def test_auto_models_mean_every_candidate_and_a_list_means_those() -> None:
    assert ScalingPolicySpec.model_validate(BASE).forecast.candidates is None
    listed = ScalingPolicySpec.model_validate(with_("forecast.models", ["naive", "fourier"]))
    assert listed.forecast.candidates == ("naive", "fourier")


def test_the_model_names_are_those_of_the_predictor_registry() -> None:
    from foreseer.predictors.models import MODELS

    assert set(get_args(ModelName)) == {"auto", *MODELS}
