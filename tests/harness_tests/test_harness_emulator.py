"""The emulator behaves like an API server where foreseer depends on it (through real clients)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import kmock
import kubernetes
import pytest

from harness.emulator import (
    DEPLOYMENTS,
    EVENTS,
    Emulator,
    deployment,
    parse_selector,
    scalingpolicy_crd,
    serving,
)
from harness.waiting import until
from harness.workloads import DeploymentController, ready_replicas_in_cluster

T = TypeVar("T")
POLICY_RESOURCE = kmock.resource("foreseer.dev", "v1alpha1", "scalingpolicies")
ApiException = kubernetes.client.ApiException


@pytest.fixture
def client(kubeconfig: Path) -> kubernetes.client.ApiClient:
    return kubernetes.config.new_client_from_config(str(kubeconfig))


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking client call off the loop that serves the emulator."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_every_write_changes_the_resource_version_and_only_spec_changes_bump_generation(
        emulator: Emulator, client: kubernetes.client.ApiClient) -> None:
    apps = kubernetes.client.AppsV1Api(client)
    created = await call(apps.create_namespaced_deployment, "shop", deployment("web", "shop", 2))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.metadata.generation == 1
    scaled = await call(apps.patch_namespaced_deployment, "web", "shop", {"spec": {"replicas": 3}})
    status = await call(apps.patch_namespaced_deployment_status, "web", "shop",
                        {"status": {"readyReplicas": 3}})
    versions = [int(created.metadata.resource_version), int(scaled.metadata.resource_version),
                int(status.metadata.resource_version)]
    assert versions == sorted(set(versions))
    assert (scaled.metadata.generation, status.metadata.generation) == (2, 2)


async def test_a_stale_resource_version_is_rejected_with_409_and_changes_nothing(
        emulator: Emulator, client: kubernetes.client.ApiClient) -> None:
    apps = kubernetes.client.AppsV1Api(client)
    old = await call(apps.create_namespaced_deployment, "shop", deployment("web", "shop", 2))
    await call(apps.patch_namespaced_deployment, "web", "shop", {"spec": {"replicas": 3}})
    stale = {"metadata": {"resourceVersion": old.metadata.resource_version},
             "spec": {"replicas": 9}}
    with pytest.raises(ApiException) as raised:
        await call(apps.patch_namespaced_deployment_scale, "web", "shop", stale)
    assert raised.value.status == 409
    assert emulator.read_object(DEPLOYMENTS, "shop", "web")["spec"]["replicas"] == 3


async def test_the_scale_subresource_is_a_real_scale_and_writes_only_spec_replicas(
        emulator: Emulator, client: kubernetes.client.ApiClient) -> None:
    apps = kubernetes.client.AppsV1Api(client)
    await call(apps.create_namespaced_deployment, "shop", deployment("web", "shop", 2))
    await emulator.patch_object(DEPLOYMENTS, "shop", "web", {"status": {"replicas": 2}}, "status")
    scale = await call(apps.read_namespaced_deployment_scale, "web", "shop")
    assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
    assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (2, 2, "app=web")
    patched = await call(apps.patch_namespaced_deployment_scale, "web", "shop",
                         {"spec": {"replicas": 5}, "status": {"replicas": 99}})
    assert (patched.kind, patched.spec.replicas, patched.status.replicas) == ("Scale", 5, 2)
    body = emulator.read_object(DEPLOYMENTS, "shop", "web")
    assert body["spec"]["replicas"] == 5 and body["status"] == {"replicas": 2}
    assert body["spec"]["template"] == deployment("web", "shop")["spec"]["template"]


async def test_a_status_write_changes_only_status_and_a_main_write_never_status(
        emulator: Emulator, client: kubernetes.client.ApiClient) -> None:
    custom = kubernetes.client.CustomObjectsApi(client)
    policy = {"apiVersion": "foreseer.dev/v1alpha1", "kind": "ScalingPolicy",
              "metadata": {"name": "p"}, "status": {"currentReplicas": 1},
              "spec": {"scaleTargetRef": {"name": "web"}, "maxReplicas": 3,
                       "metrics": [{"name": "rps", "query": "x", "targetPerReplica": 1}]}}
    created = await call(custom.create_namespaced_custom_object, "foreseer.dev", "v1alpha1",
                         "shop", "scalingpolicies", policy)
    assert "status" not in created  # dropped on create, as for any status subresource
    await call(custom.patch_namespaced_custom_object_status, "foreseer.dev", "v1alpha1", "shop",
               "scalingpolicies", "p", {"status": {"currentReplicas": 2},
                                        "spec": {"maxReplicas": 9}})
    await call(custom.patch_namespaced_custom_object, "foreseer.dev", "v1alpha1", "shop",
               "scalingpolicies", "p", {"status": {"currentReplicas": 7},
                                        "spec": {"maxReplicas": 4}})
    body = emulator.read_object("foreseer.dev/v1alpha1/scalingpolicies", "shop", "p")
    assert body["spec"]["maxReplicas"] == 4 and body["status"]["currentReplicas"] == 2
    assert body["spec"]["mode"] == "Auto"  # the CRD schema's default, as a server fills it in
    assert body["metadata"]["generation"] == 2


async def test_a_strategic_merge_patch_of_a_custom_resource_is_rejected_with_415(
        emulator: Emulator) -> None:
    created = await emulator.create_object("foreseer.dev/v1alpha1/scalingpolicies",
                          {"metadata": {"name": "p", "namespace": "shop"}, "spec": {}})
    response = await emulator.patch(
        "/apis/foreseer.dev/v1alpha1/namespaces/shop/scalingpolicies/p",
        data=json.dumps({"spec": {"x": 1}}),
        headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert response.status == 415
    policy = emulator.read_object("foreseer.dev/v1alpha1/scalingpolicies", "shop", "p")
    assert policy["spec"] == created["spec"]


async def test_events_posted_with_generate_name_get_unique_names(
        emulator: Emulator, client: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(client)
    event = {"metadata": {"generateName": "web."}, "reason": "Scaled",
             "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "shop"}}
    names = {(await call(core.create_namespaced_event, "shop", event)).metadata.name
             for _ in range(5)}
    assert len(names) == 5 and all(name.startswith("web.") for name in names)
    selected = await call(core.list_namespaced_event, "shop",
                          field_selector="involvedObject.name=web,reason=Scaled")
    assert len(selected.items) == 5 and len(emulator.list_objects(EVENTS, "shop")) == 5


async def test_missing_objects_are_404_and_namespaces_can_be_listed(
        emulator: Emulator, client: kubernetes.client.ApiClient) -> None:
    apps, core = kubernetes.client.AppsV1Api(client), kubernetes.client.CoreV1Api(client)
    with pytest.raises(ApiException) as raised:
        await call(apps.read_namespaced_deployment_scale, "ghost", "shop")
    assert raised.value.status == 404
    assert json.loads(raised.value.body)["reason"] == "NotFound"
    await call(apps.create_namespaced_deployment, "shop", deployment("web", "shop"))
    names = [ns.metadata.name for ns in (await call(core.list_namespace)).items]
    assert names == ["shop"]
    assert (await call(core.read_namespace, "shop")).status.phase == "Active"


async def test_injected_faults_fail_the_next_scale_patches_then_clear(
        emulator: Emulator, client: kubernetes.client.ApiClient) -> None:
    apps = kubernetes.client.AppsV1Api(client)
    await call(apps.create_namespaced_deployment, "shop", deployment("web", "shop", 2))
    fault = emulator.fail_next("PATCH", DEPLOYMENTS, subresource="scale", times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as raised:
            await call(apps.patch_namespaced_deployment_scale, "web", "shop",
                       {"spec": {"replicas": 4}})
        assert raised.value.status == 409
    assert emulator.read_object(DEPLOYMENTS, "shop", "web")["spec"]["replicas"] == 2
    await call(apps.patch_namespaced_deployment_scale, "web", "shop", {"spec": {"replicas": 4}})
    assert fault.hits == 2
    assert emulator.read_object(DEPLOYMENTS, "shop", "web")["spec"]["replicas"] == 4


async def test_deletion_waits_until_the_finalizers_are_removed(emulator: Emulator) -> None:
    resource = "foreseer.dev/v1alpha1/scalingpolicies"
    await emulator.create_object(resource, {"metadata": {"name": "p", "namespace": "shop",
                                                  "finalizers": ["x"]}, "spec": {
        "scaleTargetRef": {"name": "web"}, "maxReplicas": 3,
        "metrics": [{"name": "rps", "query": "x", "targetPerReplica": 1}]}})
    await emulator.delete_object(resource, "shop", "p")
    assert emulator.read_object(resource, "shop", "p")["metadata"]["deletionTimestamp"]
    await emulator.patch_object(resource, "shop", "p", {"metadata": {"finalizers": None}})
    assert emulator.read_object(resource, "shop", "p") is None


async def test_a_watch_resumes_after_a_resource_version_and_filters_by_label(
        emulator: Emulator) -> None:
    first = await emulator.create_object(DEPLOYMENTS, deployment("web", "shop"))
    await emulator.create_object(DEPLOYMENTS, deployment("db", "shop"))
    await emulator.patch_object(DEPLOYMENTS, "shop", "web", {"spec": {"replicas": 2}})
    url = (f"/apis/apps/v1/namespaces/shop/deployments?watch=true&timeoutSeconds=1"
           f"&labelSelector=app%3Dweb&resourceVersion={first['metadata']['resourceVersion']}")
    async with asyncio.timeout(10):
        response = await emulator.get(url)
        text = await response.text()
    events = [json.loads(line) for line in text.splitlines()]
    assert [(e["type"], e["object"]["spec"]["replicas"]) for e in events] == [("MODIFIED", 2)]


async def test_a_watch_from_a_forgotten_resource_version_gets_410_gone() -> None:
    async with serving(Emulator(watch_log_limit=2)) as emulator:
        first = await emulator.create_object(DEPLOYMENTS, deployment("web", "shop"))
        for replicas in (2, 3, 4):
            await emulator.patch_object(DEPLOYMENTS, "shop", "web",
                                        {"spec": {"replicas": replicas}})
        since = first["metadata"]["resourceVersion"]
        async with asyncio.timeout(10):
            response = await emulator.get(
                f"/apis/apps/v1/namespaces/shop/deployments?watch=true&resourceVersion={since}")
            [event] = [json.loads(line) for line in (await response.text()).splitlines()]
    assert (event["type"], event["object"]["code"]) == ("ERROR", 410)


def test_label_selectors_support_the_set_based_grammar() -> None:
    selects = parse_selector("app in (web, api),tier!=db,!canary,zone")
    assert selects({"app": "web", "tier": "front", "zone": "a"})
    assert not selects({"app": "web", "zone": "a", "canary": "1"})
    assert not selects({"app": "db", "zone": "a"})
    with pytest.raises(ValueError, match="invalid selector"):
        parse_selector("app in web")


async def test_the_deployment_controller_makes_pods_ready_after_the_delay_and_removes_them(
        emulator: Emulator, deployments: DeploymentController) -> None:
    await emulator.create_object(DEPLOYMENTS, deployment("web", "shop", 1))
    await emulator.patch_object(DEPLOYMENTS, "shop", "web", {"spec": {"replicas": 3}}, "scale")
    def status() -> dict[str, Any]:
        return emulator.read_object(DEPLOYMENTS, "shop", "web").get("status", {})

    await until(lambda: status().get("replicas") == 3, 10, "3 pods")
    assert status()["readyReplicas"] < 3
    await until(lambda: status().get("readyReplicas") == 3, 10, "3 ready pods")
    pods = emulator.list_objects("v1/pods", "shop")
    assert len(pods) == 3 and all(p["metadata"]["labels"] == {"app": "web"} for p in pods)
    await emulator.patch_object(DEPLOYMENTS, "shop", "web", {"spec": {"replicas": 1}}, "scale")
    await until(lambda: status().get("readyReplicas") == 1, 10, "a scale-down to 1")
    assert len(emulator.list_objects("v1/pods", "shop")) == 1


async def test_ready_replicas_can_be_read_from_a_cluster_through_a_kubeconfig(
        emulator: Emulator, client: kubernetes.client.ApiClient,
        deployments: DeploymentController) -> None:
    await emulator.create_object(DEPLOYMENTS, deployment("web", "shop", 2))
    read = ready_replicas_in_cluster("shop", "web", client)
    assert await until(lambda: _is(read(), 2), 10, "2 ready replicas seen through the API")


async def _is(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def test_kubectl_can_discover_list_and_scale_against_the_emulator(
        emulator: Emulator, kubeconfig: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    await emulator.create_object(DEPLOYMENTS, deployment("web", "shop", 2))

    async def kubectl(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "kubectl", f"--kubeconfig={kubeconfig}", "--namespace=shop", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        async with asyncio.timeout(30):
            out, _ = await process.communicate()
        assert process.returncode == 0, out.decode()
        return out.decode()

    assert "shop" in await kubectl("get", "ns", "-o", "name")
    await kubectl("scale", "deploy/web", "--replicas=4")
    assert await kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}") == "4"
    assert "No resources found" in await kubectl("get", "sp")
    await emulator.create_object("foreseer.dev/v1alpha1/scalingpolicies", {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"scaleTargetRef": {"name": "web"}, "maxReplicas": 9,
                 "metrics": [{"name": "rps", "query": "sum(x)", "targetPerReplica": 10}]}})
    header, row = (await kubectl("get", "sp")).splitlines()
    assert header.split()[:4] == ["NAME", "TARGET", "MODE", "MIN"]  # the CRD's printer columns
    assert row.split()[:2] == ["web", "web"]


async def _send(emulator: Emulator, method: str, path: str, body: bytes,
                content_type: str = "application/merge-patch+json") -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{str(emulator.url).rstrip('/')}{path}", data=body,
            headers={"Content-Type": content_type}) as response:
        return response.status, await response.json()


async def _scalingpolicy(emulator: Emulator) -> str:
    emulator.install_crd(scalingpolicy_crd())
    await emulator.create_object(POLICY_RESOURCE, {
        "apiVersion": "foreseer.dev/v1alpha1", "kind": "ScalingPolicy",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"scaleTargetRef": {"name": "web"}, "maxReplicas": 5,
                 "metrics": [{"name": "rps", "query": "x", "targetPerReplica": 1}]}})
    return "/apis/foreseer.dev/v1alpha1/namespaces/shop/scalingpolicies/web/status"


async def test_a_status_patch_with_infinity_is_refused_with_400_as_a_real_api_server_does(
        emulator: Emulator) -> None:
    path = await _scalingpolicy(emulator)
    code, answer = await _send(emulator, "PATCH", path,
                               b'{"status": {"forecast": {"mase": Infinity}}}')
    assert (code, answer["reason"]) == (400, "BadRequest")
    assert "invalid character 'I'" in answer["message"]
    code, _ = await _send(emulator, "PATCH", path, b'{"status": {"forecast": {"mase": NaN}}}')
    assert code == 400
    assert "forecast" not in (emulator.read_object(POLICY_RESOURCE, "shop", "web")
                              .get("status") or {})


async def test_a_status_write_that_breaks_the_crd_schema_is_refused_with_422(
        emulator: Emulator) -> None:
    path = await _scalingpolicy(emulator)
    wrong_type = json.dumps({"status": {"currentReplicas": "three"}}).encode()
    code, answer = await _send(emulator, "PATCH", path, wrong_type)
    assert (code, answer["reason"]) == (422, "Invalid")
    assert "status.currentReplicas" in answer["message"]
    fine = json.dumps({"status": {"currentReplicas": 3}}).encode()
    code, _ = await _send(emulator, "PATCH", path, fine)
    assert code == 200
    assert emulator.read_object(POLICY_RESOURCE, "shop", "web")["status"]["currentReplicas"] == 3


def _policy_body(**spec: Any) -> bytes:
    return json.dumps({
        "apiVersion": "foreseer.dev/v1alpha1", "kind": "ScalingPolicy",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"scaleTargetRef": {"name": "api"}, "maxReplicas": 5,
                 "metrics": [{"name": "rps", "query": "x", "targetPerReplica": 1}], **spec}
    }).encode()


async def test_an_unknown_field_is_refused_with_strict_field_validation_and_pruned_without(
        emulator: Emulator) -> None:
    await _scalingpolicy(emulator)
    path = "/apis/foreseer.dev/v1alpha1/namespaces/shop/scalingpolicies"
    code, answer = await _send(emulator, "POST", f"{path}?fieldValidation=Strict",
                               _policy_body(replicaz=3), "application/json")
    assert (code, answer["reason"]) == (400, "BadRequest")
    assert 'unknown field "spec.replicaz"' in answer["message"]
    code, _ = await _send(emulator, "POST", path, _policy_body(replicaz=3), "application/json")
    assert code == 201
    assert "replicaz" not in emulator.read_object(POLICY_RESOURCE, "shop", "api")["spec"]


async def test_a_spec_that_breaks_the_crd_schema_is_refused_with_422_on_create_and_update(
        emulator: Emulator) -> None:
    await _scalingpolicy(emulator)
    path = "/apis/foreseer.dev/v1alpha1/namespaces/shop/scalingpolicies"
    code, answer = await _send(emulator, "POST", path, _policy_body(maxReplicas="five"),
                               "application/json")
    assert (code, answer["reason"]) == (422, "Invalid")
    assert "spec.maxReplicas" in answer["message"]
    code, answer = await _send(emulator, "PATCH", f"{path}/web",
                               json.dumps({"spec": {"mode": "Sometimes"}}).encode())
    assert (code, answer["reason"]) == (422, "Invalid")
    assert emulator.read_object(POLICY_RESOURCE, "shop", "web")["spec"].get("mode") != "Sometimes"
