"""Chart metadata, values.yaml and values.schema.json: versions agree, every key is documented,
and the schema refuses bad values (checked with jsonschema and, end to end, by the real helm)."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import jsonschema
import pytest
import yaml
from chart.rendering import CHART, EVERYTHING_ON, ROOT, VALUE_SETS, HelmError, lint, render


def chart_yaml() -> dict[str, Any]:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


def values_schema() -> jsonschema.Draft7Validator:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_the_app_version_follows_the_package_version() -> None:
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart_yaml()["appVersion"] == package
    assert chart_yaml()["version"] == package


def test_every_key_in_values_yaml_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        if not re.match(r"^\s*[A-Za-z_][\w.-]*:", line):
            continue  # not a key (a comment, a list item or a continuation)
        above = lines[number - 1].strip() if number else ""
        if not above.startswith("#") and "#" not in line:
            undocumented.append(f"line {number + 1}: {line.strip()}")
    assert undocumented == []


def test_the_default_values_satisfy_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert list(values_schema().iter_errors(values)) == []


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_example_value_sets_satisfy_the_schema(name: str) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    merged = _merge(values, VALUE_SETS[name])
    assert list(values_schema().iter_errors(merged)) == []


BAD_VALUES: dict[str, dict[str, Any]] = {
    "a latest image tag": {"image": {"tag": "latest"}},
    "a Prometheus URL without a scheme": {"prometheus": {"url": "prometheus:9090"}},
    "a negative replica count": {"replicaCount": -1},
    "a typo in a key": {"prometeus": {"url": "http://p:9090"}},
    "a wildcard scale API group": {"rbac": {"scaleApiGroups": ["*"]}},
    "no scale API group at all": {"rbac": {"scaleApiGroups": []}},
    "a namespace glob": {"watchNamespaces": ["team-*"]},
    "bearer token and basic auth together": {"prometheus": {
        "bearerToken": {"secretName": "t"},
        "basicAuth": {"username": "u", "passwordSecretName": "p"}}},
    "basic auth without a password secret": {"prometheus": {"basicAuth": {"username": "u"}}},
    "a CA from both a ConfigMap and a Secret": {"prometheus": {
        "tlsCA": {"configMapName": "a", "secretName": "b"}}},
    "an insecure flag with a CA": {"prometheus": {
        "insecureSkipVerify": True, "tlsCA": {"configMapName": "ca"}}},
    "an unknown log level": {"logging": {"level": "TRACE"}},
    "a privileged metrics port": {"metricsPort": 80},
    "no memory limit": {"resources": {"limits": {"memory": None}}},
    "root as the user": {"runAsUser": 0},
    "an existing service account without a name": {"serviceAccount": {"create": False}},
    "zero fitting workers": {"fitting": {"workers": 0}},
    "a malformed scrape interval": {"serviceMonitor": {"interval": "30 seconds"}},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_the_schema_rejects(case: str) -> None:
    values = _merge(yaml.safe_load((CHART / "values.yaml").read_text()), BAD_VALUES[case])
    assert list(values_schema().iter_errors(values)) != []


@pytest.mark.parametrize("case", ["a latest image tag", "a wildcard scale API group",
                                  "bearer token and basic auth together", "no memory limit"])
def test_helm_itself_refuses_values_the_schema_rejects(case: str) -> None:
    with pytest.raises(HelmError, match="schema"):
        render(BAD_VALUES[case])


@pytest.mark.parametrize(("values", "message"), [
    ({"replicaCount": 2, "peering": {"enabled": False}}, "needs peering"),
    ({"replicaCount": 2, "podDisruptionBudget": {"minAvailable": 2}}, "must be below replicaCount"),
])
def test_the_chart_refuses_combinations_that_would_misbehave(
        values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render(values)


@pytest.mark.parametrize("values", [{}, EVERYTHING_ON], ids=["defaults", "everything-on"])
def test_helm_lint_passes_in_strict_mode(values: dict[str, Any]) -> None:
    assert "0 chart(s) failed" in lint(values)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of user values over values.yaml: maps merge, null deletes a key,
    anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def test_the_chart_readme_lists_every_top_level_value() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [key for key in values if f"`{key}`" not in readme]
    assert missing == []
