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

from foreseer.lab.emulator import (
    DEPLOYMENTS,
    EVENTS,
    AccessRule,
    Emulator,
    _merge_patch,
    deployment,
    parse_selector,
    scalingpolicy_crd,
    serving,
)
from foreseer.lab.waiting import until
from foreseer.lab.workloads import DeploymentController, ready_replicas_in_cluster

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
    code, answer, _ = await _exchange(emulator, method, path, body, content_type)
    return code, answer


async def _exchange(emulator: Emulator, method: str, path: str, body: bytes,
                    content_type: str = "application/merge-patch+json",
                    ) -> tuple[int, dict[str, Any], list[str]]:
    """Status code, JSON answer and ``Warning`` headers of one raw request."""
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{str(emulator.url).rstrip('/')}{path}", data=body,
            headers={"Content-Type": content_type}) as response:
        return response.status, await response.json(), response.headers.getall("Warning", [])


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


POLICIES_PATH = "/apis/foreseer.dev/v1alpha1/namespaces/shop/scalingpolicies"


def _dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize(("method", "path", "body", "says"), [
    ("POST", "", b'{"metadata": {"name": "api"}, "spec": {"maxReplicas": NaN}}',
     "json parse error: invalid character 'N' looking for beginning of value"),
    ("PUT", "/web", b'{"metadata": {"name": "web"}, "spec": {"maxReplicas": Infinity}}',
     "invalid character 'I' looking for beginning of value"),
    ("PATCH", "/web", b'{"spec": {"maxReplicas": -Infinity}}',
     "error decoding patch: invalid character 'I' in numeric literal"),
    ("PATCH", "/web", b'{"spec": {"maxReplicas": 3', "error decoding patch"),
], ids=["create-nan", "put-infinity", "patch-minus-infinity", "truncated"])
async def test_a_body_that_is_not_strict_json_is_refused_with_400_on_every_write(
        emulator: Emulator, method: str, path: str, body: bytes, says: str) -> None:
    await _scalingpolicy(emulator)
    before = emulator.read_object(POLICY_RESOURCE, "shop", "web")
    code, answer = await _send(emulator, method, POLICIES_PATH + path, body,
                               "application/json" if method != "PATCH" else
                               "application/merge-patch+json")
    assert (code, answer["kind"], answer["reason"]) == (400, "Status", "BadRequest")
    assert says in answer["message"]
    assert emulator.list_objects(POLICY_RESOURCE, "shop") == [before]
    assert any(r.method.value == method for r in emulator)  # refused, yet recorded


async def test_a_status_patch_through_the_kubernetes_client_with_nan_is_refused_with_400(
        emulator: Emulator, client: kubernetes.client.ApiClient) -> None:
    await _scalingpolicy(emulator)
    custom = kubernetes.client.CustomObjectsApi(client)
    with pytest.raises(ApiException) as raised:  # the client writes NaN, as json.dumps does
        await call(custom.patch_namespaced_custom_object_status, "foreseer.dev", "v1alpha1",
                   "shop", "scalingpolicies", "web",
                   {"status": {"forecast": {"value": float("nan")}}})
    assert raised.value.status == 400
    assert json.loads(raised.value.body)["reason"] == "BadRequest"


async def test_a_json_patch_of_the_status_that_breaks_the_schema_is_refused_with_422(
        emulator: Emulator) -> None:
    path = await _scalingpolicy(emulator)
    patch = [{"op": "add", "path": "/status", "value": {
        "breaker": {"state": "Ajar", "failures": -1}}}]
    code, answer = await _send(emulator, "PATCH", path, _dumps(patch),
                               "application/json-patch+json")
    assert (code, answer["reason"]) == (422, "Invalid")
    assert "status.breaker.state: Invalid value: \"Ajar\"" in answer["message"]
    assert "status.breaker.failures: Invalid value: -1" in answer["message"]
    assert {c["field"] for c in answer["details"]["causes"]} == {
        "status.breaker.state", "status.breaker.failures"}
    assert "status" not in emulator.read_object(POLICY_RESOURCE, "shop", "web")


