"""The rendered RBAC grants exactly the least privilege the operator needs, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from chart.rendering import NAMESPACE, RELEASE, VALUE_SETS, render

# (apiGroup, resource) -> verbs: the whole allowance. `*/scale` is the only wildcard, and only
# in the API groups the values list.
ALLOWED: dict[tuple[str, str], set[str]] = {
    ("foreseer.dev", "scalingpolicies"): {"get", "list", "watch", "patch"},
    ("foreseer.dev", "scalingpolicies/status"): {"get", "patch"},
    ("apps", "*/scale"): {"get", "patch"},
    ("apps", "deployments"): {"get", "list", "watch"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "events"): {"create"},
    ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"},
    ("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"},
}


def grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def all_rules(values: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = render(values)
    return [rule for kind in ("ClusterRole", "Role") for role in manifests.of_kind(kind)
            for rule in role["rules"]]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rbac_grants_nothing_beyond_the_allowance(name: str) -> None:
    granted = grants(all_rules(VALUE_SETS[name]))
    extra = {key: verbs - ALLOWED.get(key, set()) for key, verbs in granted.items()}
    assert {key: verbs for key, verbs in extra.items() if verbs} == {}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rbac_has_no_wildcard_verbs_groups_or_resources_except_scale(name: str) -> None:
    for rule in all_rules(VALUE_SETS[name]):
        assert "*" not in rule["verbs"]
        assert "*" not in rule["apiGroups"]
        assert all(r == "*/scale" or "*" not in r for r in rule["resources"])
        assert "nonResourceURLs" not in rule


def test_the_operator_gets_everything_its_loop_needs() -> None:
    granted = grants(all_rules({}))
    needed = {key: verbs for key, verbs in ALLOWED.items() if key[1] != "kopfpeerings"}
    assert granted == needed


def test_scale_is_granted_only_in_the_api_groups_from_values() -> None:
    rules = all_rules({"rbac": {"scaleApiGroups": ["apps", "argoproj.io"]}})
    (scale,) = [rule for rule in rules if "*/scale" in rule["resources"]]
    assert sorted(scale["apiGroups"]) == ["apps", "argoproj.io"]
    assert scale["verbs"] == ["get", "patch"]


def test_the_operator_may_write_only_its_own_peering_object() -> None:
    rules = all_rules({})
    writes = [rule for rule in rules
              if "kopf.dev" in rule["apiGroups"] and "patch" in rule["verbs"]]
    assert [rule["resourceNames"] for rule in writes] == [[f"{RELEASE}-foreseer"]]


def test_a_namespaced_operator_gets_one_role_per_namespace_and_nothing_cluster_wide() -> None:
    manifests = render({"watchNamespaces": ["shop", "search"]})
    assert manifests.of_kind("ClusterRole") == []
    assert manifests.of_kind("ClusterRoleBinding") == []
    roles = {role["metadata"]["namespace"] for role in manifests.of_kind("Role")}
    bindings = manifests.of_kind("RoleBinding")
    assert roles == {"shop", "search"}
    assert {b["metadata"]["namespace"] for b in bindings} == roles
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-foreseer",
                                        "namespace": NAMESPACE}]
    peerings = manifests.of_kind("KopfPeering")
    assert {p["metadata"]["namespace"] for p in peerings} == roles


def test_the_cluster_role_is_bound_to_the_charts_service_account_only() -> None:
    manifests = render({})
    binding = manifests.one("ClusterRoleBinding")
    account = manifests.one("ServiceAccount")["metadata"]
    assert binding["roleRef"]["name"] == manifests.one("ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                    "namespace": account["namespace"]}]
    pod = manifests.one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    kinds = render({"rbac": {"create": False}}).kinds()
    assert kinds.isdisjoint({"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"})
