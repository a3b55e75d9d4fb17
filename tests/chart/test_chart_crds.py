"""The CRDs the chart installs: every policy in examples/ is one the API server accepts
against the chart's own copy of the ScalingPolicy CRD (A's tests keep that copy in sync with
the models; this checks what `helm install` actually ships)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from chart.rendering import CHART, ROOT, chart_crds

from foreseer.lab.crd_validation import as_json_schema, cel_errors
from foreseer.operator.crds import apply_defaults

CRD_FILE = CHART / "crds" / "scalingpolicies.foreseer.dev.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def scaling_policy_crd() -> dict[str, Any]:
    if not CRD_FILE.exists():
        pytest.skip(f"{CRD_FILE.relative_to(ROOT)} is not generated yet: run `make crds`")
    return yaml.safe_load(CRD_FILE.read_text())


def admission_errors(policy: dict[str, Any], crd: dict[str, Any]) -> list[str]:
    """What the API server would say about this object: apiVersion/kind, schema, then CEL."""
    group, (version,) = crd["spec"]["group"], crd["spec"]["versions"]
    if policy.get("apiVersion") != f"{group}/{version['name']}":
        served = crd["metadata"]["name"]
        return [f"apiVersion {policy.get('apiVersion')!r} is not served by {served}"]
    if policy.get("kind") != crd["spec"]["names"]["kind"]:
        return [f"kind {policy.get('kind')!r} is not {crd['spec']['names']['kind']}"]
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec = apply_defaults(copy.deepcopy(policy["spec"]), spec_schema)
    validator = jsonschema.Draft4Validator(as_json_schema(spec_schema))
    errors = [f"spec.{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(spec)]
    return errors or cel_errors(spec, spec_schema)


def test_the_chart_ships_the_scaling_policy_and_kopf_peering_crds() -> None:
    names = {crd["metadata"]["name"] for crd in chart_crds()}
    assert names >= {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    if CRD_FILE.exists():
        assert "scalingpolicies.foreseer.dev" in names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_accepted_by_the_crd_the_chart_installs(path: Path) -> None:
    crd = scaling_policy_crd()
    policies = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert policies, f"{path.name} holds no object"
    for policy in policies:
        assert admission_errors(policy, crd) == []


def test_the_charts_crd_refuses_a_policy_the_api_server_would_refuse() -> None:
    crd = scaling_policy_crd()
    (policy, *_) = yaml.safe_load_all(EXAMPLES[0].read_text())
    bad = copy.deepcopy(policy)
    bad["spec"]["minReplicas"], bad["spec"]["maxReplicas"] = 5, 2
    assert any("minReplicas" in error for error in admission_errors(bad, crd))
    bad = copy.deepcopy(policy)
    bad["spec"]["metrics"][0]["targetPerReplica"] = "fifty"
    assert admission_errors(bad, crd) != []
