"""Policies against a real API server: every example is accepted and picked up by the
operator, and every invalid policy of the CRD tests' table is refused, naming the field."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from api.spec_cases import BASE, INVALID
from chart.rendering import ROOT
from clusters import Cluster, eventually
from stacks import Launch

from foreseer.operator.specs import GROUP, KIND, VERSION

pytestmark = pytest.mark.e2e

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def example_policies(namespace: str) -> list[dict[str, Any]]:
    """Every policy in examples/, moved into the test namespace under a unique name."""
    policies = []
    for path in EXAMPLES:
        for index, doc in enumerate(d for d in yaml.safe_load_all(path.read_text()) if d):
            doc["metadata"] = {"name": f"example-{path.stem}-{index}", "namespace": namespace}
            policies.append(doc)
    return policies


def test_every_example_is_accepted_and_reported_on_by_the_operator(launch: Launch) -> None:
    stack = launch()  # no workload: the examples' targets do not exist here
    namespace, cluster = stack.namespace, stack.cluster
    policies = example_policies(namespace)
    assert policies
    for manifest in policies:
        cluster.apply(manifest)  # raises with the API server's message if refused
    for manifest in policies:
        name = manifest["metadata"]["name"]
        ready = eventually(lambda name=name: cluster.condition(namespace, name, "Ready"),
                           90, f"the operator to set Ready on {name}")
        policy = cluster.policy(namespace, name)
        assert policy is not None
        assert ready["observedGeneration"] == policy["metadata"]["generation"]
        # The examples' targets do not exist here; the operator must say so, not be refused
        # by its own RBAC while finding out.
        assert "forbidden" not in ready.get("message", "").lower(), ready


def manifest(namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": "candidate", "namespace": namespace}, "spec": spec}


# The API server alone validates; no operator is needed (the namespace's policies go with it).


def test_the_valid_base_of_the_invalid_cases_is_accepted(cluster: Cluster,
                                                         namespace: str) -> None:
    cluster.apply(manifest(namespace, BASE))
    assert cluster.policy(namespace, "candidate") is not None


@pytest.mark.parametrize(("case", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_the_api_server_refuses_an_invalid_policy_naming_the_field(
        cluster: Cluster, namespace: str, case: str, spec: dict[str, Any], field: str) -> None:
    done = cluster.apply(manifest(namespace, spec), check=False)
    assert done.returncode != 0, f"{case}: accepted"
    assert field in done.stderr, (case, done.stderr)
    assert cluster.policy(namespace, "candidate") is None
