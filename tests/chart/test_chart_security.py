"""The operator pod meets the Pod Security Standards' restricted profile under every value set,
with bounded resources and health probes on /healthz."""

from __future__ import annotations

from typing import Any

import pytest
from chart.rendering import VALUE_SETS, render

VALUE_NAMES = sorted(VALUE_SETS)


def pod(values: dict[str, Any]) -> dict[str, Any]:
    return render(values).one("Deployment")["spec"]["template"]["spec"]


@pytest.mark.parametrize("name", VALUE_NAMES)
def test_the_container_is_restricted(name: str) -> None:
    spec = pod(VALUE_SETS[name])
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in context
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("name", VALUE_NAMES)
def test_the_pod_shares_nothing_with_its_node(name: str) -> None:
    spec = pod(VALUE_SETS[name])
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key, False)
    for volume in spec.get("volumes", []):
        # A claim is the model store's volume; nothing of the node (hostPath) is mounted.
        assert set(volume) - {"name"} <= {"emptyDir", "secret", "configMap",
                                          "persistentVolumeClaim"}
    for port in spec["containers"][0]["ports"]:
        assert "hostPort" not in port


@pytest.mark.parametrize("name", VALUE_NAMES)
def test_the_container_has_resource_requests_and_limits(name: str) -> None:
    resources = pod(VALUE_SETS[name])["containers"][0]["resources"]
    assert set(resources["requests"]) >= {"cpu", "memory"}
    assert "memory" in resources["limits"]


def test_liveness_and_readiness_probe_healthz_on_the_metrics_port() -> None:
    (container,) = pod({"metricsPort": 9100})["containers"]
    (port,) = container["ports"]
    assert port == {"name": "http-metrics", "containerPort": 9100, "protocol": "TCP"}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert "--metrics-port=9100" in container["args"]


def test_the_image_defaults_to_the_charts_app_version() -> None:
    (container,) = pod({})["containers"]
    assert container["image"] == "foreseer:0.1.0"
    (container,) = pod({"image": {"repository": "registry.example/foreseer", "tag": "0.1.1"}})[
        "containers"]
    assert container["image"] == "registry.example/foreseer:0.1.1"


def test_the_only_writable_path_is_an_emptydir_at_tmp() -> None:
    spec = pod({})
    (container,) = spec["containers"]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