async def test_a_put_of_the_status_that_breaks_the_schema_is_refused_with_422(
        emulator: Emulator) -> None:
    path = await _scalingpolicy(emulator)
    body = emulator.read_object(POLICY_RESOURCE, "shop", "web")
    body["status"] = {"lastScaleTime": "yesterday", "desiredReplicas": 2.5}
    code, answer = await _send(emulator, "PUT", path, _dumps(body), "application/json")
    assert (code, answer["reason"]) == (422, "Invalid")
    assert "status.lastScaleTime" in answer["message"] and "date-time" in answer["message"]
    assert "status.desiredReplicas: Invalid value: 2.5" in answer["message"]
    body["status"] = {"lastScaleTime": "2026-01-02T03:04:05Z", "desiredReplicas": 2}
    code, answer = await _send(emulator, "PUT", path, _dumps(body), "application/json")
    assert code == 200 and answer["status"]["desiredReplicas"] == 2


async def test_a_put_of_a_spec_that_breaks_the_schema_is_refused_with_422(
        emulator: Emulator) -> None:
    await _scalingpolicy(emulator)
    body = emulator.read_object(POLICY_RESOURCE, "shop", "web")
    body["spec"]["metrics"] = [{"name": "rps", "query": "x"}]  # no sizing at all
    code, answer = await _send(emulator, "PUT", f"{POLICIES_PATH}/web", _dumps(body),
                               "application/json")
    assert (code, answer["reason"]) == (422, "Invalid")
    assert "spec.metrics[0].targetPerReplica: a metric needs targetPerReplica, utilization " \
        "or both" in answer["message"]


async def test_two_conditions_of_one_type_are_refused_with_422_as_a_list_map(
        emulator: Emulator) -> None:
    path = await _scalingpolicy(emulator)
    ready = {"type": "Ready", "status": "True", "reason": "Scaling",
             "lastTransitionTime": "2026-01-02T03:04:05Z"}
    code, answer = await _send(emulator, "PATCH", path, _dumps(
        {"status": {"conditions": [ready, {**ready, "status": "False"}]}}))
    assert (code, answer["reason"]) == (422, "Invalid")
    assert "status.conditions[1]: Duplicate value" in answer["message"]


async def test_a_spec_that_breaks_a_cel_rule_is_refused_with_422(emulator: Emulator) -> None:
    await _scalingpolicy(emulator)
    code, answer = await _send(emulator, "PATCH", f"{POLICIES_PATH}/web",
                               _dumps({"spec": {"minReplicas": 9}}))  # maxReplicas is 5
    assert (code, answer["reason"]) == (422, "Invalid")
    assert "spec.minReplicas: minReplicas must not exceed maxReplicas" in answer["message"]


async def test_an_unknown_field_is_pruned_with_a_warning_header_by_default_and_silently_on_ignore(
        emulator: Emulator) -> None:
    path = await _scalingpolicy(emulator)
    code, answer, warnings = await _exchange(emulator, "PATCH", path, _dumps(
        {"status": {"forecast": {"mase": 0.5, "maze": 1}, "kopf": {"progress": {}}}}))
    assert code == 200 and answer["status"]["forecast"] == {"mase": 0.5, "trusted": False}
    assert answer["status"]["kopf"] == {"progress": {}}  # status preserves unknown fields
    assert warnings == ['299 - "unknown field \\"status.forecast.maze\\""']
    assert emulator.warnings == [f'PATCH {path}: unknown field "status.forecast.maze"']
    code, _, warnings = await _exchange(emulator, "PATCH", f"{path}?fieldValidation=Ignore",
                                        _dumps({"status": {"breaker": {"sate": "Open"}}}))
    assert (code, warnings) == (200, [])
    assert "sate" not in emulator.read_object(POLICY_RESOURCE, "shop", "web")["status"]["breaker"]


