"""The Kubernetes adapter against the realistic emulator, through a kubeconfig like a user's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from foreseer.lab.emulator import DEPLOYMENTS, EVENTS, Emulator, deployment
from foreseer.lab.waiting import until
from foreseer.lab.workloads import DeploymentController
from foreseer.operator.clusters import Cluster, ClusterError, Conflict, TargetNotFound
from foreseer.operator.leadtimes import readiness_seconds
from foreseer.operator.specs import GROUP, PLURAL, VERSION, ScaleTargetRef

pytestmark = pytest.mark.integration
POLICIES = f"{GROUP}/{VERSION}/{PLURAL}"
WEB = ScaleTargetRef(name="web")


@pytest.fixture
async def cluster(kubeconfig: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster(conflict_retries=3)
    yield cluster
    await cluster.close()


@pytest.fixture
async def web(emulator: Emulator) -> dict[str, object]:
    created = await emulator.create_object(DEPLOYMENTS, deployment("web", "shop", 2))
    await emulator.patch_object(DEPLOYMENTS, "shop", "web", {"status": {"replicas": 2}},
                                "status")
    return created


async def test_reading_scale_gives_replicas_selector_and_version(
        cluster: Cluster, web: dict[str, object]) -> None:
    scale = await cluster.read_scale("shop", WEB)
    assert (scale.replicas, scale.status_replicas, scale.selector) == (2, 2, "app=web")
    assert scale.resource_version


async def test_a_409_on_the_scale_patch_is_retried_and_the_decision_lands(
        cluster: Cluster, emulator: Emulator, web: dict[str, object]) -> None:
    fault = emulator.fail_next("PATCH", DEPLOYMENTS, subresource="scale", times=2)
    scale = await cluster.patch_scale("shop", WEB, 5)
    assert fault.hits == 2 and scale.replicas == 5
    assert emulator.read_object(DEPLOYMENTS, "shop", "web")["spec"]["replicas"] == 5


async def test_a_writer_between_our_read_and_write_causes_a_real_409_and_we_still_scale(
        cluster: Cluster, emulator: Emulator, web: dict[str, object]) -> None:
    async def another_writer() -> None:
        await emulator.patch_object(DEPLOYMENTS, "shop", "web",
                                    {"metadata": {"labels": {"edited": "yes"}}})

    interleaved = emulator.before_next("PATCH", DEPLOYMENTS, another_writer,
                                       subresource="scale")
    scale = await cluster.patch_scale("shop", WEB, 3)
    body = emulator.read_object(DEPLOYMENTS, "shop", "web")
    assert interleaved.hits == 1 and scale.replicas == 3
    assert body["spec"]["replicas"] == 3 and body["metadata"]["labels"]["edited"] == "yes"
    scale_writes = [r for r in emulator
                    if r.method.value == "PATCH" and r.subresource == "scale"]
    assert len(scale_writes) == 2  # the stale write (409), then the re-read one


async def test_a_custom_resource_with_a_scale_subresource_can_be_read_and_scaled(
        cluster: Cluster, emulator: Emulator) -> None:
    emulator.install_crd({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "rollouts.argoproj.io"},
        "spec": {"group": "argoproj.io", "scope": "Namespaced",
                 "names": {"kind": "Rollout", "plural": "rollouts"},
                 "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                               "subresources": {"status": {}, "scale": {
                                   "specReplicasPath": ".spec.replicas",
                                   "statusReplicasPath": ".status.replicas",
                                   "labelSelectorPath": ".status.selector"}}}]}})
    rollouts = "argoproj.io/v1alpha1/rollouts"
    await emulator.create_object(rollouts, {
        "metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 2},
        "status": {"replicas": 2, "selector": "app=web"}})
    ref = ScaleTargetRef(api_version="argoproj.io/v1alpha1", kind="Rollout", name="web")
    assert (await cluster.read_scale("shop", ref)).selector == "app=web"
    assert (await cluster.patch_scale("shop", ref, 6)).replicas == 6
    assert emulator.read_object(rollouts, "shop", "web")["spec"]["replicas"] == 6


async def test_persistent_conflicts_end_in_a_cluster_error_after_bounded_retries(
        cluster: Cluster, emulator: Emulator, web: dict[str, object]) -> None:
    fault = emulator.fail_next("PATCH", DEPLOYMENTS, subresource="scale", times=100)
    with pytest.raises(ClusterError) as raised:
        await cluster.patch_scale("shop", WEB, 5)
    assert raised.value.status == 409 and fault.hits == 4  # 1 try + 3 retries
    assert emulator.read_object(DEPLOYMENTS, "shop", "web")["spec"]["replicas"] == 2


@pytest.mark.parametrize(("ref", "says"), [
    (ScaleTargetRef(name="ghost"), "not found"),
    (ScaleTargetRef(name="web", kind="Rollout"), "no kind Rollout in apps/v1"),
    (ScaleTargetRef(name="web", api_version="argoproj.io/v1alpha1", kind="Rollout"),
     "not served"),
    (ScaleTargetRef(name="web", api_version="v1", kind="Pod"), "has no /scale"),
])
async def test_a_missing_or_unscalable_target_is_target_not_found_with_the_reason(
        cluster: Cluster, web: dict[str, object], ref: ScaleTargetRef, says: str) -> None:
    with pytest.raises(TargetNotFound, match=says):
        await cluster.read_scale("shop", ref)


async def test_the_policy_status_patch_changes_only_the_status(
        cluster: Cluster, emulator: Emulator) -> None:
    await emulator.create_object(POLICIES, {"metadata": {"name": "p", "namespace": "shop"},
                                            "spec": {"maxReplicas": 3}})
    await cluster.patch_policy_status("shop", "p", {"desiredReplicas": 3})
    body = emulator.read_object(POLICIES, "shop", "p")
    assert body["status"] == {"desiredReplicas": 3} and body["metadata"]["generation"] == 1


async def test_events_about_the_policy_get_generated_names_and_the_reason(
        cluster: Cluster, emulator: Emulator) -> None:
    policy = await emulator.create_object(
        POLICIES, {"metadata": {"name": "p", "namespace": "shop"}, "spec": {}})
    await cluster.post_event(policy, reason="Scaled", message="2 -> 4")
    await cluster.post_event(policy, reason="MetricsUnavailable", message="down", warning=True)
    events = emulator.list_objects(EVENTS, "shop")
    assert [(e["reason"], e["type"]) for e in events] == [
        ("Scaled", "Normal"), ("MetricsUnavailable", "Warning")]
    assert all(e["metadata"]["name"].startswith("p.") for e in events)
    assert {e["involvedObject"]["uid"] for e in events} == {policy["metadata"]["uid"]}


async def test_a_failed_event_is_logged_and_never_raised(
        cluster: Cluster, emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    emulator.fail_next("POST", EVENTS, status=500)
    await cluster.post_event({"metadata": {"name": "p", "namespace": "shop"}}, reason="Scaled",
                             message="x")
    assert "could not post the event Scaled" in caplog.text
    assert emulator.list_objects(EVENTS, "shop") == []


async def test_the_targets_pods_show_how_long_new_replicas_take_to_get_ready(
        cluster: Cluster, emulator: Emulator, web: dict[str, object]) -> None:
    async with DeploymentController(emulator, ready_after=2.0):
        await cluster.patch_scale("shop", WEB, 3)
        scale = await cluster.read_scale("shop", WEB)

        async def ready_pods() -> list[dict[str, object]]:
            pods = await cluster.list_pods("shop", scale.selector)
            return pods if len(readiness_seconds(pods)) == 3 else []

        pods = await until(ready_pods, 15, "3 ready pods")
    # Timestamps have one-second resolution, as on a real API server.
    assert all(1.0 <= seconds <= 3.0 for seconds in readiness_seconds(pods))
    assert await cluster.list_pods("shop", "app=other") == []


async def test_without_credentials_the_adapter_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    cluster = Cluster()
    try:
        with pytest.raises(ClusterError, match="no Kubernetes credentials"):
            await cluster.read_scale("shop", WEB)
    finally:
        await cluster.close()


async def test_the_namespaces_hpas_are_listed_with_their_targets(
        cluster: Cluster, emulator: Emulator) -> None:
    hpas = "autoscaling/v2/horizontalpodautoscalers"
    for namespace, name, target in [("shop", "web", "web"), ("shop", "db", "db"),
                                    ("bank", "vault", "web")]:
        await emulator.create_object(hpas, {
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet"
                                        if name == "db" else "Deployment", "name": target},
                     "minReplicas": 1, "maxReplicas": 5}})
    listed = await cluster.list_autoscaled("shop")
    assert sorted(listed) == [("apps/v1", "Deployment", "web", "web"),
                              ("apps/v1", "StatefulSet", "db", "db")]
    assert await cluster.list_autoscaled("empty") == []


async def test_a_stale_status_write_is_a_conflict_and_changes_nothing(
        cluster: Cluster, emulator: Emulator) -> None:
    created = await emulator.create_object(
        POLICIES, {"metadata": {"name": "p", "namespace": "shop"}, "spec": {"maxReplicas": 3}})
    version = created["metadata"]["resourceVersion"]
    written = await cluster.patch_policy_status("shop", "p", {"desiredReplicas": 3}, version)
    assert written["metadata"]["resourceVersion"] != version
    with pytest.raises(Conflict):
        await cluster.patch_policy_status("shop", "p", {"desiredReplicas": 5}, version)
    assert (await cluster.read_policy("shop", "p"))["status"] == {"desiredReplicas": 3}
