"""Rendered manifests are valid Kubernetes objects, and they wire the operator up correctly:
the container's command line parses with the operator's own CLI, secrets are mounted where the
flags point, and the Service, ServiceMonitor and peering objects find what they refer to."""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart.rendering import (
    BASIC_AUTH,
    CHART,
    EVERYTHING_ON,
    RELEASE,
    VALUE_SETS,
    chart_crds,
    render,
)

from foreseer.lab.crd_validation import as_json_schema
from foreseer.operator import settings
from foreseer.operator.scoping import QueryScope


def oldest_supported_version() -> str:
    """The floor of Chart.yaml's kubeVersion, e.g. ">=1.29.0-0" -> "1.29.0"."""
    constraint = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    match = re.fullmatch(r">=(\d+\.\d+\.\d+)-0", constraint)
    assert match, f"kubeVersion {constraint!r} is not of the form >=X.Y.Z-0"
    return match.group(1)


# The chart's floor and the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = [oldest_supported_version(), kubernetes_validate.latest_version()]
# Kinds outside Kubernetes' own OpenAPI: checked against their CRD, or by hand below.
CUSTOM_KINDS = {"ClusterKopfPeering", "KopfPeering", "ServiceMonitor"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_objects_validate_against_the_kubernetes_openapi_schemas(
        name: str, version: str) -> None:
    for obj in render(VALUE_SETS[name]).objects:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_charts_crds_validate_against_the_kubernetes_openapi_schemas(version: str) -> None:
    crds = list(chart_crds())
    assert {crd["metadata"]["name"] for crd in crds} >= {"clusterkopfpeerings.kopf.dev",
                                                        "kopfpeerings.kopf.dev"}
    for crd in crds:
        kubernetes_validate.validate(crd, version, strict=True)


@pytest.mark.parametrize("name", ["defaults", "namespaced"])
def test_peering_objects_are_valid_against_the_charts_kopf_crds(name: str) -> None:
    by_kind = {crd["spec"]["names"]["kind"]: crd for crd in chart_crds()}
    peerings = [o for o in render(VALUE_SETS[name]).objects if o["kind"].endswith("KopfPeering")]
    assert peerings
    for obj in peerings:
        crd = by_kind[obj["kind"]]
        assert obj["apiVersion"] == f"{crd['spec']['group']}/v1"
        assert ("namespace" in obj["metadata"]) == (crd["spec"]["scope"] == "Namespaced")
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        body = {k: v for k, v in obj.items() if k not in {"apiVersion", "kind", "metadata"}}
        jsonschema.Draft4Validator(as_json_schema(schema)).validate(body)


def test_the_kopf_crds_are_the_peering_resources_kopf_looks_for() -> None:
    from kopf._cogs.structs.references import CLUSTER_PEERINGS_K, NAMESPACED_PEERINGS_K

    served = {(crd["spec"]["group"], crd["spec"]["names"]["plural"]) for crd in chart_crds()}
    for selector in (CLUSTER_PEERINGS_K, NAMESPACED_PEERINGS_K):
        assert (selector.group, selector.any_name) in served


def parse_container_args(container: dict[str, Any]) -> settings.Settings:
    """The container's arguments through the flags and loader `foreseer run` registers."""
    command, args = container["args"][0], container["args"][1:]
    assert command == "run"
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return settings.load(parser.parse_args(args), environ={})


def mounted_files(manifest_pod: dict[str, Any]) -> set[str]:
    """Paths of the files the pod's Secret and ConfigMap volumes project into the container."""
    (container,) = manifest_pod["containers"]
    volumes = {v["name"]: v for v in manifest_pod["volumes"]}
    files = set()
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]]
        projected = source.get("secret") or source.get("configMap") or {}
        files |= {f"{mount['mountPath']}/{item['path']}" for item in projected.get("items", [])}
    return files


def test_the_default_command_line_parses_into_the_operators_settings() -> None:
    loaded = parse_container_args(render({}).container())
    assert loaded.prometheus.url == "http://prometheus-operated.monitoring.svc:9090"
    assert loaded.prometheus.verify() is True
    assert loaded.scope.clusterwide
    assert loaded.server.port == 8080
    assert loaded.logging.json
    assert loaded.peering.name == f"{RELEASE}-foreseer"
    assert not loaded.peering.standalone