async def test_an_unknown_field_in_a_patch_is_refused_with_400_under_strict_field_validation(
        emulator: Emulator) -> None:
    path = await _scalingpolicy(emulator)
    code, answer = await _send(emulator, "PATCH", f"{path}?fieldValidation=Strict",
                               _dumps({"status": {"recommendation": {"finale": 3}}}))
    assert (code, answer["reason"]) == (400, "BadRequest")
    assert 'strict decoding error: unknown field "status.recommendation.finale"' in answer[
        "message"]
    code, answer = await _send(emulator, "PATCH", f"{path}?fieldValidation=Sometimes", b"{}")
    assert (code, answer["reason"]) == (400, "BadRequest")
    assert "status" not in emulator.read_object(POLICY_RESOURCE, "shop", "web")


async def test_a_null_for_a_field_that_is_not_nullable_is_dropped_and_then_defaulted(
        emulator: Emulator) -> None:
    await _scalingpolicy(emulator)
    body = emulator.read_object(POLICY_RESOURCE, "shop", "web")
    body["spec"].update(mode=None, minReplicas=None)
    code, answer = await _send(emulator, "PUT", f"{POLICIES_PATH}/web", _dumps(body),
                               "application/json")
    assert code == 200
    assert answer["spec"]["mode"] == "Auto" and answer["spec"]["minReplicas"] == 1


async def test_an_update_may_keep_a_value_that_was_already_invalid_but_not_change_it(
        emulator: Emulator) -> None:
    await emulator.create_object(POLICY_RESOURCE, {  # a seed, as if stored before the schema
        "metadata": {"name": "old", "namespace": "shop"}, "spec": {"maxReplicas": 0}})
    code, _ = await _send(emulator, "PATCH", f"{POLICIES_PATH}/old",
                          _dumps({"metadata": {"labels": {"team": "a"}}}))
    assert code == 200  # ratcheting: the finalizer or label patch of an old object goes through
    code, answer = await _send(emulator, "PATCH", f"{POLICIES_PATH}/old",
                               _dumps({"spec": {"maxReplicas": -1}}))
    assert (code, answer["reason"]) == (422, "Invalid")
    assert "spec.maxReplicas: Invalid value: -1" in answer["message"]


async def test_a_stale_resource_version_on_a_status_or_scale_patch_or_a_put_is_refused_with_409(
        emulator: Emulator) -> None:
    status_path = await _scalingpolicy(emulator)
    old = emulator.read_object(POLICY_RESOURCE, "shop", "web")
    stale = old["metadata"]["resourceVersion"]
    await emulator.patch_object(POLICY_RESOURCE, "shop", "web", {"spec": {"maxReplicas": 6}})
    old["spec"]["maxReplicas"] = 9
    writes = [
        ("PATCH", status_path, {"metadata": {"resourceVersion": stale},
                                "status": {"desiredReplicas": 9}}, "application/merge-patch+json"),
        ("PUT", status_path, {**old, "status": {"desiredReplicas": 9}}, "application/json"),
        ("PUT", f"{POLICIES_PATH}/web", old, "application/json"),
        ("PATCH", f"{POLICIES_PATH}/web", [
            {"op": "replace", "path": "/metadata/resourceVersion", "value": stale},
            {"op": "replace", "path": "/spec/maxReplicas", "value": 9}],
         "application/json-patch+json"),
    ]
    await emulator.create_object(DEPLOYMENTS, deployment("api", "shop", 2))
    stale_scale = emulator.read_object(DEPLOYMENTS, "shop", "api")["metadata"]["resourceVersion"]
    await emulator.patch_object(DEPLOYMENTS, "shop", "api", {"spec": {"replicas": 3}})
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale",
             "metadata": {"name": "api", "namespace": "shop", "resourceVersion": stale_scale},
             "spec": {"replicas": 9}}
    writes += [(method, "/apis/apps/v1/namespaces/shop/deployments/api/scale", scale, kind)
               for method, kind in (("PATCH", "application/merge-patch+json"),
                                    ("PUT", "application/json"))]
    for method, path, body, content_type in writes:
        code, answer = await _send(emulator, method, path, _dumps(body), content_type)
        assert (code, answer["reason"]) == (409, "Conflict"), (method, path, answer)
    policy = emulator.read_object(POLICY_RESOURCE, "shop", "web")
    assert policy["spec"]["maxReplicas"] == 6 and "status" not in policy
    assert emulator.read_object(DEPLOYMENTS, "shop", "api")["spec"]["replicas"] == 3


