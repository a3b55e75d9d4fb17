"""The rendered RBAC grants exactly the least privilege the operator needs, and nothing else."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from chart.rendering import NAMESPACE, RELEASE, VALUE_SETS, render
from kopf._cogs.structs.references import select_specific_namespaces

from foreseer.operator import running, settings

# (apiGroup, resource) -> verbs: the whole allowance. `*/scale` is the only wildcard, and only
# in the API groups the values list.
ALLOWED: dict[tuple[str, str], set[str]] = {
    ("foreseer.dev", "scalingpolicies"): {"get", "list", "watch", "patch"},
    ("foreseer.dev", "scalingpolicies/status"): {"get", "patch"},
    ("apps", "*/scale"): {"get", "patch"},
    ("", "pods"): {"list"},
    ("autoscaling", "horizontalpodautoscalers"): {"list"},
    ("", "events"): {"create"},
    ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"},
    ("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"},
}
# With sharding, and only then: the shard Leases, in the release namespace only.
LEASES: dict[tuple[str, str], set[str]] = {
    ("coordination.k8s.io", "leases"): {"list", "create", "update", "delete"},
}
# With metrics.auth=kubernetes, and only then: the reviews of who asks for /metrics.
REVIEWS: dict[tuple[str, str], set[str]] = {
    ("authentication.k8s.io", "tokenreviews"): {"create"},
    ("authorization.k8s.io", "subjectaccessreviews"): {"create"},
}
# The only non-resource rule the chart ships: <fullname>-metrics-reader, for Prometheus.
METRICS_READER_RULE = {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}


def metrics_auth(values: dict[str, Any]) -> bool:
    return bool(values.get("metrics", {}).get("auth") == "kubernetes")


def allowance(values: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    sharded = values.get("sharding", {}).get("enabled", False)
    return {**ALLOWED, **(REVIEWS if metrics_auth(values) else {}),
            **(LEASES if sharded else {})}


def grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        if "nonResourceURLs" in rule:  # no API group or resource: checked on their own
            continue
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
    allowed = allowance(VALUE_SETS[name])
    extra = {key: verbs - allowed.get(key, set()) for key, verbs in granted.items()}
    assert {key: verbs for key, verbs in extra.items() if verbs} == {}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rbac_has_no_wildcard_verbs_groups_or_resources_except_scale(name: str) -> None:
    for rule in all_rules(VALUE_SETS[name]):
        if "nonResourceURLs" in rule:
            assert metrics_auth(VALUE_SETS[name])
            assert rule == METRICS_READER_RULE
            continue
        assert "*" not in rule["verbs"]
        assert "*" not in rule["apiGroups"]
        assert all(r == "*/scale" or "*" not in r for r in rule["resources"])


def test_the_operator_gets_everything_its_loop_needs() -> None:
    granted = grants(all_rules({}))
    needed = {key: verbs for key, verbs in ALLOWED.items() if key[1] != "kopfpeerings"}
    assert granted == needed


@pytest.mark.parametrize("namespaces", [[], ["shop", "search"]], ids=["cluster-wide", "namespaced"])
def test_metrics_auth_grants_the_operator_the_two_reviews_cluster_wide_and_nothing_more(
        namespaces: list[str]) -> None:
    manifests = render({"watchNamespaces": namespaces, "metrics": {"auth": "kubernetes"}})
    name = f"{RELEASE}-foreseer-metrics-auth"
    (role,) = [r for r in manifests.of_kind("ClusterRole") if r["metadata"]["name"] == name]
    assert grants(role["rules"]) == REVIEWS
    (binding,) = [b for b in manifests.of_kind("ClusterRoleBinding")
                  if b["metadata"]["name"] == name]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": name}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-foreseer",
                                    "namespace": NAMESPACE}]
    # Reviews are cluster-scoped: no Role can grant them.
    assert all(key not in grants(r["rules"]) for r in manifests.of_kind("Role") for key in REVIEWS)


def test_without_metrics_auth_no_review_or_metrics_reader_is_granted() -> None:
    manifests = render({})
    granted = grants(all_rules({}))
    assert not set(REVIEWS) & set(granted)
    assert [r["metadata"]["name"] for r in manifests.of_kind("ClusterRole")] == [
        f"{RELEASE}-foreseer"]


@pytest.mark.parametrize("namespaces", [[], ["shop"]], ids=["cluster-wide", "namespaced"])
def test_the_metrics_reader_may_only_get_metrics_and_the_chart_binds_it_to_no_one(
        namespaces: list[str]) -> None:
    manifests = render({"watchNamespaces": namespaces, "metrics": {"auth": "kubernetes"}})
    name = f"{RELEASE}-foreseer-metrics-reader"
    (reader,) = [r for r in manifests.of_kind("ClusterRole") if r["metadata"]["name"] == name]
    assert reader["rules"] == [METRICS_READER_RULE]
    bound = [b["roleRef"]["name"] for kind in ("ClusterRoleBinding", "RoleBinding")
             for b in manifests.of_kind(kind)]
    assert name not in bound  # Prometheus' ServiceAccount is the cluster admin's to bind


def test_metrics_auth_reaches_the_operator_and_the_service_monitor_sends_prometheus_token(
) -> None:
    values = {"metrics": {"auth": "kubernetes"}, "serviceMonitor": {"enabled": True}}
    loaded, _ = kopf_settings_of(values)
    assert loaded.server.metrics_auth is settings.MetricsAuth.KUBERNETES
    (endpoint,) = render(values).one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    default, _ = kopf_settings_of({"serviceMonitor": {"enabled": True}})
    assert default.server.metrics_auth is settings.MetricsAuth.NONE
    (open_endpoint,) = render({"serviceMonitor": {"enabled": True}}).one(
        "ServiceMonitor")["spec"]["endpoints"]
    assert "bearerTokenFile" not in open_endpoint


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


def kopf_settings_of(values: dict[str, Any]) -> tuple[settings.Settings, Any]:
    """The operator's settings from the rendered container's command line, and the Kopf
    settings `foreseer run` starts Kopf with."""
    command, *args = render(values).container()["args"]
    assert command == "run"
    parser = argparse.ArgumentParser()
    running.add_arguments(parser)
    loaded = settings.load(parser.parse_args(args), environ={})
    return loaded, running.kopf_settings(loaded.scope)


def test_a_namespaced_operator_needs_nothing_cluster_wide_from_kopf() -> None:
    """Kopf lists and watches every namespace (and CRD) at cluster scope whenever its
    scanning is on and it is not cluster-wide, even for exact names; the namespaced Roles
    grant neither, so the operator starts Kopf with scanning off, on exact names only."""
    loaded, kopf_settings = kopf_settings_of({"watchNamespaces": ["shop", "search"]})
    assert not loaded.scope.clusterwide
    assert kopf_settings.scanning.disabled
    # Kopf's own reading of the names: every one served as is, none a pattern to match.
    assert select_specific_namespaces(loaded.scope.namespaces) == {"shop", "search"}
    granted = grants(all_rules({"watchNamespaces": ["shop", "search"]}))
    assert ("", "namespaces") not in granted
    assert ("apiextensions.k8s.io", "customresourcedefinitions") not in granted


def test_a_cluster_wide_operator_keeps_kopfs_scanning() -> None:
    """Cluster-wide, Kopf lists no namespaces (it watches across all of them at once)."""
    loaded, kopf_settings = kopf_settings_of({})
    assert loaded.scope.clusterwide
    assert not kopf_settings.scanning.disabled


@pytest.mark.parametrize(("namespaces", "exact"), [
    (("shop",), True), (("shop", "search"), True), (("team-*",), False),
    (("shop", "!kube-*"), False), (("shop?",), False)])
def test_kopfs_scanning_is_off_only_for_exact_names(namespaces: tuple[str, ...],
                                                     exact: bool) -> None:
    scope = settings.ScopeSettings(namespaces=namespaces)
    assert running.kopf_settings(scope).scanning.disabled is exact
    # The same test as Kopf's: a glob keeps the scanning its matching needs.
    assert (select_specific_namespaces(namespaces) == set(namespaces)) is exact


def test_a_sharded_operator_may_write_leases_in_its_own_namespace_only_and_no_peering() -> None:
    manifests = render(VALUE_SETS["sharded"])
    lease_roles = [r for r in manifests.of_kind("Role") if ("coordination.k8s.io", "leases")
                   in grants(r["rules"])]
    assert [r["metadata"]["namespace"] for r in lease_roles] == [NAMESPACE]
    assert grants(lease_roles[0]["rules"]) == LEASES
    assert all(("coordination.k8s.io", "leases") not in grants(r["rules"])
               for r in manifests.of_kind("ClusterRole"))
    assert all(key[0] != "kopf.dev" for key in grants(all_rules(VALUE_SETS["sharded"])))
    (binding,) = [b for b in manifests.of_kind("RoleBinding")
                  if b["roleRef"]["name"] == lease_roles[0]["metadata"]["name"]]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-foreseer",
                                    "namespace": NAMESPACE}]
