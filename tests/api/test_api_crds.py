"""The generated ScalingPolicy CRD: committed copies in sync with the models, acceptable to
the API server (apiextensions schema and structural-schema rules), and validating policies
exactly as the models do: examples accepted, invalid specs refused, every CEL rule mirrored."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from spec_cases import BASE, DELETE, INVALID, RPS, with_

from foreseer import cli
from foreseer.lab.crd_validation import (
    api_server_errors,
    as_json_schema,
    cel_errors,
    cel_rules,
    cel_value,
    openapi_schema,
    spec_schema,
)
from foreseer.operator import crds
from foreseer.operator.durations import parse_duration
from foreseer.operator.specs import GROUP, KIND, VERSION, ScalingPolicySpec, cel_seconds

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
# CEL validation rules are GA from 1.29; older servers are not supported.
KUBERNETES_VERSIONS = sorted({v for v in kubernetes_validate.utils.all_versions()
                              if tuple(map(int, v.split(".")[:2])) >= (1, 29)})


def test_the_committed_crds_match_the_models() -> None:
    for relative in crds.CRD_PATHS:
        committed = (ROOT / relative).read_text()
        assert committed == crds.render(), f"{relative} is stale: run `make crds`"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_crd_is_a_valid_apiextensions_object(version: str) -> None:
    kubernetes_validate.validate(crds.crd(), version, strict=True)


def test_the_crd_names_the_resource_as_the_issue_says() -> None:
    spec = crds.crd()["spec"]
    assert (spec["group"], spec["scope"]) == (GROUP, "Namespaced")
    assert spec["names"]["kind"] == KIND
    assert spec["names"]["shortNames"] == ["sp"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert columns == ["Target", "Mode", "Min", "Max", "Current", "Desired", "Forecast", "Age"]


def _nodes(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from _nodes(node["additionalProperties"], f"{path}.*")


def test_the_schema_is_structural() -> None:
    # https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema
    for path, node in _nodes(openapi_schema()):
        assert "type" in node, f"{path}: every node needs a type"
        assert not {"$ref", "anyOf", "oneOf", "allOf", "not"} & set(node), path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("uniqueItems") is not True, f"{path}: use x-kubernetes-list-type: set"
        for key in node.get("x-kubernetes-list-map-keys", []):
            item = node["items"]
            assert key in item.get("required", []) or "default" in item["properties"][key], path


def test_every_spec_field_is_described_for_kubectl_explain() -> None:
    for path, node in _nodes(spec_schema(), "spec"):
        assert node.get("description") or path.endswith("[]"), path


def test_every_default_is_valid_for_its_field() -> None:
    for path, node in _nodes(openapi_schema()):
        if "default" in node:
            value = crds.apply_defaults(node["default"], node)
            errors = list(jsonschema.Draft4Validator(as_json_schema(node)).iter_errors(value))
            assert not errors, (path, errors)
            assert not cel_errors(value, node), path


def test_every_cel_rule_compiles() -> None:
    rules = list(cel_rules(openapi_schema()))
    assert len(rules) >= 5
    env = celpy.Environment()
    for rule in rules:
        env.compile(rule)


def _examples() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{path.name}#{i}", doc) for path in EXAMPLES
            for i, doc in enumerate(yaml.safe_load_all(path.read_text())) if doc]


def test_there_are_examples_of_every_mode() -> None:
    modes = {doc["spec"].get("mode", "Auto") for _, doc in _examples()}
    assert modes == {"Auto", "Reactive", "Observe"}


@pytest.mark.parametrize(("name", "policy"), _examples(), ids=[n for n, _ in _examples()])
def test_every_example_is_accepted_by_the_crd_and_the_models(
    name: str, policy: dict[str, Any]
) -> None:
    assert policy["apiVersion"] == f"{GROUP}/{VERSION}"
    assert policy["kind"] == KIND
    assert policy["metadata"]["name"]
    assert api_server_errors(policy["spec"]) == []
    ScalingPolicySpec.model_validate(policy["spec"])


MINIMAL = {"scaleTargetRef": {"name": "web"}, "maxReplicas": 1, "metrics": [RPS]}


@pytest.mark.parametrize("spec", [MINIMAL] + [p["spec"] for _, p in _examples()],
                         ids=["minimal"] + [n for n, _ in _examples()])
def test_the_api_server_fills_in_the_same_defaults_as_the_models(spec: dict[str, Any]) -> None:
    stored = crds.apply_defaults(spec, spec_schema())
    parsed = ScalingPolicySpec.model_validate(spec)
    assert parsed.model_dump(by_alias=True, exclude_none=True, mode="json") == stored


@pytest.mark.parametrize(("case", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_the_crd_rejects_every_invalid_spec_naming_the_field(
    case: str, spec: dict[str, Any], field: str
) -> None:
    errors = api_server_errors(spec)
    assert any(field in error for error in errors), (case, errors)


# Each CEL rule alone (the OpenAPI schema is bypassed) refuses what its model check refuses.
CEL_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("min above max", with_("minReplicas", 11), "minReplicas must not exceed maxReplicas"),
    ("empty metrics", with_("metrics", []), "at least one metric is required"),
    ("duplicate metric names", with_("metrics", [RPS, {**RPS, "query": "sum(up)"}]),
     "metric names must be unique"),
    ("zero target", with_("metrics.0.targetPerReplica", 0), "targetPerReplica must be greater"),
    ("negative target", with_("metrics.0.targetPerReplica", -0.5),
     "targetPerReplica must be greater"),
    ("a metric with neither sizing", with_("metrics.0.targetPerReplica", DELETE),
     "a metric needs targetPerReplica, utilization or both"),
    ("zero interval", with_("interval", "0s"), "must be longer than 0s"),
    ("zero interval with several parts", with_("interval", "0h0m0.0s"), "must be longer than 0s"),
    ("zero history", with_("forecast.history", "0d"), "must be longer than 0s"),
    ("zero step", with_("forecast.step", "0ms"), "must be longer than 0s"),
    ("zero horizon", with_("forecast.horizon", "0m"), "must be longer than 0s"),
    ("zero retrain interval", with_("forecast.retrainInterval", "00h"), "must be longer than 0s"),
    ("zero min backoff", with_("guards.circuitBreaker.minBackoff", "0s"),
     "must be longer than 0s"),
    ("zero max backoff", with_("guards.circuitBreaker.maxBackoff", "0.0m"),
     "must be longer than 0s"),
    ("auto with a model", with_("forecast.models", ["holt_winters", "auto"]),
     "auto selects among all models"),
    # The hostile specs of issue 12: one policy must not cost the shared operator its memory
    # (1d at 1ms is 86.4 million points a metric) or its loop (an interval of 1ms).
    ("a day at one-millisecond steps", with_("forecast", {"history": "1d", "step": "1ms"}),
     "history / step must be at most 11000 points"),
    ("a day at one-second steps", with_("forecast", {"history": "1d", "step": "1s"}),
     "history / step must be at most 11000 points"),
    ("a step under a second", with_("forecast", {"history": "1h", "step": "500ms"}),
     "step must be at least 1s"),
    ("a history beyond 90 days", with_("forecast", {"history": "91d", "step": "1h"}),
     "history must be at most 90d"),
    ("an interval of a millisecond", with_("interval", "1ms"), "interval must be at least 1s"),
    ("a retrain every second", with_("forecast.retrainInterval", "1s"),
     "retrainInterval must be at least 1m"),
    ("a horizon past the history", with_("forecast", {"horizon": "2d", "history": "1d"}),
     "horizon must not be longer than history"),
    ("an absurd number of weeks",
     with_("guards.circuitBreaker.maxBackoff", "9999999999999999999999999w"),
     "must not be longer than 365d"),
]


@pytest.mark.parametrize(("case", "spec", "message"), CEL_CASES, ids=[c[0] for c in CEL_CASES])
def test_each_cel_rule_rejects_what_the_models_reject(
    case: str, spec: dict[str, Any], message: str
) -> None:
    defaulted = crds.apply_defaults(spec, spec_schema())
    assert any(message in error for error in cel_errors(defaulted)), case
    with pytest.raises(ValidationError):
        ScalingPolicySpec.model_validate(spec)


def test_every_cel_rule_has_a_case() -> None:
    messages = {e["message"] for _, node in _nodes(spec_schema())
                for e in node.get("x-kubernetes-validations", [])}
    covered = {m for m in messages if any(expected in m for _, _, expected in CEL_CASES)}
    assert covered == messages


@pytest.mark.parametrize("duration", ["1s", "0.5s", "1ms", "0h1m", "10m0s", "1.0d", "52w"])
def test_cel_accepts_positive_durations_up_to_a_year(duration: str) -> None:
    assert api_server_errors(with_("guards.circuitBreaker.minBackoff", duration)) == []


@pytest.mark.parametrize(("duration", "seconds"), [
    ("7d", 604800.0), ("1h30m", 5400.0), ("300ms", 0.3), ("1.5s", 1.5), ("2w1d", 1296000.0),
    ("1m", 60.0)])
def test_the_cel_reading_of_a_duration_agrees_with_the_operators(
    duration: str, seconds: float
) -> None:
    assert parse_duration(duration) == pytest.approx(seconds)
    assert float(cel_value(cel_seconds("self"), duration)) == pytest.approx(seconds)


# Values valid and invalid for each field; the models and the CRD must agree on every mix.
_FIELDS = {
    "minReplicas": st.sampled_from([DELETE, 0, 1, 3, 50, -1, 2**31, 1.5, "1"]),
    "maxReplicas": st.sampled_from([1, 3, 10, 2**31 - 1, 0, -3, 2**31, None]),
    "mode": st.sampled_from([DELETE, "Auto", "Reactive", "Observe", "auto", ""]),
    "interval": st.sampled_from(["30s", "1m30s", "0.5s", "0s", "30", "", " 30s", "1y", "٣s"]),
    "metrics.0.targetPerReplica": st.sampled_from([1, 0.01, 1e9, 0, -1, "5", True]),
    "metrics.0.name": st.sampled_from(["rps", "a", "a-b_c", "A", "-a", "", "a" * 64]),
    "forecast.horizon": st.sampled_from(["auto", "5m", "0s", "Auto", "5"]),
    "forecast.quantile": st.sampled_from([0.5, 0.9, 0.999, 0, 1, 1.1, -0.1]),
    "forecast.models": st.sampled_from([["auto"], ["naive"], ["ewma", "fourier"], [],
                                        ["auto", "ewma"], ["ewma", "ewma"], ["x"], "auto"]),
    "behavior.tolerance": st.sampled_from([0, 0.1, 0.99, 1, -0.01]),
    "behavior.scaleDown.stabilizationWindowSeconds": st.sampled_from([0, 300, 3600, 3601, -1,
                                                                      None]),
    "behavior.scaleUp.selectPolicy": st.sampled_from(["Max", "Min", "Disabled", "max", None]),
    "guards.metricsOutage": st.sampled_from(["FreezeScaleDown", "Hold", "Freeze"]),
    "guards.circuitBreaker.failureThreshold": st.sampled_from([1, 3, 1000, 0, 1001]),
    "guards.forecastTrust.maxErrorRatio": st.sampled_from([0.5, 1, 10, 0, -1]),
}


@st.composite
def _mixed_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec = BASE
    for path, values in _FIELDS.items():
        if draw(st.booleans()):
            spec = with_(path, draw(values), spec)
    return spec


@settings(max_examples=300, deadline=None)
@given(_mixed_specs())
def test_the_crd_and_the_models_accept_the_same_specs(spec: dict[str, Any]) -> None:
    try:
        ScalingPolicySpec.model_validate(spec)
        models_accept = True
    except ValidationError:
        models_accept = False
    assert (api_server_errors(spec) == []) == models_accept, spec


def test_structural_refuses_a_union_the_api_server_cannot_express() -> None:
    class Loose(BaseModel):
        size: int | str

    with pytest.raises(crds.NotStructuralError, match="size"):
        crds.model_schema(Loose)


def test_structural_turns_an_optional_field_into_a_nullable_one() -> None:
    class Optional(BaseModel):
        count: int | None = None
        unit: Literal["s"] | None = None

    properties = crds.model_schema(Optional)["properties"]
    assert properties["count"] == {"type": "integer", "nullable": True}
    # OpenAPI 3.0: `nullable` widens the type, not the enum, so null is listed in the enum.
    assert properties["unit"] == {"type": "string", "nullable": True, "enum": ["s", None]}


def test_foreseer_crds_is_this_module() -> None:
    assert cli.COMMANDS["crds"][0] == crds.__name__


def test_the_crds_command_prints_the_crd() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert crds.main([]) == 0
    assert out.getvalue() == crds.render()


def test_the_crds_command_writes_both_copies(tmp_path: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert crds.main(["--write", "--root", str(tmp_path)]) == 0
    for relative in crds.CRD_PATHS:
        assert (tmp_path / relative).read_text() == crds.render()