async def test_a_put_of_a_custom_resource_without_a_resource_version_is_refused_with_422(
        emulator: Emulator) -> None:
    await _scalingpolicy(emulator)
    body = emulator.read_object(POLICY_RESOURCE, "shop", "web")
    del body["metadata"]["resourceVersion"]
    code, answer = await _send(emulator, "PUT", f"{POLICIES_PATH}/web", _dumps(body),
                               "application/json")
    assert (code, answer["reason"]) == (422, "Invalid")
    assert "metadata.resourceVersion" in answer["message"]


async def test_a_token_review_authenticates_only_the_tokens_the_test_set_and_stores_nothing(
        emulator: Emulator, client: kubernetes.client.ApiClient) -> None:
    emulator.tokens["good"] = {"username": "alice", "uid": "1", "groups": ["devs"]}
    authn = kubernetes.client.AuthenticationV1Api(client)

    def review(token: str) -> Any:
        return authn.create_token_review({"apiVersion": "authentication.k8s.io/v1",
                                          "kind": "TokenReview", "spec": {"token": token}})

    known = await call(review, "good")
    assert known.status.authenticated is True
    assert (known.status.user.username, known.status.user.groups) == ("alice", ["devs"])
    unknown = await call(review, "bad")
    assert not unknown.status.authenticated
    assert unknown.status.error
    with pytest.raises(ApiException) as empty:
        await call(review, "")
    assert empty.value.status == 400
    url = f"{str(emulator.url).rstrip('/')}/apis/authentication.k8s.io/v1/tokenreviews"
    async with aiohttp.ClientSession() as session, session.get(url) as listed:
        assert listed.status == 405  # reviews are created, never stored or listed
    assert [r["spec"]["token"] for r in emulator.reviews] == ["good", "bad"]


async def test_an_access_review_allows_what_a_rule_grants_the_user_or_a_group_and_nothing_else(
        emulator: Emulator, client: kubernetes.client.ApiClient) -> None:
    emulator.access_rules += [AccessRule(verbs=("get",), paths=("/metrics",), user="alice"),
                              AccessRule(verbs=("*",), paths=("/debug/*",), group="admins")]
    authz = kubernetes.client.AuthorizationV1Api(client)

    def allowed(user: str, groups: list[str], verb: str, path: str) -> bool:
        review = authz.create_subject_access_review({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": groups,
                     "nonResourceAttributes": {"path": path, "verb": verb}}})
        return bool(review.status.allowed)

    assert await call(allowed, "alice", [], "get", "/metrics")
    assert not await call(allowed, "alice", [], "post", "/metrics")
    assert not await call(allowed, "bob", ["devs"], "get", "/metrics")
    assert await call(allowed, "bob", ["admins"], "get", "/debug/pprof")
    assert not await call(allowed, "bob", ["admins"], "get", "/metrics")
    with pytest.raises(ApiException) as invalid:  # neither a user nor a group
        await call(allowed, "", [], "get", "/metrics")
    assert invalid.value.status == 422
    assert "at least one of user or group" in json.loads(invalid.value.body)["message"]


@pytest.mark.parametrize(("value", "patch", "merged"), [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": {"b": "c"}}, {"a": 1}, {"a": 1}),
    ({"a": "b"}, {"a": {"c": "d", "e": None}}, {"a": {"c": "d"}}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
], ids=["replace", "add", "delete", "arrays replace", "nested", "a scalar replaces a mapping",
        "a mapping replaces a scalar", "nulls already there stay"])
def test_a_merge_patch_merges_as_rfc_7386_says(value: dict[str, Any], patch: dict[str, Any],
                                               merged: dict[str, Any]) -> None:
    assert _merge_patch(value, patch) == merged