def test_the_bearer_token_and_ca_flags_point_at_files_mounted_from_the_references() -> None:
    manifests = render(EVERYTHING_ON)
    loaded = parse_container_args(manifests.container())
    files = mounted_files(manifests.one("Deployment")["spec"]["template"]["spec"])
    assert loaded.prometheus.bearer_token_file in files
    assert loaded.prometheus.ca_file in files
    assert loaded.prometheus.bearer_token_file.endswith("/token")
    volumes = manifests.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "prometheus-token", "secret": {
        "secretName": "prom-token", "items": [{"key": "token", "path": "token"}]}} in volumes
    assert {"name": "prometheus-ca", "configMap": {
        "name": "prom-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}} in volumes
    assert loaded.prometheus.retries == 3  # extraArgs come last and win


def test_basic_auth_takes_the_password_from_a_mounted_secret() -> None:
    manifests = render(BASIC_AUTH)
    loaded = parse_container_args(manifests.container())
    files = mounted_files(manifests.one("Deployment")["spec"]["template"]["spec"])
    assert loaded.prometheus.username == "foreseer"
    assert loaded.prometheus.password_file in files
    assert loaded.prometheus.ca_file in files
    assert loaded.prometheus.bearer_token_file is None
    assert all("password" not in arg.lower() or arg.startswith("--prometheus-password-file=")
               for arg in manifests.container()["args"])


def test_a_namespaced_operator_watches_exactly_its_namespaces() -> None:
    loaded = parse_container_args(render(VALUE_SETS["namespaced"]).container())
    assert loaded.scope.namespaces == ("shop", "search")


def test_without_peering_the_operator_runs_standalone() -> None:
    container = render(VALUE_SETS["standalone"]).container()
    assert container["command"] == ["foreseer"]
    assert parse_container_args(container).peering.standalone


def test_a_sharded_operator_splits_the_policies_over_its_replicas_on_leases() -> None:
    manifests = render(VALUE_SETS["sharded"])
    container = manifests.container()
    loaded = parse_container_args(container)
    assert container["command"] == ["foreseer"]  # no peering priority
    assert loaded.sharding.shards == 3  # one per replica by default
    assert loaded.sharding.name == f"{RELEASE}-foreseer"
    assert not loaded.peered
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
           for e in container["env"]}
    assert env["FORESEER_SHARD_IDENTITY"] == "metadata.name"
    assert env["FORESEER_LEASE_NAMESPACE"] == "metadata.namespace"
    assert not {"ClusterKopfPeering", "KopfPeering"} & manifests.kinds()
    assert manifests.one("Deployment")["spec"]["replicas"] == 3


def test_the_model_store_gets_a_claim_a_random_key_and_both_reach_the_operator() -> None:
    manifests = render(VALUE_SETS["model-store"])
    loaded = parse_container_args(manifests.container())
    pod = manifests.one("Deployment")["spec"]["template"]["spec"]
    assert loaded.fitting.model_key_file in mounted_files(pod)
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts[loaded.fitting.model_dir] == "models"
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = manifests.one("PersistentVolumeClaim")
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    secret = manifests.one("Secret")
    assert volumes["model-key"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert len(base64.b64decode(secret["data"]["key"])) >= 16
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


def test_the_model_store_can_use_an_existing_claim_and_key() -> None:
    manifests = render(VALUE_SETS["sharded-model-store"])
    assert not {"PersistentVolumeClaim", "Secret"} & manifests.kinds()
    volumes = {v["name"]: v for v in
               manifests.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "shared-models"
    assert volumes["model-key"]["secret"]["secretName"] == "model-key"


def test_without_a_model_store_no_claim_key_or_flag_is_rendered() -> None:
    manifests = render({})
    assert not {"PersistentVolumeClaim", "Secret"} & manifests.kinds()
    assert parse_container_args(manifests.container()).fitting.model_dir is None


def test_more_than_one_replica_without_peering_or_sharding_is_refused() -> None:
    with pytest.raises(Exception, match=r"needs peering\.enabled or sharding\.enabled"):
        render({"replicaCount": 2, "peering": {"enabled": False}})


def test_insecure_tls_is_passed_only_when_asked_for() -> None:
    container = render({"prometheus": {"insecureSkipVerify": True}}).container()
    assert parse_container_args(container).prometheus.verify() is False


def test_each_peered_replica_starts_with_its_own_priority(tmp_path: Path) -> None:
    # The wrapper's only job is to exec `foreseer` with a unique --priority; /bin/echo stands in
    # for foreseer so the test sees the exact argument vector the operator would get.
    container = render({"replicaCount": 2}).container()
    (tmp_path / "foreseer").symlink_to(shutil.which("echo") or "/bin/echo")
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    seen = []
    for _ in range(2):
        done = subprocess.run([*container["command"], *container["args"]], env=env,
                              capture_output=True, text=True, check=True, timeout=10)
        argv = done.stdout.split()
        assert argv[:-1] == container["args"]
        flag, _, priority = argv[-1].partition("=")
        assert flag == "--priority"
        seen.append(int(priority))
    assert seen[0] < seen[1]


def test_the_service_exposes_the_pods_metrics_port() -> None:
    manifests = render({})
    service = manifests.one("Service")["spec"]
    pod_labels = manifests.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    (port,) = service["ports"]
    assert port["targetPort"] in {p["name"] for p in manifests.container()["ports"]}


def test_the_service_monitor_scrapes_the_services_metrics_port() -> None:
    manifests = render(EVERYTHING_ON)
    monitor = manifests.one("ServiceMonitor")
    service = manifests.one("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    namespace = service["metadata"]["namespace"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [namespace]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_the_dashboard_config_map_carries_the_dashboard_file() -> None:
    config_map = render(EVERYTHING_ON).one("ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    expected = (CHART / "dashboards" / "foreseer.json").read_text().rstrip("\n")
    assert config_map["data"]["foreseer.json"] == expected


def test_the_disruption_budget_exists_only_with_more_than_one_replica() -> None:
    assert "PodDisruptionBudget" not in render({}).kinds()
    budget = render(EVERYTHING_ON).one("PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] == 2
    assert budget["selector"]["matchLabels"].items() <= (
        render(EVERYTHING_ON).one("Deployment")["spec"]["selector"]["matchLabels"].items())


def test_an_operator_run_outside_the_cluster_gets_rbac_but_no_pod() -> None:
    manifests = render(VALUE_SETS["local-operator"])
    assert manifests.one("Deployment")["spec"]["replicas"] == 0
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"} <= manifests.kinds()


def test_queries_are_scoped_to_the_policys_namespace_unless_the_release_opts_out() -> None:
    default = parse_container_args(render({}).container()).prometheus
    assert (default.query_scope, default.tenancy_parameter) == (QueryScope.NAMESPACE, None)
    opted = parse_container_args(render({"prometheus": {
        "queryScope": "cluster", "tenancyParameter": "namespace"}}).container()).prometheus
    assert (opted.query_scope, opted.tenancy_parameter) == (QueryScope.CLUSTER, "namespace")


def test_only_prometheus_may_reach_the_metrics_port_by_default() -> None:
    manifests = render({})
    policy = manifests.one("NetworkPolicy")["spec"]
    pod_labels = manifests.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {}, "podSelector": {
        "matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    assert "http-metrics" in {p["name"] for p in manifests.container()["ports"]}


def test_the_metrics_peers_are_configurable_and_the_policy_can_be_turned_off() -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}]
    policy = render({"networkPolicy": {"metricsFrom": peers}}).one("NetworkPolicy")
    assert policy["spec"]["ingress"][0]["from"] == peers
    assert render({"networkPolicy": {"enabled": False}}).of_kind("NetworkPolicy") == []


def test_the_policy_memory_budget_reaches_the_operators_settings() -> None:
    container = render({"fitting": {"policyMemoryBudgetMiB": 4}}).container()
    assert parse_container_args(container).fitting.policy_memory_mib == 4.0
    assert parse_container_args(render({}).container()).fitting.policy_memory_mib == 16.0
